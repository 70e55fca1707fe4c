"""Webhook payloads shaped like GitHub's, for the demo's repository: pushes that add files, pull request
events and issue comments. Every file a push adds is put on the fake GitHub first, as GitHub has the
commit before it sends the event, so the app reads it through the contents API like any other."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from github_app.demo.fake_github import FakeGitHub


def account_id(login: str) -> int:
    return int(hashlib.sha1(login.lower().encode()).hexdigest()[:8], 16)


def user(login: str) -> dict[str, Any]:
    return {"login": login, "id": account_id(login), "type": "Bot" if login.endswith("[bot]") else "User"}


@dataclass
class Payloads:
    fake: FakeGitHub
    repo: str
    installation_id: int
    heads: dict[str, str] = field(default_factory=dict)  # branch -> its latest commit
    pr_heads: dict[int, str] = field(default_factory=dict)  # PR -> its head in the latest PR event
    _shas: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _clock: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    def sha(self) -> str:
        return hashlib.sha1(f"{self.repo} commit {next(self._shas)}".encode()).hexdigest()

    def tick(self) -> str:
        self._clock += timedelta(seconds=5)
        return self._clock.strftime("%Y-%m-%dT%H:%M:%SZ")

    def repository(self) -> dict[str, Any]:
        owner, name = self.repo.split("/")
        return {
            "id": 100_001,
            "node_id": "R_demo",
            "name": name,
            "full_name": self.repo,
            "private": True,
            "owner": {"login": owner, "id": account_id(owner), "type": "Organization"},
            "html_url": f"https://github.com/{self.repo}",
            "default_branch": "main",
        }

    def _envelope(self, sender: str) -> dict[str, Any]:
        return {
            "repository": self.repository(),
            "sender": user(sender),
            "installation": {"id": self.installation_id, "node_id": "I_demo"},
        }

    def installation_created(self, sender: str) -> dict[str, Any]:
        owner = self.repo.split("/")[0]
        return {
            "action": "created",
            "installation": {
                "id": self.installation_id,
                "account": {"login": owner, "id": account_id(owner), "type": "Organization"},
                "repository_selection": "selected",
                "app_id": self.fake.app_id,
                "target_type": "Organization",
                "permissions": {"contents": "read", "checks": "write", "pull_requests": "write", "issues": "write"},
                "events": ["push", "pull_request", "pull_request_review", "issue_comment"],
                "created_at": self.tick(),
                "updated_at": self.tick(),
            },
            "repositories": [{"id": 100_001, "name": self.repo.split("/")[1], "full_name": self.repo, "private": True}],
            "sender": user(sender),
        }

    def push(self, branch: str, files: dict[str, str], sender: str, message: str) -> dict[str, Any]:
        """`sender` pushes one commit, which they wrote, adding or changing `files` on `branch`."""
        after = self.sha()
        before = self.heads.get(branch) or self.sha()
        self.heads[branch] = after
        for path, content in files.items():
            self.fake.put_file(self.repo, after, path, content.encode())
        commit = {
            "id": after,
            "tree_id": self.sha(),
            "distinct": True,
            "message": message,
            "timestamp": self.tick(),
            "url": f"https://github.com/{self.repo}/commit/{after}",
            "author": {"name": sender, "email": f"{sender}@users.noreply.github.com", "username": sender},
            "committer": {"name": sender, "email": f"{sender}@users.noreply.github.com", "username": sender},
            "added": [],
            "removed": [],
            "modified": sorted(files),
        }
        return {
            "ref": f"refs/heads/{branch}",
            "before": before,
            "after": after,
            "created": False,
            "deleted": False,
            "forced": False,
            "base_ref": None,
            "compare": f"https://github.com/{self.repo}/compare/{before[:12]}...{after[:12]}",
            "commits": [commit],
            "head_commit": commit,
            "pusher": {"name": sender, "email": f"{sender}@users.noreply.github.com"},
            **self._envelope(sender),
        }

    def pull_request(
        self,
        action: str,
        number: int,
        *,
        author: str,
        title: str,
        branch: str,
        sender: str | None = None,
        merged: bool = False,
    ) -> dict[str, Any]:
        """A PR event; its head is the branch's latest pushed commit."""
        head = self.heads.setdefault(branch, self.sha())
        self.pr_heads[number] = head
        base = self.heads.setdefault("main", self.sha())
        closed = action == "closed"
        repo = self.repository()
        stamp = self.tick()
        pr = {
            "id": 500_000 + number,
            "number": number,
            "state": "closed" if closed else "open",
            "locked": False,
            "title": title,
            "body": "",
            "user": user(author),
            "draft": False,
            "merged": merged,
            "merged_at": stamp if merged else None,
            "merged_by": user(sender or author) if merged else None,
            "closed_at": stamp if closed else None,
            "created_at": stamp,
            "updated_at": stamp,
            "html_url": f"https://github.com/{self.repo}/pull/{number}",
            "head": {"label": f"{self.repo.split('/')[0]}:{branch}", "ref": branch, "sha": head, "repo": repo},
            "base": {"label": f"{self.repo.split('/')[0]}:main", "ref": "main", "sha": base, "repo": repo},
            "author_association": "MEMBER",
        }
        return {"action": action, "number": number, "pull_request": pr, **self._envelope(sender or author)}

    def comment(self, number: int, body: str, login: str) -> dict[str, Any]:
        """`login` writes `body` on issue `number`: the comment exists on GitHub before the event."""
        author = user(login)
        comment = self.fake.add_comment(self.repo, number, body, login, author["type"], author["id"])
        stamp = self.tick()
        comment["created_at"] = comment["updated_at"] = stamp
        return {
            "action": "created",
            "issue": {
                "id": 600_000 + number,
                "number": number,
                "title": "Sprint planning",
                "state": "open",
                "user": author,
                "html_url": f"https://github.com/{self.repo}/issues/{number}",
            },
            "comment": {
                "id": comment["id"],
                "body": body,
                "user": author,
                "html_url": comment["html_url"],
                "created_at": stamp,
                "updated_at": stamp,
                "author_association": "MEMBER",
            },
            **self._envelope(login),
        }
