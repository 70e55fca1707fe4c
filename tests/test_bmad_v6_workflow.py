"""BMAD v6 repositories end to end: sprint-status.yaml, v6 story files and build specs, TEA gate
decisions and the QA's pull request review, through signed deliveries and the fake GitHub."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from github_app.demo.fake_github import FakeGitHub
from github_app.outbox.sender import OutboxSender
from tests.github_fixtures import REPO
from tests.harness import App
from tests.test_workflow_hardening import latest_run
from tests.workflow import DEV, GATE_PATH, OTHER_DEV, PM, QA, STORY_PATH, Market, gate_file, seed_market, story_file

IMPL = "_bmad-output/implementation-artifacts"
SPRINT = f"{IMPL}/sprint-status.yaml"
GATE_DECISION = "_bmad-output/test-artifacts/gate-decision.json"
KEY = "1-4-sign-in-and-receive-a-jwt-list-users"
STORY_V6 = f"{IMPL}/{KEY}.md"
PR_TITLE = "Story 1.4: sign in"
BRANCH = "story/1.4-sign-in"
HEAD = "0007" + "a" * 36

BMM_CONFIG = """# BMM Module Configuration
# Version: 6.11.0
project_name: ActionLedger
planning_artifacts: "{project-root}/_bmad-output/planning-artifacts"
implementation_artifacts: "{project-root}/_bmad-output/implementation-artifacts"
project_knowledge: "{project-root}/docs"
user_name: Bob
output_folder: "{project-root}/_bmad-output"
"""


def sprint_status(**stories: str) -> str:
    """sprint-status.yaml as bmad-sprint-planning writes it; `stories` maps keys (with _ for -) to statuses."""
    lines = [
        "# generated: 11-20-2026 14:02",
        "# project: ActionLedger",
        "generated: 11-20-2026 14:02",
        "last_updated: 11-21-2026 09:15",
        "project: ActionLedger",
        "project_key: NOKEY",
        "tracking_system: file-system",
        f"story_location: {IMPL}",
        "",
        "development_status:",
        "  epic-1: in-progress",
    ]
    lines += [f"  {key.replace('_', '-')}: {status}" for key, status in stories.items()]
    lines += ["  epic-1-retrospective: optional", ""]
    return "\n".join(lines)


def entry(status: str, key: str = KEY) -> dict[str, str]:
    return {key.replace("-", "_"): status}


def classic_story(status: str = "ready-for-dev", title: str = "Sign in and receive a JWT; list users") -> str:
    return f"""# Story 1.4: {title}

Status: {status}

## Story

As an operator,
I want to sign in and receive a JWT,
so that I can list users.

## Acceptance Criteria

1. POST /auth/login returns a JWT for valid credentials
2. GET /users requires the JWT

## Tasks / Subtasks

- [ ] Login endpoint (AC: #1)

## Dev Notes

## Dev Agent Record

### Agent Model Used
"""


def gate_decision(status: str = "PASS", key: str = KEY) -> str:
    return json.dumps(
        {
            "schema_version": "0.1.0",
            "gate_status": status,
            "rationale": "P0 100%, P1 95%",
            "target": {"type": "story", "id": key, "label": "Story 1.4"},
            "p0_status": "MET",
            "critical_open": 0,
            "snapshot_at": "2026-11-21T10:00:00Z",
            "rule_applied": "P1>=90",
        }
    )


class Repo:
    """The default branch as a whole tree, so each push's parent holds the files as they were."""

    def __init__(self, m: Market, fake: FakeGitHub) -> None:
        self.m, self.fake = m, fake
        self.tree: dict[str, str] = {}
        self.head: str | None = None

    def config(self, files: dict[str, str]) -> None:
        for path, content in files.items():
            self.fake.put_file(REPO, "main", path, content.encode())

    def push_main(self, files: dict[str, str | None], sender: str) -> dict[str, Any]:
        data = self.m.push("main", dict(files), sender, before=self.head)
        for path, content in files.items():
            if content is None:
                self.tree.pop(path, None)
            else:
                self.tree[path] = content
        for path, content in self.tree.items():
            self.fake.put_file(REPO, data["after"], path, content.encode())
        self.head = data["after"]
        return data


@pytest.fixture
async def market(app: App, fake_github: FakeGitHub) -> AsyncIterator[Market]:
    yield await seed_market(app.runtime, fake_github)


@pytest.fixture
def repo(market: Market, fake_github: FakeGitHub) -> Repo:
    r = Repo(market, fake_github)
    r.config({"_bmad/bmm/config.yaml": BMM_CONFIG})
    return r


async def stories(m: Market) -> list[dict[str, Any]]:
    rows = await m.rows(
        'SELECT id, "epicNumber", "storyNumber", status, title, "qaGateStatus", "qaGatePath", "qaReviewCount", '
        '"storyFile", "acceptanceCriteria" FROM "Story" ORDER BY "epicNumber", "storyNumber"'
    )
    keys = ("id", "epic", "story", "status", "title", "gate", "gate_path", "reviews", "file", "ac")
    return [dict(zip(keys, row, strict=True)) for row in rows]


async def only_story(m: Market) -> dict[str, Any]:
    [story] = await stories(m)
    return story


async def actions(m: Market) -> list[str]:
    return [r[0] for r in await m.rows('SELECT action FROM "StoryAuditLog" ORDER BY "createdAt", id')]


async def audit_reasons(m: Market, action: str) -> list[str]:
    rows = await m.rows('SELECT metadata FROM "StoryAuditLog" WHERE action = :a ORDER BY "createdAt", id', a=action)
    return [(r[0] if isinstance(r[0], dict) else json.loads(r[0]))["reason"] for r in rows]


async def all_processed(m: Market) -> None:
    assert await m.rows("SELECT state, last_error FROM webhook_inbox WHERE state <> 'done'") == []


async def approved_v6_story(app: App, m: Market, repo: Repo) -> str:
    """Story 1.4 from sprint planning (backlog), then create-story's file and ready-for-dev by the PM;
    DEV wins its opportunity and opens a ready PR."""
    await app.deliver("push", repo.push_main({SPRINT: sprint_status(**entry("backlog"))}, PM))
    story = await only_story(m)
    assert (story["status"], story["title"]) == ("DRAFT", "Sign in and receive a jwt list users")
    await app.deliver(
        "push", repo.push_main({SPRINT: sprint_status(**entry("ready-for-dev")), STORY_V6: classic_story()}, PM)
    )
    story = await only_story(m)
    assert (story["status"], story["title"]) == ("APPROVED", "Sign in and receive a JWT; list users")
    assert story["ac"].startswith("1. POST /auth/login") and story["file"] == STORY_V6
    await m.accept_bid(story["id"], DEV)
    await app.deliver("pull_request", m.pr("opened", 7, title=PR_TITLE, branch=BRANCH, head_sha=HEAD))
    assert (await only_story(m))["status"] == "READY_FOR_REVIEW"
    return str(story["id"])


async def test_v6_story_from_sprint_status_to_done_through_the_qas_review(
    app: App, market: Market, repo: Repo, fake_github: FakeGitHub
) -> None:
    m = market
    await approved_v6_story(app, m, repo)

    # The developer's own code review writes done: what the repository says, nothing more.
    await app.deliver("push", repo.push_main({SPRINT: sprint_status(**entry("done"))}, DEV))
    assert (await only_story(m))["status"] == "READY_FOR_REVIEW"
    [said] = await audit_reasons(m, "sprint_status_reported")
    assert "says done (was ready-for-dev)" in said and "stays READY_FOR_REVIEW" in said

    await app.deliver("pull_request_review", m.review(7, head_sha=HEAD))
    story = await only_story(m)
    assert (story["status"], story["gate"], story["reviews"]) == ("READY_FOR_REVIEW", "PASS", 1)
    assert story["gate_path"] == f"https://github.com/{REPO}/pull/7#pullrequestreview-1"

    await app.deliver("pull_request", m.pr("closed", 7, merged=True, title=PR_TITLE, branch=BRANCH, head_sha=HEAD))
    assert (await only_story(m))["status"] == "DONE"
    assert await m.rows("SELECT state, expert_id FROM escrow_release_request") == [("pending", m.users[DEV])]
    assert "gate_recorded" in await actions(m) and "completed" in await actions(m)
    await all_processed(m)

    await OutboxSender(app.runtime, writes_per_second=1000).run_until_idle()
    [comment] = fake_github.comments.values()
    assert "BMAD v6 (_bmad/bmm/config.yaml) on main" in comment["body"]
    assert f"sprint status {SPRINT}" in comment["body"]


async def test_v6_story_to_done_through_a_tea_gate_decision(app: App, market: Market, repo: Repo) -> None:
    m = market
    await approved_v6_story(app, m, repo)
    await app.deliver("push", m.push(BRANCH, {GATE_DECISION: gate_decision("NOT_EVALUATED")}, QA))
    assert (await only_story(m))["gate"] is None
    await app.deliver("push", m.push(BRANCH, {GATE_DECISION: gate_decision("PASS")}, QA))
    story = await only_story(m)
    assert (story["gate"], story["gate_path"], story["reviews"]) == ("PASS", GATE_DECISION, 1)
    # Merged at the branch's head: the QA's gate commit, on top of the code QA reviewed.
    await app.deliver("pull_request", m.pr("closed", 7, merged=True, title=PR_TITLE, branch=BRANCH))
    assert (await only_story(m))["status"] == "DONE"
    assert len(await m.rows("SELECT id FROM escrow_release_request")) == 1
    await all_processed(m)


async def test_a_gate_decision_pushed_by_the_developer_does_not_count(app: App, market: Market, repo: Repo) -> None:
    m = market
    await approved_v6_story(app, m, repo)
    await app.deliver("push", m.push(BRANCH, {GATE_DECISION: gate_decision("PASS")}, DEV))
    story = await only_story(m)
    assert (story["gate"], story["reviews"]) == (None, 0)
    [refusal] = await audit_reasons(m, "transition_refused")
    assert "is the developer of story 1.4" in refusal


async def test_reviews_by_the_developer_or_a_non_qa_or_on_an_old_head_do_not_count(
    app: App, market: Market, repo: Repo
) -> None:
    m = market
    await approved_v6_story(app, m, repo)
    await app.deliver("pull_request_review", m.review(7, reviewer=DEV, head_sha=HEAD, review_id=1))
    await app.deliver("pull_request_review", m.review(7, reviewer=OTHER_DEV, head_sha=HEAD, review_id=2))
    refusals = await audit_reasons(m, "transition_refused")
    assert any("is the developer of story 1.4" in r for r in refusals)
    assert any("cannot record the QA gate of story 1.4: that needs the QA role" in r for r in refusals)

    # The QA reviewed the first commit; the developer has pushed since (the PR's head moved).
    new_head = "0007" + "b" * 36
    await app.deliver("pull_request", m.pr("synchronize", 7, title=PR_TITLE, branch=BRANCH, head_sha=new_head))
    await app.deliver(
        "pull_request_review", m.review(7, commit_id=HEAD, head_sha=new_head, review_id=3, pr_updated_at=None)
    )
    [not_counted] = await audit_reasons(m, "qa_review_not_counted")
    assert "not of the PR's current head 0007bbb" in not_counted
    story = await only_story(m)
    assert (story["gate"], story["reviews"], story["status"]) == (None, 0, "READY_FOR_REVIEW")

    # A comment-only review decides nothing; the QA's approval of the current head does.
    await app.deliver("pull_request_review", m.review(7, state="commented", head_sha=new_head, review_id=4))
    assert (await only_story(m))["gate"] is None
    await app.deliver("pull_request_review", m.review(7, head_sha=new_head, review_id=5))
    assert (await only_story(m))["gate"] == "PASS"
    await all_processed(m)


async def test_changes_requested_and_a_dismissed_review(app: App, market: Market, repo: Repo) -> None:
    m = market
    await approved_v6_story(app, m, repo)
    await app.deliver("pull_request_review", m.review(7, state="changes_requested", head_sha=HEAD, review_id=1))
    story = await only_story(m)
    assert (story["status"], story["gate"]) == ("IN_PROGRESS", "FAIL")
    assert await m.rows('SELECT status FROM "Deliverable"') == [("CHANGES_REQUESTED",)]

    await app.deliver("pull_request", m.pr("ready_for_review", 7, title=PR_TITLE, branch=BRANCH, head_sha=HEAD))
    await app.deliver("pull_request_review", m.review(7, head_sha=HEAD, review_id=2))
    assert (await only_story(m))["gate"] == "PASS"
    # A maintainer dismisses the approval: it no longer counts, and the merge waits for QA again.
    await app.deliver("pull_request_review", m.review(7, action="dismissed", head_sha=HEAD, review_id=2, sender=PM))
    story = await only_story(m)
    assert (story["gate"], story["status"]) == (None, "READY_FOR_REVIEW")
    await app.deliver("pull_request", m.pr("closed", 7, merged=True, title=PR_TITLE, branch=BRANCH, head_sha=HEAD))
    assert (await only_story(m))["status"] == "READY_FOR_REVIEW"
    await app.deliver("pull_request_review", m.review(7, head_sha=HEAD, review_id=3))
    assert (await only_story(m))["status"] == "DONE"
    await all_processed(m)


async def test_ready_for_dev_counts_only_from_a_pm_or_architect(app: App, market: Market, repo: Repo) -> None:
    m = market
    await app.deliver("push", repo.push_main({SPRINT: sprint_status(**entry("backlog"))}, PM))
    await app.deliver("push", repo.push_main({SPRINT: sprint_status(**entry("ready-for-dev"))}, DEV))
    assert (await only_story(m))["status"] == "DRAFT"
    [refusal] = await audit_reasons(m, "transition_refused")
    assert "cannot approve story 1.4" in refusal
    # The PM touching the file again does not approve: the entry already said ready-for-dev.
    await app.deliver(
        "push", repo.push_main({SPRINT: sprint_status(**entry("ready-for-dev"), **entry("backlog", "1-5-x"))}, PM)
    )
    assert [s["status"] for s in await stories(m)] == ["DRAFT", "DRAFT"]


async def test_a_retitled_story_keeps_its_row(app: App, market: Market, repo: Repo) -> None:
    m = market
    await app.deliver("push", repo.push_main({SPRINT: sprint_status(**entry("backlog"))}, PM))
    before = await only_story(m)
    renamed = "1-4-log-in-with-a-token"
    await app.deliver(
        "push",
        repo.push_main(
            {
                SPRINT: sprint_status(**entry("ready-for-dev", renamed)),
                f"{IMPL}/{renamed}.md": classic_story(title="Log in"),
            },
            PM,
        ),
    )
    after = await only_story(m)
    assert after["id"] == before["id"]
    assert (after["title"], after["status"]) == ("Log in", "APPROVED")
    assert "sprint_key_changed" in await actions(m)
    await all_processed(m)


async def test_a_letter_suffixed_key_is_refused_without_losing_the_rest(
    app: App, market: Market, repo: Repo, fake_github: FakeGitHub
) -> None:
    m = market
    push = repo.push_main(
        {SPRINT: sprint_status(**entry("ready-for-dev", "1-2a-hotfix-login"), **entry("backlog"))}, PM
    )
    await app.deliver("push", push)
    [story] = await stories(m)
    assert (story["epic"], story["story"], story["status"]) == (1, 4, "DRAFT")
    await OutboxSender(app.runtime, writes_per_second=1000).run_until_idle()
    [run] = [r for r in fake_github.check_runs.values() if r["head_sha"] == push["after"]]
    assert (run["name"], run["conclusion"]) == ("BMAD story files", "failure")
    assert "1-2a-hotfix-login" in run["output"]["summary"] and "letter suffix" in run["output"]["summary"]
    await all_processed(m)


async def test_a_repository_holding_both_v4_and_v6(
    app: App, market: Market, repo: Repo, fake_github: FakeGitHub
) -> None:
    m = market
    repo.config({".bmad-core/core-config.yaml": "devStoryLocation: docs/stories\nqa:\n  qaLocation: docs/qa\n"})
    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Draft")}, PM))
    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Approved")}, PM))
    await app.deliver("push", repo.push_main({SPRINT: sprint_status(**entry("ready-for-dev"))}, PM))
    assert [(s["epic"], s["story"], s["status"]) for s in await stories(m)] == [(1, 3, "APPROVED"), (1, 4, "APPROVED")]

    # The v4 story is accepted through a v4 gate file, the v6 one through the QA's review.
    v4, v6 = await stories(m)
    await m.accept_bid(v4["id"], DEV)
    await m.accept_bid(v6["id"], DEV)
    await app.deliver("pull_request", m.pr("opened", 3, head_sha="0003" + "a" * 36))
    await app.deliver("pull_request", m.pr("opened", 7, title=PR_TITLE, branch=BRANCH, head_sha=HEAD))
    await app.deliver("push", m.push("story/1.3-user-auth", {GATE_PATH: gate_file("PASS")}, QA))
    await app.deliver("pull_request_review", m.review(7, head_sha=HEAD))
    for number, branch, title in ((3, "story/1.3-user-auth", "Story 1.3: user auth"), (7, BRANCH, PR_TITLE)):
        head = f"{number:04d}" + "a" * 36
        await app.deliver(
            "pull_request", m.pr("closed", number, merged=True, title=title, branch=branch, head_sha=head)
        )
    v4, v6 = await stories(m)
    assert (v4["status"], v4["gate_path"]) == ("DONE", GATE_PATH)
    assert (v6["status"], v6["gate_path"]) == ("DONE", f"https://github.com/{REPO}/pull/7#pullrequestreview-1")
    await OutboxSender(app.runtime, writes_per_second=1000).run_until_idle()
    bodies = [c["body"] for c in fake_github.comments.values()]
    assert all("BMAD v4 (.bmad-core/core-config.yaml) and v6 (_bmad/bmm/config.yaml)" in b for b in bodies)
    await all_processed(m)


async def test_a_review_also_counts_for_a_v4_story_and_the_repo_can_turn_sources_off(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    m = market
    fake_github.put_file(REPO, "main", ".github/bmad-marketplace.yml", b"qa_sources: [review]\n")
    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Draft")}, PM))
    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Approved")}, PM))
    [story] = await stories(m)
    await m.accept_bid(story["id"], DEV)
    await app.deliver("pull_request", m.pr("opened", 3))
    await app.deliver("push", m.push("story/1.3-user-auth", {GATE_PATH: gate_file("PASS")}, QA))
    assert (await stories(m))[0]["gate"] is None  # gate files do not count in this repository
    # QA approves the PR as it is now, the gate file commit included.
    await app.deliver("pull_request_review", m.review(3, head_sha=m.heads["story/1.3-user-auth"]))
    await app.deliver("pull_request", m.pr("closed", 3, merged=True))
    assert (await stories(m))[0]["status"] == "DONE"
    await all_processed(m)


async def test_new_commits_after_the_qas_approval_need_a_new_review(
    app: App, market: Market, repo: Repo, fake_github: FakeGitHub
) -> None:
    m = market
    await approved_v6_story(app, m, repo)
    await app.deliver("pull_request_review", m.review(7, head_sha=HEAD, review_id=1))
    await OutboxSender(app.runtime, writes_per_second=1000).run_until_idle()
    assert latest_run(fake_github, HEAD, pr=7)["conclusion"] == "success"
    new_head = "0007" + "c" * 36
    await app.deliver("pull_request", m.pr("synchronize", 7, title=PR_TITLE, branch=BRANCH, head_sha=new_head))
    story = await only_story(m)
    assert story["status"] == "READY_FOR_REVIEW"
    [reason] = await audit_reasons(m, "review_outdated")
    assert "new commits on PR #7 (0007cccccccc)" in reason and "waits for QA to review them" in reason
    await OutboxSender(app.runtime, writes_per_second=1000).run_until_idle()
    assert latest_run(fake_github, new_head, pr=7)["conclusion"] != "success"
    await app.deliver("pull_request", m.pr("closed", 7, merged=True, title=PR_TITLE, branch=BRANCH, head_sha=new_head))
    assert (await only_story(m))["status"] == "READY_FOR_REVIEW"  # the merge waits for QA's review
    await app.deliver("pull_request_review", m.review(7, head_sha=new_head, review_id=2))
    assert (await only_story(m))["status"] == "DONE"
    await all_processed(m)


async def test_the_pr_shows_what_could_not_be_read(
    app: App, market: Market, repo: Repo, fake_github: FakeGitHub
) -> None:
    m = market
    repo.config(
        {"_bmad/config.toml": "[core\n", "_bmad/bmm/config.yaml": 'implementation_artifacts: "c:/Users/bob/x"\n'}
    )
    await approved_v6_story(app, m, repo)
    await OutboxSender(app.runtime, writes_per_second=1000).run_until_idle()
    [comment] = fake_github.comments.values()
    assert "_bmad/config.toml is not valid TOML" in comment["body"]
    assert "path on someone's computer" in comment["body"]
    [run] = [r for r in fake_github.check_runs.values() if r["head_sha"] == HEAD]
    assert "BMAD v6 (_bmad/bmm/config.yaml, _bmad/config.toml) on main" in run["output"]["summary"]


async def test_a_review_on_a_pr_that_does_not_deliver_the_story_does_not_count(
    app: App, market: Market, repo: Repo
) -> None:
    m = market
    await approved_v6_story(app, m, repo)
    # PR 8 names the same story, but PR 7 delivers it.
    await app.deliver("pull_request", m.pr("opened", 8, title=PR_TITLE, branch="story/1.4-again"))
    await app.deliver("pull_request_review", m.review(8))
    [reason] = await audit_reasons(m, "qa_review_not_counted")
    assert "PR #8 does not deliver the story (PR #7 does)" in reason
    assert (await only_story(m))["gate"] is None


SPEC = """---
title: 'Digest delivery'
type: 'feature'
status: 'draft'
baseline_commit: 'abc123'
---

# Digest delivery

<frozen-after-approval reason="human-owned intent">

## Intent

**Problem:** users miss updates. **Approach:** send a daily digest.

</frozen-after-approval>

## Tasks & Acceptance

- Given a user with updates, when the digest runs, then one email is sent
"""


async def test_several_stories_in_one_push_with_story_files_and_build_specs(
    app: App, market: Market, repo: Repo
) -> None:
    m = market
    files: dict[str, str | None] = {
        SPRINT: sprint_status(
            **entry("ready-for-dev"), **entry("backlog", "2-1-digest-delivery"), **entry("backlog", "2-2-reminders")
        ),
        f"{IMPL}/stories/{KEY}.md": classic_story(),
        f"{IMPL}/spec-2-1-digest-delivery.md": SPEC,
    }
    await app.deliver("push", repo.push_main(files, PM))
    got = [(s["epic"], s["story"], s["status"], s["title"]) for s in await stories(m)]
    assert got == [
        (1, 4, "APPROVED", "Sign in and receive a JWT; list users"),
        (2, 1, "DRAFT", "Digest delivery"),
        (2, 2, "DRAFT", "Reminders"),
    ]
    spec_story = (await stories(m))[1]
    assert "one email is sent" in spec_story["ac"] and spec_story["file"] == f"{IMPL}/spec-2-1-digest-delivery.md"
    # The human's Approve at the spec's checkpoint, pushed by the PM, approves that story too.
    await app.deliver(
        "push", repo.push_main({f"{IMPL}/spec-2-1-digest-delivery.md": SPEC.replace("'draft'", "'ready-for-dev'")}, PM)
    )
    assert (await stories(m))[1]["status"] == "APPROVED"
    await all_processed(m)


async def test_ready_for_dev_written_by_the_developer_and_merged_by_the_pm_is_not_an_approval(
    app: App, market: Market, repo: Repo
) -> None:
    m = market
    await app.deliver("push", repo.push_main({SPRINT: sprint_status(**entry("backlog"))}, PM))
    # The developer marks their story ready-for-dev on a branch; the PM merges that pull request.
    ready = sprint_status(**entry("ready-for-dev"))
    await app.deliver("push", m.push("dana/ready", {SPRINT: ready}, DEV))
    await app.deliver("push", repo.push_main({SPRINT: ready}, PM))
    assert (await only_story(m))["status"] == "DRAFT"
    [refusal] = await audit_reasons(m, "transition_refused")
    assert "@dana-dev cannot approve story 1.4" in refusal
    assert "written by @dana-dev; @pat-pm only carried it" in refusal
    await all_processed(m)


async def test_ready_for_dev_written_by_the_pm_counts_whoever_merges_it(app: App, market: Market, repo: Repo) -> None:
    m = market
    await app.deliver("push", repo.push_main({SPRINT: sprint_status(**entry("backlog"))}, PM))
    ready = sprint_status(**entry("ready-for-dev"))
    await app.deliver("push", m.push("paula/plan", {SPRINT: ready}, PM))
    await app.deliver("push", repo.push_main({SPRINT: ready}, DEV))  # the developer presses merge
    assert (await only_story(m))["status"] == "APPROVED"
    await all_processed(m)


async def test_a_gate_decision_counts_only_from_the_qa_who_wrote_it_whoever_merges_it(
    app: App, market: Market, repo: Repo
) -> None:
    m = market
    await approved_v6_story(app, m, repo)
    # The developer commits a PASS gate decision to the PR branch (refused), then QA merges the PR.
    await app.deliver("push", m.push(BRANCH, {GATE_DECISION: gate_decision("PASS")}, DEV))
    assert (await only_story(m))["gate"] is None
    await app.deliver("pull_request", m.pr("synchronize", 7, title=PR_TITLE, branch=BRANCH))
    await app.deliver("push", m.push("main", {GATE_DECISION: gate_decision("PASS")}, QA, authored_by=DEV))
    await app.deliver("pull_request", m.pr("closed", 7, merged=True, title=PR_TITLE, branch=BRANCH, sender=QA))
    story = await only_story(m)
    assert (story["status"], story["gate"], story["reviews"]) == ("READY_FOR_REVIEW", None, 0)
    refusals = await audit_reasons(m, "transition_refused")
    assert all("is the developer of story 1.4" in r for r in refusals) and refusals
    assert await m.rows("SELECT id FROM escrow_release_request") == []
    await all_processed(m)


async def test_a_gate_decision_by_the_qa_merged_by_the_developer_counts(app: App, market: Market, repo: Repo) -> None:
    m = market
    await approved_v6_story(app, m, repo)
    # TEA's gate decision, written by the QA on the PR branch; the developer then merges the PR.
    decision = gate_decision("PASS")
    await app.deliver("push", m.push(BRANCH, {GATE_DECISION: decision}, QA))
    await app.deliver("pull_request", m.pr("synchronize", 7, title=PR_TITLE, branch=BRANCH, sender=QA))
    await app.deliver("push", m.push("main", {GATE_DECISION: decision}, DEV, authored_by=QA))
    await app.deliver("pull_request", m.pr("closed", 7, merged=True, title=PR_TITLE, branch=BRANCH))
    story = await only_story(m)
    assert (story["status"], story["gate"], story["gate_path"], story["reviews"]) == (
        "DONE",
        "PASS",
        GATE_DECISION,
        1,
    )
    [recorded] = await audit_reasons(m, "gate_recorded")
    assert "gate PASS recorded by @quinn-qa" in recorded
    assert len(await m.rows("SELECT id FROM escrow_release_request")) == 1
    await all_processed(m)


async def test_a_ready_for_dev_from_a_developers_fork_merged_by_the_pm_is_not_an_approval(
    app: App, market: Market, repo: Repo, fake_github: FakeGitHub
) -> None:
    m = market
    await app.deliver("push", repo.push_main({SPRINT: sprint_status(**entry("backlog"))}, PM))
    ready = sprint_status(**entry("ready-for-dev"))
    blob = hashlib.sha1(b"blob %d\0" % len(ready.encode()) + ready.encode()).hexdigest()
    fake_github.set_pull_files(REPO, 9, [{"filename": SPRINT, "status": "modified", "sha": blob}])
    # The fork's pushes never reach the app: the PR's files show who wrote this version.
    await app.deliver("pull_request", m.pr("opened", 9, title="Plan story 1.4", branch="plan", fork=True))
    await app.deliver("push", repo.push_main({SPRINT: ready}, PM))
    assert (await only_story(m))["status"] == "DRAFT"
    refusals = await audit_reasons(m, "transition_refused")
    assert any("@dana-dev cannot approve story 1.4" in r for r in refusals)
    await all_processed(m)


async def test_a_review_counts_only_from_the_github_account_bound_to_the_qa(
    app: App, market: Market, repo: Repo
) -> None:
    m = market
    await approved_v6_story(app, m, repo)
    await app.deliver("push", m.push(BRANCH, {GATE_DECISION: gate_decision("CONCERNS")}, QA))  # binds QA's account
    # The login was renamed and reclaimed by another GitHub account: its approval is not QA's.
    head = m.heads[BRANCH]
    await app.deliver("pull_request_review", m.review(7, head_sha=head, review_id=2, reviewer_id=4242))
    story = await only_story(m)
    assert (story["gate"], story["reviews"]) == ("CONCERNS", 1)
    refusals = await audit_reasons(m, "transition_refused")
    assert any("@quinn-qa now belongs to a different GitHub account (id 4242)" in r for r in refusals)
    await all_processed(m)
