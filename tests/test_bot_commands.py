"""Bot commands end to end: signed issue_comment deliveries in, the story machine, the audit trail, and
one reply and one reaction per command comment on the fake GitHub."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from github_app.outbox.sender import OutboxSender
from tests.comments import Comments
from tests.fake_github import FakeGitHub
from tests.harness import App
from tests.workflow import CLIENT, DEV, PM, QA, STORY_PATH, STRANGER, Market, seed_market, story_file

MARKER = "bmad-marketplace-app:command-reply"


@pytest.fixture
async def market(app: App, fake_github: FakeGitHub) -> AsyncIterator[Market]:
    yield await seed_market(app.runtime, fake_github)


@pytest.fixture
def comments(fake_github: FakeGitHub) -> Comments:
    return Comments(fake_github)


async def show(app: App) -> None:
    await OutboxSender(app.runtime, writes_per_second=1000).run_until_idle()


def replies(fake: FakeGitHub, comment: dict[str, Any]) -> list[str]:
    """The app's replies to the command comment of delivery `comment`."""
    cid = comment["comment"]["id"]
    return [
        c["body"] for c in fake.comments.values() if c["user"]["type"] == "Bot" and f"{MARKER} {cid} -->" in c["body"]
    ]


def reply(fake: FakeGitHub, comment: dict[str, Any]) -> str:
    [text] = replies(fake, comment)
    return text


def reactions(fake: FakeGitHub, comment: dict[str, Any]) -> list[str]:
    return fake.reactions_on(comment["comment"]["id"])


async def say(app: App, data: dict[str, Any]) -> None:
    assert await app.deliver("issue_comment", data) == 202
    await show(app)


async def draft_story(app: App, m: Market) -> None:
    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Draft")}, PM))


async def story(m: Market) -> dict[str, Any]:
    [row] = await m.rows(
        'SELECT id, status, "validatedBy", "validationScore", "assignedDevId", "assignedQAId" FROM "Story"'
    )
    return dict(zip(("id", "status", "validated_by", "score", "dev", "qa"), row, strict=True))


async def audit(m: Market, action: str) -> list[dict[str, Any]]:
    rows = await m.rows('SELECT metadata FROM "StoryAuditLog" WHERE action = :a ORDER BY "createdAt", id', a=action)
    return [r[0] if isinstance(r[0], dict) else json.loads(r[0]) for r in rows]


# help ---------------------------------------------------------------------------------------------------


async def test_help_lists_the_commands_this_person_may_run(
    app: App, market: Market, comments: Comments, fake_github: FakeGitHub
) -> None:
    pm = comments.created("/bmad help", PM)
    await say(app, pm)
    text = reply(fake_github, pm)
    assert "/bmad validate 1.3 score=8" in text and f"@{PM}" in text
    assert reactions(fake_github, pm) == ["+1"]

    stranger = comments.created("/bmad help", "someone-else")
    await say(app, stranger)
    text = reply(fake_github, stranger)
    assert "/bmad validate 1.3 score=8" not in text and "`validate`" in text  # named as not open to them
    assert "not a marketplace user" in text


async def test_a_bare_prefix_and_the_app_mention_are_help_too(
    app: App, market: Market, comments: Comments, fake_github: FakeGitHub
) -> None:
    bare = comments.created("/bmad", DEV)
    mention = comments.created("@bmad-marketplace-app help", DEV)
    await say(app, bare)
    await say(app, mention)
    assert "Commands @dana-dev may run here" in reply(fake_github, bare)
    assert "Commands @dana-dev may run here" in reply(fake_github, mention)


# validate -----------------------------------------------------------------------------------------------


async def test_validate_approves_a_draft_story_through_the_state_machine(
    app: App, market: Market, comments: Comments, fake_github: FakeGitHub
) -> None:
    m = market
    await draft_story(app, m)
    asked = comments.created("Looks good.\n/bmad validate 1.3 score=8", PM, number=4)
    await say(app, asked)
    row = await story(m)
    assert (row["status"], row["validated_by"], row["score"]) == ("APPROVED", m.users[PM], 8)
    # Published as any approval is: the domain event's subscriber ran.
    assert await m.scalar("SELECT count(*) FROM story_opportunity") == 1
    [approved] = await audit(m, "story_approved")
    assert approved["comment_url"] == asked["comment"]["html_url"]
    assert approved["command"] == "/bmad validate 1.3 score=8"
    assert "StoryApproved" in approved["events"]
    text = reply(fake_github, asked)
    assert "approved" in text and "8/10" in text
    assert reactions(fake_github, asked) == ["+1"]

    # A story file that still says Draft does not undo it.
    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Draft", title="User auth v2")}, PM))
    assert (await story(m))["status"] == "APPROVED"


async def test_validate_below_the_threshold_keeps_the_story_draft_with_the_reason(
    app: App, market: Market, comments: Comments, fake_github: FakeGitHub
) -> None:
    m = market
    await draft_story(app, m)
    asked = comments.created("/bmad validate 1.3 score=5", PM)
    await say(app, asked)
    row = await story(m)
    assert (row["status"], row["score"]) == ("DRAFT", 5)
    assert "below this repository's threshold of 7" in reply(fake_github, asked)
    assert await m.scalar("SELECT count(*) FROM story_opportunity") == 0
    [validated] = await audit(m, "story_validated")
    assert validated["comment_id"] == asked["comment"]["id"]


async def test_validate_is_refused_to_anyone_but_the_pm_or_architect(
    app: App, market: Market, comments: Comments, fake_github: FakeGitHub
) -> None:
    m = market
    await draft_story(app, m)
    for login in (DEV, QA, CLIENT, STRANGER, "not-a-user"):
        asked = comments.created("/bmad validate 1.3 score=10", login)
        await say(app, asked)
        text = reply(fake_github, asked)
        assert "cannot validate stories" in text or "not a marketplace user" in text, text
        assert reactions(fake_github, asked) == ["confused"]
    assert (await story(m))["status"] == "DRAFT"
    assert await m.scalar("SELECT count(*) FROM story_opportunity") == 0


@pytest.mark.parametrize(
    ("command", "says"),
    [
        ("/bmad validate 1.3", "validate takes a story and score=N"),
        ("/bmad validate 1.3 score=11", "the score must be from 0 to 10"),
        ("/bmad validate 1.3 8", "score=N"),
        ("/bmad validate one.three score=8", "is not a story id"),
        ("/bmad validate 99999999999.1 score=8", "not a story id the marketplace can hold"),
        ("/bmad validate 7.7 score=8", "this project has no story 7.7"),
        ('/bmad validate "1.3 score=8', "quote is not closed"),
        ("/bmad frobnicate 1.3", "`frobnicate` is not a command"),
    ],
)
async def test_a_bad_command_gets_its_usage_and_changes_nothing(
    app: App, market: Market, comments: Comments, fake_github: FakeGitHub, command: str, says: str
) -> None:
    m = market
    await draft_story(app, m)
    asked = comments.created(command, PM)
    await say(app, asked)
    text = reply(fake_github, asked)
    assert says in text, text
    if "frobnicate" not in command and "7.7" not in command:
        assert "Usage: `/bmad validate <story> score=<0-10>`" in text
    assert reactions(fake_github, asked) == ["confused"]
    assert (await story(m))["status"] == "DRAFT"


# what is not a command ----------------------------------------------------------------------------------


async def test_code_quotes_and_mid_line_mentions_are_never_commands(
    app: App, market: Market, comments: Comments, fake_github: FakeGitHub
) -> None:
    m = market
    await draft_story(app, m)
    body = "\n".join(
        [
            "To approve, the PM writes:",
            "```",
            "/bmad validate 1.3 score=9",
            "```",
            "~~~markdown",
            "/bmad validate 1.3 score=9",
            "~~~",
            "    /bmad validate 1.3 score=9",
            "> /bmad validate 1.3 score=9",
            "`/bmad validate 1.3 score=9`",
            "please run /bmad validate 1.3 score=9",
            "<!--",
            "/bmad validate 1.3 score=9",
            "-->",
            "/bmadvalidate 1.3 score=9",
        ]
    )
    asked = comments.created(body, PM)
    await say(app, asked)
    assert replies(fake_github, asked) == [] and reactions(fake_github, asked) == []
    assert (await story(m))["status"] == "DRAFT"
    assert await m.scalar("SELECT count(*) FROM command_comment") == 0


async def test_bots_are_ignored_without_a_reply(
    app: App, market: Market, comments: Comments, fake_github: FakeGitHub
) -> None:
    m = market
    await draft_story(app, m)
    for login, kind in (("bmad-marketplace-app[bot]", "Bot"), ("renovate[bot]", "Bot"), ("pat-pm[bot]", "User")):
        asked = comments.created("/bmad validate 1.3 score=9", login, user_type=kind)
        await say(app, asked)
        assert replies(fake_github, asked) == [] and reactions(fake_github, asked) == []
    assert (await story(m))["status"] == "DRAFT"
    assert await m.scalar("SELECT count(*) FROM command_comment") == 0


async def test_a_repository_linked_to_no_project_is_answered_once(
    app: App, market: Market, comments: Comments, fake_github: FakeGitHub
) -> None:
    first = comments.created("/bmad help", PM, repo="acme/elsewhere")
    second = comments.created("/bmad status", CLIENT, repo="acme/elsewhere")
    await say(app, first)
    await say(app, second)
    assert "not linked to a BMAD marketplace project" in reply(fake_github, first)
    assert "acme/elsewhere" in reply(fake_github, first)
    assert replies(fake_github, second) == []
