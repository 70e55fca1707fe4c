"""Builders of `issue_comment` deliveries for bot commands: the comment is put on the fake GitHub first,
as GitHub has it before it sends the event, so that the app can react to it and reply."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.deliveries import payload
from tests.fake_github import FakeGitHub
from tests.github_fixtures import INSTALLATION_ID, REPO
from tests.workflow import account_id


class Comments:
    def __init__(self, fake: FakeGitHub, repo: str = REPO) -> None:
        self.fake = fake
        self.repo = repo
        self._clock = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

    def _tick(self) -> str:
        self._clock += timedelta(seconds=30)
        return self._clock.strftime("%Y-%m-%dT%H:%M:%SZ")

    def created(
        self,
        body: str,
        login: str,
        *,
        number: int = 1,
        pull_request: bool = False,
        user_type: str = "User",
        user_id: int | None = None,
        repo: str | None = None,
    ) -> dict[str, Any]:
        """`login` writes `body` on issue (or PR) `number`."""
        repo = repo or self.repo
        uid = user_id or account_id(login)
        comment = self.fake.add_comment(repo, number, body, login, user_type, uid)
        stamp = self._tick()
        comment["created_at"] = comment["updated_at"] = stamp
        return self._event("created", comment, number, pull_request, login, user_type, uid, repo)

    def edited(self, created: dict[str, Any], body: str, *, by: str | None = None) -> dict[str, Any]:
        """The author (or `by`) edits the comment of delivery `created` to `body`."""
        comment = self.fake.comments[created["comment"]["id"]]
        previous = comment["body"]
        comment["body"] = body
        comment["updated_at"] = self._tick()
        author = created["comment"]["user"]
        data = self._event(
            "edited",
            comment,
            created["issue"]["number"],
            "pull_request" in created["issue"],
            author["login"],
            author["type"],
            author["id"],
            created["repository"]["full_name"],
        )
        data["changes"] = {"body": {"from": previous}}
        if by is not None:
            data["sender"] = {"login": by, "type": "User", "id": account_id(by)}
        return data

    def _event(
        self,
        action: str,
        comment: dict[str, Any],
        number: int,
        pull_request: bool,
        login: str,
        user_type: str,
        uid: int,
        repo: str,
    ) -> dict[str, Any]:
        data = payload("issue_comment", "created.payload.json")
        user = {"login": login, "type": user_type, "id": uid}
        data["action"] = action
        data["issue"].update({"number": number, "html_url": f"https://github.com/{repo}/issues/{number}"})
        if pull_request:
            data["issue"]["pull_request"] = {"url": f"https://api.github.com/repos/{repo}/pulls/{number}"}
        data["comment"].update(
            {
                "id": comment["id"],
                "body": comment["body"],
                "user": user,
                "html_url": comment["html_url"],
                "created_at": comment["created_at"],
                "updated_at": comment["updated_at"],
            }
        )
        data["sender"] = dict(user)
        data["installation"] = {"id": INSTALLATION_ID}
        data["repository"].update({"full_name": repo, "default_branch": "main", "name": repo.split("/")[1]})
        return data
