"""What a pull request shows of its story: the `BMAD story` check run and the one PR comment.

Pure functions of a `StoryView`, with no I/O and no clock: the same view always renders to the same
text, so the outbox sees an identical payload and a burst of events that change nothing visible costs
no call to GitHub at all.

Text that comes from users (story titles, refusal reasons, configuration errors) is escaped for
markdown tables, and `@name` inside it is rendered as code, so a bot comment never notifies people
merely because their name appears in a story file or a reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

CHECK_RUN_NAME = "BMAD story"
COMMENT_MARKER = "<!-- bmad-marketplace:pr-comment -->"

# GitHub measures check-run output in bytes ("summary exceeds a maximum bytesize of 65535"), although
# its documentation says characters; counting UTF-8 bytes satisfies both readings.
MAX_OUTPUT_BYTES = 65535
# Issue comments: at most 65,536 characters.
MAX_COMMENT_BYTES = 65536
TRUNCATION_NOTE = "\n\n… (truncated)"
MAX_TITLE_CHARS = 200

SUCCESS = "success"
FAILURE = "failure"
NEUTRAL = "neutral"
# Not a conclusion: the run stays in progress. GitHub counts a neutral required check as passing, so a
# story still waiting for QA must not be neutral, or a required `BMAD story` check would not hold the
# merge until QA accepts.
PENDING = "pending"

DONE = "DONE"
FAIL = "FAIL"
DEFAULT_GATE_LOCATION = "docs/qa/gates/"

GITHUB_WEB = "https://github.com"


@dataclass(frozen=True)
class StoryView:
    repository: str  # "acme/widgets"
    pr_number: int
    head_sha: str
    story_label: str | None  # "Story 1.3: User auth" or None when unlinked
    story_status: str | None  # StoryStatus value, e.g. "READY_FOR_REVIEW"
    developer: str | None  # GitHub login of the assigned developer, None when none
    qa: str | None  # GitHub login of the assigned QA, None when none
    gate_decision: str | None  # PASS | CONCERNS | FAIL | WAIVED, None when no gate yet
    gate_accepted: bool  # counts toward DONE
    gate_note: str | None  # e.g. "WAIVED: waiver reason ..." or "expired on 2025-01-14"
    gate_path: str | None
    gate_problem: str | None  # an invalid or unauthorized gate file: why it was refused
    merged: bool
    escrow: str  # e.g. "release requested", "funded (1500 USDC on polygon)", "no escrow"
    link_problem: str | None  # unlinked / ambiguous: what the author must do
    refusal: str | None  # the last refused transition, explained
    config_problems: tuple[str, ...]  # invalid .github/bmad-marketplace.yml entries (defaults applied)
    # Whether this PR is the one delivering the story (Story.devPrNumber), and which PR is otherwise.
    delivers: bool = True
    delivering_pr: int | None = None
    # Whether the head commit is one QA's gate in force reviewed.
    head_reviewed: bool = True
    reverted_by: int | None = None
    # Another PR on the same head commit whose check is stricter: (its number, its conclusion).
    held_by: tuple[int, str] | None = None
    layout: str | None = None  # which BMAD layout the repository uses, and where its files are
    web_url: str = GITHUB_WEB  # the GitHub the PR is on (GitHub Enterprise: its own host), for profile links


@dataclass(frozen=True)
class Assessment:
    conclusion: str
    headline: str
    next_step: str


def truncate(text: str, limit: int = MAX_OUTPUT_BYTES) -> str:
    """`text` cut to at most `limit` UTF-8 bytes, never inside a character, with a visible note."""
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    room = limit - len(TRUNCATION_NOTE.encode("utf-8"))
    return encoded[:room].decode("utf-8", errors="ignore") + TRUNCATION_NOTE


# How strongly a conclusion holds a merge back: GitHub lets success and neutral through.
STRICTNESS = {SUCCESS: 0, NEUTRAL: 1, PENDING: 2, FAILURE: 3}


def assess(view: StoryView) -> Assessment:
    """The check's conclusion, a one-line headline and what happens next, decided once for both the
    check run and the comment so that they never disagree. Green only on the head of the story's PR,
    by its developer, when QA accepted that exact head (or the story is done by this PR)."""
    own = _assess_own(view)
    if view.held_by is not None and STRICTNESS[view.held_by[1]] > STRICTNESS[own.conclusion]:
        number, conclusion = view.held_by
        # GitHub judges a commit by its latest run of this name: a second PR on the same head must not
        # let through what the first one holds back.
        return Assessment(
            conclusion,
            f"{own.headline} (held: this commit is also the head of PR #{number})",
            f"This commit is also the head of PR #{number}, whose `{CHECK_RUN_NAME}` check does not pass "
            f"yet; {own.next_step}",
        )
    return own


def _assess_own(view: StoryView) -> Assessment:
    label = _plain(view.story_label) if view.story_label else None
    if view.story_label is None or view.link_problem is not None:
        advice = view.link_problem or (
            "Name the story in the pull request's title or body (for example `Story 1.3`), or use a "
            "branch such as `story/1.3-short-name`."
        )
        return Assessment(NEUTRAL, "Not linked to a story", _plain(advice))
    decision = _plain(view.gate_decision).upper() or None
    if view.refusal is not None:
        # A refused change never passes: merging this PR would bypass the marketplace.
        return Assessment(
            FAILURE, f"{label}: change refused", "Nothing changed: the last change was refused (why: below)."
        )
    if not view.delivers:
        if view.delivering_pr is not None:
            done = "was delivered" if view.story_status == DONE else "is delivered"
            return Assessment(
                FAILURE,
                f"{label}: delivered by PR #{view.delivering_pr}",
                f"The story {done} by PR #{view.delivering_pr}; this pull request does not deliver it.",
            )
        if view.story_status == DONE:
            return Assessment(FAILURE, f"{label}: done", "The story is done; this pull request does not deliver it.")
        return Assessment(
            PENDING,
            f"{label}: not submitted",
            "This pull request does not deliver the story yet: its developer marks it ready for review.",
        )
    if view.story_status == DONE:
        return Assessment(SUCCESS, f"{label}: done", _done_step(view))
    if view.gate_accepted and not view.head_reviewed:
        return Assessment(
            PENDING,
            f"{label}: new commits since QA's review",
            f"QA accepted an earlier head; {_who(view.qa, 'QA', view.web_url)} must review the commits "
            "pushed since.",
        )
    if view.gate_accepted:
        if not view.merged:
            step = "QA accepted the story: merging this pull request completes it."
        elif view.refusal:
            step = f"Merged and accepted, but the story cannot complete: {_sentence(view.refusal)}"
        else:
            step = "Merged and accepted: completing the story."
        return Assessment(SUCCESS, f"{label}: QA gate {decision or 'accepted'}", step)
    if decision == FAIL:
        where = f" in {_code(view.gate_path)}" if view.gate_path else ""
        return Assessment(
            FAILURE,
            f"{label}: QA gate FAIL",
            f"QA requested changes{where}: the developer addresses them and pushes, then QA commits a new gate file.",
        )
    if view.gate_problem is not None:
        return Assessment(
            FAILURE,
            f"{label}: QA gate file refused",
            "QA must commit a valid gate file: the last one was refused (why: below).",
        )
    if decision is not None:
        note = f": {_plain(view.gate_note)}" if view.gate_note else ""
        return Assessment(
            PENDING,
            f"{label}: QA gate {decision} not accepted",
            f"A {decision} gate does not count toward done here{note}. Waiting for a new gate file from "
            f"{_who(view.qa, 'QA', view.web_url)}.",
        )
    if view.merged:
        return Assessment(
            PENDING, f"{label}: merged, waiting for QA", "Merged: the story is done once QA's gate file is accepted."
        )
    return _by_status(view, label or "")


STORY_FILES_CHECK_NAME = "BMAD story files"


def story_files_check_payload(head_sha: str, refused: list[str], warnings: list[str]) -> dict[str, Any]:
    """The check run on a default-branch commit whose story files could not all be read: a story that
    cannot be stored (`1.3A`: the marketplace keeps epic and story numbers as integers) fails it, a
    status that could not be mapped only warns. The PRs never see these files, so this is where the
    person who pushed them learns what happened."""
    lines = [f"- {_plain(p)}" for p in refused + warnings]
    title = f"{len(refused)} story file(s) not stored" if refused else f"{len(warnings)} story file problem(s)"
    summary = "\n".join([f"**{title}**", "", *lines])
    return {
        "name": STORY_FILES_CHECK_NAME,
        "head_sha": head_sha,
        "status": "completed",
        "conclusion": FAILURE if refused else NEUTRAL,
        "output": {"title": _title(title), "summary": truncate(summary)},
    }


def check_run_payload(view: StoryView, *, details_url: str | None = None) -> dict[str, Any]:
    """The body of the check run on the PR's head commit (POST form; the sender drops head_sha when
    it updates an existing run)."""
    return render_check_run(
        CHECK_RUN_NAME, view.head_sha, assess(view), _table(view), _explanations(view), details_url=details_url
    )


def render_check_run(
    name: str,
    head_sha: str,
    found: Assessment,
    table: str,
    explanations: str,
    *,
    details_url: str | None = None,
) -> dict[str, Any]:
    """A check run's body from its assessment, its table and its explanations: the one rendering the
    story's and the planning stage's checks share."""
    summary = "\n\n".join(
        part
        for part in (f"**{found.headline}**", table, f"**Next:** {found.next_step}", explanations)
        if part
    )
    payload: dict[str, Any] = {
        "name": name,
        "head_sha": head_sha,
        **(
            {"status": "in_progress"}
            if found.conclusion == PENDING
            else {"status": "completed", "conclusion": found.conclusion}
        ),
        "output": {"title": _title(found.headline), "summary": truncate(summary)},
    }
    if details_url:
        payload["details_url"] = details_url
    return payload


def pr_comment_body(view: StoryView) -> str:
    """The PR comment, marker first: the sender finds its own comment again by that marker."""
    heading = f"### BMAD story: {_plain(view.story_label)}" if view.story_label else "### BMAD story"
    return render_comment(heading, assess(view), _table(view), _explanations(view), "the story")


def render_comment(heading: str, found: Assessment, table: str, explanations: str, subject: str) -> str:
    parts = [
        COMMENT_MARKER,
        heading,
        table,
        f"**Next:** {found.next_step}",
        explanations,
        f"<sub>This comment is kept up to date by the BMAD marketplace app as {subject} changes.</sub>",
    ]
    return truncate("\n\n".join(part for part in parts if part), MAX_COMMENT_BYTES)


# --- pieces ----------------------------------------------------------------------------------------

_STATUS_NAMES = {
    "DRAFT": "Draft",
    "APPROVED": "Approved",
    "IN_PROGRESS": "In progress",
    "READY_FOR_REVIEW": "Ready for review",
    "DONE": "Done",
    "BLOCKED": "Blocked",
}


def _by_status(view: StoryView, label: str) -> Assessment:
    status = view.story_status
    if status == "READY_FOR_REVIEW":
        location = _code(_gate_directory(view))
        return Assessment(
            PENDING,
            f"{label}: waiting for QA",
            f"Waiting for {_who(view.qa, 'QA', view.web_url)} to commit a gate file for this story at {location}.",
        )
    if status in ("APPROVED", "IN_PROGRESS"):
        return Assessment(
            PENDING,
            f"{label}: in progress",
            "Mark this pull request ready for review when the work is done; QA reviews it then.",
        )
    if status == "BLOCKED":
        return Assessment(
            NEUTRAL, f"{label}: blocked", "The story is blocked: a PM or architect must unblock it before work counts."
        )
    if status == "DRAFT":
        return Assessment(
            NEUTRAL,
            f"{label}: not approved yet",
            "The story is still a draft: it must be approved before this pull request counts.",
        )
    return Assessment(NEUTRAL, f"{label}: waiting", "Waiting for the story's next change.")


def _done_step(view: StoryView) -> str:
    if view.escrow.strip().lower() in ("", "no escrow", "none"):
        return "Merged and accepted: the story is done (no escrow to release)."
    escrow = view.escrow.strip().lower()
    if escrow.startswith("paid"):
        return "Merged and accepted: the story is done and the expert is paid."
    if escrow.startswith("failed"):
        return "Merged and accepted: the story is done, but the payment failed (why: below)."
    if escrow.startswith("release pending: waiting for funding"):
        return "Merged and accepted: the story is done; the payment goes out as soon as the escrow is funded."
    return "Merged and accepted: payment requested."


def _gate_directory(view: StoryView) -> str:
    if view.gate_path and "/" in view.gate_path:
        return view.gate_path.rsplit("/", 1)[0] + "/"
    return DEFAULT_GATE_LOCATION


def _table(view: StoryView) -> str:
    rows = [
        ("Story", _plain(view.story_label) if view.story_label else "not linked"),
        ("Status", _status_name(view.story_status)),
        ("Developer", _login(view.developer, view.web_url) if view.developer else "not assigned"),
        ("QA", _login(view.qa, view.web_url) if view.qa else "not assigned"),
        ("QA gate", _gate_cell(view)),
        ("Pull request", _pr_cell(view)),
        ("Escrow", _plain(view.escrow) or "unknown"),
    ]
    lines = ["| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def _pr_cell(view: StoryView) -> str:
    text = "merged" if view.merged else "not merged"
    if view.reverted_by is not None:
        text += f", reverted by #{view.reverted_by} (the story's status stays as it was)"
    return text


def _gate_cell(view: StoryView) -> str:
    if view.gate_decision is None:
        text = "no gate yet"
    else:
        text = f"{_plain(view.gate_decision.upper())}, {'accepted' if view.gate_accepted else 'not accepted'}"
        if view.gate_note:
            text += f" ({_plain(view.gate_note)})"
    if view.gate_path:
        text += f" · {_code(view.gate_path)}"
    return text


def _explanations(view: StoryView) -> str:
    # A link problem is always the next step itself (see `assess`): no section repeats it.
    sections: list[str] = []
    if view.refusal:
        sections.append(f"#### Refused\n{_plain(view.refusal)}")
    if view.gate_problem:
        sections.append(f"#### Gate file refused\n{_plain(view.gate_problem)}")
    if view.config_problems:
        items = "\n".join(f"- {_plain(problem)}" for problem in view.config_problems)
        sections.append(
            f"#### Configuration\n{_code('.github/bmad-marketplace.yml')} has problems; the defaults "
            f"apply instead:\n{items}"
        )
    if view.layout:
        sections.append(f"#### BMAD layout\n{_plain(view.layout)}")
    return "\n\n".join(sections)


def _status_name(status: str | None) -> str:
    if status is None:
        return "unknown"
    return _STATUS_NAMES.get(status, _plain(status.replace("_", " ").capitalize()))


def _title(headline: str) -> str:
    line = " ".join(headline.split())
    return line if len(line) <= MAX_TITLE_CHARS else line[: MAX_TITLE_CHARS - 1] + "…"


_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")
_MENTION = re.compile(r"(?<![\w`/])@([A-Za-z0-9][A-Za-z0-9-]*(?:\[bot\])?)")


def _login(login: str, web_url: str = GITHUB_WEB) -> str:
    # A link, not a bare @mention: GitHub notifies nobody for a name inside a link.
    if _LOGIN.fullmatch(login):
        return f"[@{login}]({web_url}/{login})"
    return _code(f"@{login}")


def _who(login: str | None, role: str, web_url: str = GITHUB_WEB) -> str:
    return f"{role} ({_login(login, web_url)})" if login else role


def web_root(html_url: str | None) -> str:
    """The GitHub web host a PR's `html_url` is on ("https://github.com", or a GitHub Enterprise
    Server's own), for links to its users; github.com when the URL is missing or not http(s)."""
    parsed = urlsplit(html_url or "")
    if parsed.scheme in ("http", "https") and parsed.hostname and not parsed.username and not parsed.password:
        return f"{parsed.scheme}://{parsed.netloc}"
    return GITHUB_WEB


def _plain(text: str | None) -> str:
    """User text made safe for one line of a markdown table."""
    if not text:
        return ""
    flat = " ".join(text.split())
    flat = flat.replace("<", "&lt;").replace("|", "\\|")
    return _MENTION.sub(lambda m: f"`@{m.group(1)}`", flat)


def _sentence(text: str) -> str:
    plain = _plain(text)
    return plain if plain.endswith((".", "!", "?")) else plain + "."


def _code(text: str) -> str:
    return "`" + " ".join(text.split()).replace("`", "'").replace("|", "\\|") + "`"


__all__ = [
    "CHECK_RUN_NAME",
    "COMMENT_MARKER",
    "FAILURE",
    "MAX_COMMENT_BYTES",
    "MAX_OUTPUT_BYTES",
    "NEUTRAL",
    "SUCCESS",
    "Assessment",
    "StoryView",
    "assess",
    "check_run_payload",
    "pr_comment_body",
    "truncate",
]
