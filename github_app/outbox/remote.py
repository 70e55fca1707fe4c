"""What each kind of outbox target is on GitHub: how it is created, updated, and found again.

Every object the app creates carries its outbox target's key where GitHub keeps it (a check run's
`external_id`, a hidden marker in a comment's body), so that the sender can find what an earlier
attempt made when GitHub's answer was lost, and adopt it instead of creating a second one. A new kind
of write (a reaction, a reply) adds a class here and gets that protection with no change to the sender.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol
from urllib.parse import quote, urlencode

from gidgethub import BadRequest
from gidgethub.abc import GitHubAPI

from github_app.outbox.enqueue import KIND_CHECK_RUN, KIND_COMMAND_REPLY, KIND_PR_COMMENT, KIND_REACTION
from github_app.presentation import COMMENT_MARKER, MAX_COMMENT_BYTES, MAX_OUTPUT_BYTES, truncate

PAGE = 100
# Pages read when looking for an object the app made: 10,000 objects on one commit or issue is far past
# anything real, and the bound keeps a hostile thread from costing an unbounded number of calls.
MAX_PAGES = 100


@dataclass(frozen=True)
class Found:
    remote_id: int
    current: bool  # it shows the desired content already: no update needed


class RemoteKind(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def content_creating(self) -> bool:
        """GitHub's "content-creating" requests (comments, issues, reviews) have a tighter budget."""
        ...

    def request(self, target: str, desired: dict[str, Any]) -> dict[str, Any]:
        """The full body that creates the object, carrying `target` as its identity."""
        ...

    def changes(self, body: dict[str, Any]) -> dict[str, Any]:
        """The part of `body` an update sends."""
        ...

    def create_path(self, repository: str, target: str, body: dict[str, Any]) -> str: ...

    def update_path(self, repository: str, remote_id: int) -> str: ...

    async def updatable(self, gh: GitHubAPI, repository: str, remote_id: int, body: dict[str, Any]) -> bool:
        """Whether the object made earlier may take `body`, or a new one must be created instead."""
        ...

    async def find(
        self,
        gh: GitHubAPI,
        app_id: int,
        repository: str,
        target: str,
        body: dict[str, Any],
        since: datetime | None = None,
    ) -> Found | None:
        """The object the app made for `target`, if GitHub has one (`since`: made at or after)."""
        ...


class CheckRunKind:
    """A check run, found again by its `external_id` (the view's, else the outbox target) among the app's runs
    on the commit."""

    name: Final = KIND_CHECK_RUN
    content_creating: Final = False

    def request(self, target: str, desired: dict[str, Any]) -> dict[str, Any]:
        body = check_run_request(desired)
        body["head_sha"] = str(body.get("head_sha") or target)
        # The view may name the run itself (one run per PR on a shared head); else the target does.
        body["external_id"] = str(body.get("external_id") or target)
        return body

    def changes(self, body: dict[str, Any]) -> dict[str, Any]:
        # The commit of a run cannot change; GitHub wants it only when creating.
        return {key: value for key, value in body.items() if key != "head_sha"}

    def create_path(self, repository: str, target: str, body: dict[str, Any]) -> str:
        return f"/repos/{repository}/check-runs"

    def update_path(self, repository: str, remote_id: int) -> str:
        return f"/repos/{repository}/check-runs/{remote_id}"

    async def updatable(self, gh: GitHubAPI, repository: str, remote_id: int, body: dict[str, Any]) -> bool:
        # GitHub refuses to move a completed run back to in progress: a head that needs review again
        # gets a new run, and the completed one stays as the record of what was decided.
        if not _reopens(body):
            return True
        try:
            run = await gh.getitem(f"/repos/{repository}/check-runs/{remote_id}")
        except BadRequest as exc:
            if exc.status_code == 404:
                return False
            raise
        return run.get("status") != "completed"

    async def find(
        self,
        gh: GitHubAPI,
        app_id: int,
        repository: str,
        target: str,
        body: dict[str, Any],
        since: datetime | None = None,
    ) -> Found | None:
        name = str(body.get("name") or "")
        ours: list[int] = []
        unmarked: list[int] = []
        for page in range(1, MAX_PAGES + 1):
            # filter=all: a run completed and superseded is still the one to adopt.
            query = urlencode(
                {"check_name": name, "app_id": app_id, "filter": "all", "per_page": PAGE, "page": page},
                quote_via=quote,
            )
            found = await gh.getitem(f"/repos/{repository}/commits/{quote(body['head_sha'])}/check-runs?{query}")
            runs = found.get("check_runs") or []
            for run in runs:
                if run.get("name") != name or (run.get("app") or {}).get("id") != app_id:
                    continue
                if _reopens(body) and run.get("status") == "completed":
                    continue
                if run.get("external_id") == body["external_id"]:
                    ours.append(int(run["id"]))
                elif not run.get("external_id"):
                    unmarked.append(int(run["id"]))
            if len(runs) < PAGE:
                break
        # Runs made before the app marked them with their target have no external_id: adopted only when
        # no marked one exists (the update then marks it, so no other target can take it).
        chosen = max(ours, default=None) or max(unmarked, default=None)
        return Found(chosen, current=False) if chosen is not None else None


class PrCommentKind:
    """The app's one comment on a pull request (target: its number), found by its hidden marker."""

    name: Final = KIND_PR_COMMENT
    content_creating: Final = True

    def marker(self, target: str) -> str:
        # One comment per PR: the issue number already tells the target, so the marker is the same on
        # every PR (and unchanged since the first version, so comments made then are still found).
        return COMMENT_MARKER

    def issue_number(self, target: str) -> str:
        return target

    def request(self, target: str, desired: dict[str, Any]) -> dict[str, Any]:
        return {"body": comment_text(desired, self.marker(target))}

    def changes(self, body: dict[str, Any]) -> dict[str, Any]:
        return body

    def create_path(self, repository: str, target: str, body: dict[str, Any]) -> str:
        return f"/repos/{repository}/issues/{self.issue_number(target)}/comments"

    def update_path(self, repository: str, remote_id: int) -> str:
        return f"/repos/{repository}/issues/comments/{remote_id}"

    async def updatable(self, gh: GitHubAPI, repository: str, remote_id: int, body: dict[str, Any]) -> bool:
        return True  # a comment is edited in place, always

    async def find(
        self,
        gh: GitHubAPI,
        app_id: int,
        repository: str,
        target: str,
        body: dict[str, Any],
        since: datetime | None = None,
    ) -> Found | None:
        marker = self.marker(target)
        params: dict[str, Any] = {"per_page": PAGE}
        if since is not None:
            params["since"] = since.strftime("%Y-%m-%dT%H:%M:%SZ")
        url = f"/repos/{repository}/issues/{self.issue_number(target)}/comments?{urlencode(params)}"
        seen = 0
        async for comment in gh.getiter(url):
            seen += 1
            if seen > PAGE * MAX_PAGES:
                break
            text = comment.get("body") or ""
            if marker in text and is_own_comment(comment, app_id):
                return Found(int(comment["id"]), current=text == body["body"])
        return None


class CommandReplyKind(PrCommentKind):
    """The app's one reply to a comment holding bot commands (target: "{issue}/{comment id}"), found by
    a marker naming the command comment, and edited in place when that comment is edited."""

    name: Final = KIND_COMMAND_REPLY  # type: ignore[misc]
    content_creating: Final = True  # type: ignore[misc]

    def marker(self, target: str) -> str:
        return f"<!-- bmad-marketplace-app:command-reply {target.partition('/')[2]} -->"

    def issue_number(self, target: str) -> str:
        return target.partition("/")[0]


class ReactionKind:
    """The app's reaction on a command comment (target: the comment's id): one at a time, so a new
    content replaces the app's earlier reaction. GitHub cannot edit a reaction: the earlier one is
    deleted (`stale`) and the new one created; creating a reaction that exists answers with it."""

    name: Final = KIND_REACTION
    content_creating: Final = False

    def __init__(self, bot_login: str | None = None) -> None:
        self.bot_login = bot_login

    def request(self, target: str, desired: dict[str, Any]) -> dict[str, Any]:
        return {"content": str(desired.get("content") or "eyes")}

    def changes(self, body: dict[str, Any]) -> dict[str, Any]:
        return body

    def create_path(self, repository: str, target: str, body: dict[str, Any]) -> str:
        return f"/repos/{repository}/issues/comments/{target}/reactions"

    def update_path(self, repository: str, remote_id: int) -> str:
        raise NotImplementedError("reactions are replaced, never edited")

    async def updatable(self, gh: GitHubAPI, repository: str, remote_id: int, body: dict[str, Any]) -> bool:
        return False

    async def _ours(self, gh: GitHubAPI, repository: str, target: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        seen = 0
        try:
            async for reaction in gh.getiter(f"/repos/{repository}/issues/comments/{target}/reactions?per_page={PAGE}"):
                seen += 1
                if seen > PAGE * MAX_PAGES:
                    break
                user = reaction.get("user") or {}
                if user.get("type") == "Bot" and (self.bot_login is None or user.get("login") == self.bot_login):
                    found.append(reaction)
        except BadRequest as exc:
            if exc.status_code == 404:  # the comment was deleted: nothing to react to
                return []
            raise
        return found

    async def find(
        self,
        gh: GitHubAPI,
        app_id: int,
        repository: str,
        target: str,
        body: dict[str, Any],
        since: datetime | None = None,
    ) -> Found | None:
        for reaction in await self._ours(gh, repository, target):
            if reaction.get("content") == body["content"]:
                return Found(int(reaction["id"]), current=True)
        return None

    async def stale(self, gh: GitHubAPI, repository: str, target: str, body: dict[str, Any]) -> list[str]:
        """Paths of the app's earlier reactions on the comment, to delete before this one is shown."""
        return [
            f"/repos/{repository}/issues/comments/{target}/reactions/{int(reaction['id'])}"
            for reaction in await self._ours(gh, repository, target)
            if reaction.get("content") != body["content"]
        ]


def remote_kinds(bot_login: str | None = None) -> dict[str, RemoteKind]:
    """Every kind, knowing the app's bot account (`{slug}[bot]`) where GitHub names only the user."""
    kinds: tuple[RemoteKind, ...] = (CheckRunKind(), PrCommentKind(), CommandReplyKind(), ReactionKind(bot_login))
    return {kind.name: kind for kind in kinds}


REMOTE_KINDS: dict[str, RemoteKind] = remote_kinds()


def _reopens(body: dict[str, Any]) -> bool:
    return body.get("status") not in (None, "completed")


def check_run_request(desired: dict[str, Any]) -> dict[str, Any]:
    """The desired check run as GitHub accepts it: output texts within GitHub's size limit."""
    body = dict(desired)
    output = body.get("output")
    if isinstance(output, dict):
        output = dict(output)
        for key in ("summary", "text"):
            if isinstance(output.get(key), str):
                output[key] = truncate(output[key], MAX_OUTPUT_BYTES)
        body["output"] = output
    return body


def comment_text(desired: dict[str, Any], marker: str = COMMENT_MARKER) -> str:
    """The comment's body, always carrying the marker by which the app finds its comment again."""
    text = str(desired.get("body") or "")
    if marker not in text:
        text = f"{marker}\n{text}"
    text = truncate(text, MAX_COMMENT_BYTES)
    if marker not in text:  # the marker sat past the cut
        text = truncate(f"{marker}\n{text}", MAX_COMMENT_BYTES)
    return text


def is_own_comment(comment: dict[str, Any], app_id: int) -> bool:
    """Written by the app: a bot account, and, where GitHub says which app acted, this one. A human
    quoting the marker is never adopted (the app would then edit a person's comment)."""
    if (comment.get("user") or {}).get("type") != "Bot":
        return False
    via = comment.get("performed_via_github_app")
    return not via or via.get("id") == app_id


__all__ = [
    "REMOTE_KINDS",
    "CheckRunKind",
    "CommandReplyKind",
    "ReactionKind",
    "Found",
    "PrCommentKind",
    "RemoteKind",
    "check_run_request",
    "comment_text",
    "is_own_comment",
    "remote_kinds",
]
