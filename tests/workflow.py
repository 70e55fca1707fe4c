"""A marketplace with people and a project, and builders for the webhook deliveries of a BMAD story's
life: story files and gates pushed, pull requests opened, readied, merged."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from github_app.db.enums import BidStatus, Role, Stage
from github_app.db.models import Bid, Opportunity, Project, User
from github_app.db.types import new_id
from github_app.demo.fake_github import FakeGitHub
from github_app.runtime import Runtime
from tests.deliveries import payload
from tests.github_fixtures import INSTALLATION_ID, REPO

PM, DEV, OTHER_DEV, QA, CLIENT, STRANGER = "pat-pm", "dana-dev", "olly-dev", "quinn-qa", "cleo-client", "sam-nobody"


def account_id(login: str) -> int:
    """The numeric id of the GitHub account now called `login` (logins are case-insensitive)."""
    return int(hashlib.sha1(login.lower().encode()).hexdigest()[:8], 16)


@dataclass
class Market:
    runtime: Runtime
    fake: FakeGitHub
    users: dict[str, str] = field(default_factory=dict)  # login -> user id
    project_id: str = ""
    _sha: itertools.count = field(default_factory=lambda: itertools.count(1))
    _clock: datetime = field(default_factory=lambda: datetime(2026, 11, 1, 12, 0, tzinfo=UTC))
    heads: dict[str, str] = field(default_factory=dict)  # branch -> its latest commit, as pushed or shown

    def sha(self) -> str:
        return hashlib.sha1(f"commit-{next(self._sha)}".encode()).hexdigest()

    def tick(self) -> str:
        self._clock += timedelta(minutes=1)
        return self._clock.isoformat().replace("+00:00", "Z")

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.runtime.engine.connect() as conn:
            return (await conn.execute(text(sql), params)).scalar()

    async def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        async with self.runtime.engine.connect() as conn:
            return [tuple(r) for r in (await conn.execute(text(sql), params)).all()]

    # -- the marketplace side -------------------------------------------------------------------------

    async def accept_bid(self, story_id: str, login: str) -> None:
        """The developer won the story's opportunity (what the marketplace does after APPROVED)."""
        async with self.runtime.sessionmaker() as s, s.begin():
            opp_id = (
                await s.execute(
                    text("SELECT opportunity_id FROM story_opportunity WHERE story_id = :s"), {"s": story_id}
                )
            ).scalar_one()
            bid = Bid(
                id=new_id(),
                opportunity_id=opp_id,
                expert_id=self.users[login],
                amount=150000,
                currency="USDC",
                proposal="I will build it",
                status=BidStatus.ACCEPTED,
            )
            s.add(bid)
            await s.flush()
            opp = await s.get(Opportunity, opp_id)
            assert opp is not None
            opp.accepted_bid_id = bid.id

    # -- deliveries --------------------------------------------------------------------------------------

    def push(
        self,
        branch: str,
        files: dict[str, str | bytes | None],
        sender: str,
        *,
        before: str | None = None,
        commits: int = 1,
        sender_id: int | None = None,
        authored_by: str | None = None,
    ) -> dict[str, Any]:
        """A push whose last commit adds/changes (content) or removes (None) `files`; that commit's
        author is `authored_by` (default: the sender, who then wrote what they pushed)."""
        after = self.sha()
        before = before or self.heads.get(branch) or self.sha()
        self.heads[branch] = after
        for path, content in files.items():
            if content is not None:
                self.fake.put_file(REPO, after, path, content.encode() if isinstance(content, str) else content)
        stamp = self.tick()
        changed = [p for p, c in files.items() if c is not None]
        removed = [p for p, c in files.items() if c is None]
        commit_list = [
            {
                "id": self.sha(),
                "timestamp": stamp,
                "added": [],
                "modified": [],
                "removed": [],
                "message": "work",
                "distinct": True,
            }
            for _ in range(commits - 1)
        ]
        commit_list.append(
            {
                "id": after,
                "timestamp": stamp,
                "added": [],
                "modified": changed,
                "removed": removed,
                "message": "bmad",
                "distinct": True,
                "author": {"name": authored_by or sender, "username": authored_by or sender},
            }
        )
        data = payload("push", "payload.json")
        data.update(
            {
                "ref": f"refs/heads/{branch}",
                "before": before,
                "after": after,
                "created": False,
                "deleted": False,
                "commits": commit_list[-20:],
                "head_commit": commit_list[-1],
                "installation": {"id": INSTALLATION_ID},
                "sender": {
                    "login": sender,
                    "type": "Bot" if sender.endswith("[bot]") else "User",
                    "id": sender_id or account_id(sender),
                },
                "pusher": {"name": sender},
            }
        )
        data["repository"].update({"full_name": REPO, "default_branch": "main", "name": REPO.split("/")[1]})
        return data

    def pr(
        self,
        action: str,
        number: int,
        *,
        author: str = DEV,
        sender: str | None = None,
        title: str = "Story 1.3: user auth",
        body: str = "",
        branch: str = "story/1.3-user-auth",
        draft: bool = False,
        merged: bool = False,
        state: str | None = None,
        head_sha: str | None = None,
        updated_at: str | None = None,
        author_id: int | None = None,
        sender_id: int | None = None,
        base: str = "main",
        fork: bool = False,
        before: str | None = None,
    ) -> dict[str, Any]:
        """A PR delivery; its head is the branch's latest pushed commit unless `head_sha` says otherwise."""
        head_sha = head_sha or self.heads.get(branch) or f"{number:04d}" + "a" * 36
        if not fork:
            self.heads[branch] = head_sha
        data = payload("pull_request", "opened.payload.json")
        pr = data["pull_request"]
        closed = action == "closed"
        pr.update(
            {
                "number": number,
                "title": title,
                "body": body,
                "draft": draft,
                "merged": merged,
                "state": state or ("closed" if closed else "open"),
                "html_url": f"https://github.com/{REPO}/pull/{number}",
                "updated_at": updated_at or self.tick(),
                "merged_at": self.tick() if merged else None,
                "user": {**pr["user"], "login": author, "type": "User", "id": author_id or account_id(author)},
            }
        )
        head_repo = f"{author}/{REPO.split('/')[1]}" if fork else REPO
        pr["head"].update({"ref": branch, "sha": head_sha, "repo": {**pr["head"]["repo"], "full_name": head_repo}})
        pr["base"].update({"ref": base, "repo": {**pr["base"]["repo"], "full_name": REPO}})
        data.update(
            {
                "action": action,
                "number": number,
                "installation": {"id": INSTALLATION_ID},
                **({"before": before} if before else {}),
                "sender": {
                    "login": sender or author,
                    "type": "Bot" if (sender or "").endswith("[bot]") else "User",
                    "id": sender_id or (author_id if sender is None else None) or account_id(sender or author),
                },
            }
        )
        data["repository"].update({"full_name": REPO, "default_branch": "main"})
        return data

    def review(
        self,
        number: int,
        *,
        reviewer: str = QA,
        state: str = "approved",
        action: str = "submitted",
        review_id: int = 1,
        commit_id: str | None = None,
        head_sha: str | None = None,
        sender: str | None = None,
        author: str = DEV,
        pr_updated_at: str | None = None,
        reviewer_id: int | None = None,
    ) -> dict[str, Any]:
        """A pull_request_review delivery: `reviewer` approved / requested changes on (by default) the
        PR's head commit; `action="dismissed"` is sent by `sender` (default the reviewer)."""
        head = head_sha or f"{number:04d}" + "a" * 36
        name = "dismissed.payload.json" if action == "dismissed" else "submitted.payload.json"
        data = payload("pull_request_review", name)
        pr_url = f"https://github.com/{REPO}/pull/{number}"
        data["review"].update(
            {
                "id": review_id,
                "user": {
                    **data["review"]["user"],
                    "login": reviewer,
                    "type": "User",
                    "id": reviewer_id or account_id(reviewer),
                },
                "state": "dismissed" if action == "dismissed" else state,
                "commit_id": commit_id or head,
                "html_url": f"{pr_url}#pullrequestreview-{review_id}",
                "submitted_at": self.tick(),
            }
        )
        pr = data["pull_request"]
        pr.update(
            {
                "number": number,
                "html_url": pr_url,
                "updated_at": pr_updated_at or self.tick(),
                "user": {**pr["user"], "login": author, "type": "User", "id": account_id(author)},
            }
        )
        pr["head"].update({"sha": head})
        data.update(
            {
                "action": action,
                "installation": {"id": INSTALLATION_ID},
                "sender": {"login": sender or reviewer, "type": "User", "id": account_id(sender or reviewer)},
            }
        )
        data["repository"].update({"full_name": REPO, "default_branch": "main"})
        self.fake.add_review(REPO, number, data["review"])
        return data


async def seed_market(runtime: Runtime, fake: FakeGitHub) -> Market:
    market = Market(runtime, fake)
    async with runtime.sessionmaker() as s, s.begin():
        for login, role in (
            (PM, Role.PM),
            (DEV, Role.DEVELOPER),
            (OTHER_DEV, Role.DEVELOPER),
            (QA, Role.QA),
            (CLIENT, Role.CLIENT),
            (STRANGER, Role.DEVELOPER),
        ):
            user = User(id=new_id(), email=f"{login}@example.com", name=login, github_username=login, role=role)
            s.add(user)
            market.users[login] = user.id
        await s.flush()
        project = Project(
            id=new_id(),
            client_id=market.users[CLIENT],
            name="Widgets",
            repo_url=f"https://github.com/{REPO}",
            repo_name=REPO.upper(),
        )  # case-insensitive match
        s.add(project)
        await s.flush()
        market.project_id = project.id
        # The PM and the QA are tied to the project by their accepted bids on its pm and qa stages.
        for login, stage in ((PM, Stage.pm), (QA, Stage.qa)):
            opp = Opportunity(
                id=new_id(),
                project_id=project.id,
                stage=stage,
                title=f"{stage} work",
                description="-",
                budget={"min": 1, "max": 2, "currency": "USDC"},
            )
            s.add(opp)
            await s.flush()
            bid = Bid(
                id=new_id(),
                opportunity_id=opp.id,
                expert_id=market.users[login],
                amount=1,
                currency="USDC",
                proposal="-",
                status=BidStatus.ACCEPTED,
            )
            s.add(bid)
            await s.flush()
            opp.accepted_bid_id = bid.id
    return market


def story_file(status: str = "Draft", title: str = "User auth", epic: int = 1, number: int = 3) -> str:
    return f"""# Story {epic}.{number}: {title}

## Status
{status}

## Story
**As a** user,
**I want** to sign in,
**so that** my widgets are mine.

## Acceptance Criteria
1. A user can sign in with GitHub
2. A signed-in user sees only their widgets

## Tasks / Subtasks
- [ ] Task 1 (AC: 1)
"""


def gate_file(gate: str = "PASS", story: str = "1.3", **extra: str) -> str:
    lines = [
        "schema: 1",
        f'story: "{story}"',
        'story_title: "User auth"',
        f"gate: {gate}",
        'status_reason: "reviewed"',
        'reviewer: "Quinn (Test Architect)"',
    ]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


STORY_PATH = "docs/stories/1.3.user-auth.md"
GATE_PATH = "docs/qa/gates/1.3-user-auth.yml"
