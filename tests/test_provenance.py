"""Who introduced a file version in a push, and which PRs are reverts: pure rules."""

from __future__ import annotations

from github_app.domain.reverts import reverted_pr
from github_app.services.provenance import UNKNOWN, push_introducer


def commit(*, modified: list[str], author: str | None = None) -> dict[str, object]:
    return {"modified": modified, "added": [], "author": {"username": author} if author else {"name": "x"}}


def test_the_sender_introduces_what_their_own_commits_bring() -> None:
    commits = [commit(modified=["g.yml"], author="quinn"), commit(modified=["src.py"], author="dana")]

    assert push_introducer("Quinn", commits, "g.yml", complete=True) == "Quinn"


def test_someone_elses_commit_touching_the_file_makes_it_nobodys() -> None:
    merge = [commit(modified=["g.yml"], author="dana"), commit(modified=["g.yml"], author="quinn")]

    assert push_introducer("quinn", merge, "g.yml", complete=True) == UNKNOWN


def test_an_author_without_a_github_account_does_not_change_the_sender() -> None:
    assert push_introducer("quinn", [commit(modified=["g.yml"])], "g.yml", complete=True) == "quinn"


def test_a_truncated_push_that_does_not_show_the_file_names_nobody() -> None:
    listed = [commit(modified=["other.py"], author="quinn")]

    assert push_introducer("quinn", listed, "g.yml", complete=False) == UNKNOWN
    assert push_introducer("quinn", listed, "g.yml", complete=True) == "quinn"


def test_reverts_are_recognized_as_github_makes_them() -> None:
    assert reverted_pr('Revert "Story 1.3"', "Reverts acme/widgets#7", "x", "Acme/Widgets") == 7
    assert reverted_pr('Revert "Story 1.3"', "", "revert-12-story/1.3", "acme/widgets") == 12
    assert reverted_pr('Revert "Story 1.3"', "Reverts other/repo#7", "x", "acme/widgets") is None
    assert reverted_pr("Story 1.3: user auth", "Reverts acme/widgets#7", "revert-7-x", "acme/widgets") is None
    assert reverted_pr("Revert", "Reverts " + "a" * 100_000, "revert-" + "9" * 100_000, "acme/widgets") is None
