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
from tests.workflow import CLIENT, DEV, OTHER_DEV, PM, QA, STORY_PATH, STRANGER, Market, seed_market, story_file

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


# status, assign, block --------------------------------------------------------------------------------


async def approved(app: App, m: Market, comments: Comments) -> None:
    await draft_story(app, m)
    await say(app, comments.created("/bmad validate 1.3 score=9", PM))
    assert (await story(m))["status"] == "APPROVED"


async def test_status_shows_the_projects_stories_to_people_tied_to_it(
    app: App, market: Market, comments: Comments, fake_github: FakeGitHub
) -> None:
    m = market
    await approved(app, m, comments)
    whole = comments.created("/bmad status", CLIENT)
    one = comments.created("/bmad status 1.3", QA)
    stranger = comments.created("/bmad status", OTHER_DEV)
    for data in (whole, one, stranger):
        await say(app, data)
    assert "| 1.3 User auth | APPROVED |" in reply(fake_github, whole)
    assert "`story_approved`" in reply(fake_github, one) and "validated by @pat-pm" in reply(fake_github, one)
    assert "only people tied to this project may" in reply(fake_github, stranger)


async def test_assign_and_assign_qa_never_the_same_person(
    app: App, market: Market, comments: Comments, fake_github: FakeGitHub
) -> None:
    m = market
    await approved(app, m, comments)
    by_dev = comments.created(f"/bmad assign 1.3 @{DEV}", DEV)
    await say(app, by_dev)
    assert "only the project's client or PM may" in reply(fake_github, by_dev)
    assert (await story(m))["dev"] is None

    both = comments.created(f"/bmad assign 1.3 @{DEV}\n/bmad assign-qa 1.3 @{QA}", CLIENT)
    await say(app, both)
    row = await story(m)
    assert (row["dev"], row["qa"]) == (m.users[DEV], m.users[QA])
    assert reactions(fake_github, both) == ["+1"]
    [assigned] = await audit(m, "developer_assigned")
    assert assigned["comment_id"] == both["comment"]["id"]

    wrong_role = comments.created(f"/bmad assign-qa 1.3 @{OTHER_DEV}", PM)
    same = comments.created(f"/bmad assign 1.3 @{QA}", PM)
    await say(app, wrong_role)
    await say(app, same)
    assert "is a DEVELOPER in the marketplace, not a QA" in reply(fake_github, wrong_role)
    assert "is a QA in the marketplace, not a DEVELOPER" in reply(fake_github, same)
    # Even a QA-role user with the developer's seat cannot be made QA of the same story.
    async with m.runtime.engine.begin() as conn:
        from sqlalchemy import text

        await conn.execute(text("UPDATE \"User\" SET role = 'QA' WHERE id = :u"), {"u": m.users[OTHER_DEV]})
    self_review = comments.created(f"/bmad assign 1.3 @{OTHER_DEV}\n/bmad assign-qa 1.3 @{DEV}", PM)
    await say(app, self_review)
    row = await story(m)
    assert (row["dev"], row["qa"]) == (m.users[DEV], m.users[QA])


async def test_block_and_unblock_go_back_to_the_status_before(
    app: App, market: Market, comments: Comments, fake_github: FakeGitHub
) -> None:
    m = market
    await approved(app, m, comments)
    stranger = comments.created('/bmad block 1.3 "not yours"', QA)
    await say(app, stranger)
    assert (await story(m))["status"] == "APPROVED"
    assert reactions(fake_github, stranger) == ["confused"]

    blocked = comments.created('/bmad block 1.3 "waiting for the API keys"', CLIENT)
    await say(app, blocked)
    assert (await story(m))["status"] == "BLOCKED"
    [row] = await audit(m, "story_blocked")
    assert "waiting for the API keys" in row["reason"] and row["comment_url"] == blocked["comment"]["html_url"]

    unblocked = comments.created("/bmad unblock 1.3", PM)
    await say(app, unblocked)
    assert (await story(m))["status"] == "APPROVED"
    assert "back to APPROVED" in reply(fake_github, unblocked)


async def test_two_commands_racing_on_one_story_apply_once(
    app: App, market: Market, comments: Comments, fake_github: FakeGitHub
) -> None:
    m = market
    await draft_story(app, m)
    first = comments.created("/bmad validate 1.3 score=9", PM)
    second = comments.created("/bmad validate 1.3 score=8", PM)
    assert await app.deliver("issue_comment", first, process=False) == 202
    assert await app.deliver("issue_comment", second, process=False) == 202
    await app.process()
    await show(app)
    assert (await story(m))["status"] == "APPROVED"
    assert await m.scalar("SELECT count(*) FROM story_opportunity") == 1
    assert len(await audit(m, "story_approved")) == 1
    texts = reply(fake_github, first) + reply(fake_github, second)
    assert "only a DRAFT story is validated" in texts


# edits and floods -------------------------------------------------------------------------------------


async def test_an_edit_that_changes_the_command_edits_the_one_reply(
    app: App, market: Market, comments: Comments, fake_github: FakeGitHub
) -> None:
    m = market
    await draft_story(app, m)
    asked = comments.created("/bmad validate 1.3 score=4", PM)
    await say(app, asked)
    assert (await story(m))["status"] == "DRAFT"
    assert reactions(fake_github, asked) == ["+1"]
    # An edit of the prose only: nothing runs again.
    await say(app, comments.edited(asked, "Hmm.\n/bmad validate 1.3 score=4"))
    assert len(await audit(m, "story_validated")) == 1
    await say(app, comments.edited(asked, "/bmad validate 1.3 score=9"))
    assert (await story(m))["status"] == "APPROVED"
    [text] = replies(fake_github, asked)  # edited in place, never a second reply
    assert "approved" in text
    assert reactions(fake_github, asked) == ["+1"]
    # Someone else editing the author's comment does not speak for the author.
    await say(app, comments.edited(asked, '/bmad block 1.3 "by the client"', by=CLIENT))
    assert (await story(m))["status"] == "APPROVED"


async def test_a_refused_comment_fixed_by_an_edit_swaps_its_reaction(
    app: App, market: Market, comments: Comments, fake_github: FakeGitHub
) -> None:
    m = market
    await draft_story(app, m)
    asked = comments.created("/bmad validate 1.3 score=eleven", PM)
    await say(app, asked)
    assert reactions(fake_github, asked) == ["confused"]
    await say(app, comments.edited(asked, "/bmad validate 1.3 score=8"))
    assert reactions(fake_github, asked) == ["+1"]
    assert len(replies(fake_github, asked)) == 1


async def test_a_flood_of_commands_gets_one_message(
    app: App, market: Market, comments: Comments, fake_github: FakeGitHub
) -> None:
    from github_app.services.commands import FLOOD_LIMIT

    sent = [comments.created("/bmad help", STRANGER) for _ in range(FLOOD_LIMIT + 3)]
    for data in sent:
        assert await app.deliver("issue_comment", data, process=False) == 202
    await app.process()
    await show(app)
    answered = [data for data in sent if replies(fake_github, data)]
    assert len(answered) == FLOOD_LIMIT + 1
    assert "Too many commands" in reply(fake_github, sent[FLOOD_LIMIT])
    assert all(not replies(fake_github, data) for data in sent[FLOOD_LIMIT + 1 :])
    # Another person is not limited by the first one's flood.
    other = comments.created("/bmad help", DEV)
    await say(app, other)
    assert "Commands @dana-dev may run here" in reply(fake_github, other)


async def test_a_reply_whose_answer_github_lost_is_adopted_not_posted_twice(
    app: App, market: Market, comments: Comments, fake_github: FakeGitHub
) -> None:
    asked = comments.created("/bmad help", DEV)
    fake_github.lose_answer_next(1, method="POST", path="/repos/acme/widgets/issues/1/comments")
    assert await app.deliver("issue_comment", asked) == 202
    for _ in range(3):
        await show(app)
    assert len(replies(fake_github, asked)) == 1


# money ------------------------------------------------------------------------------------------------


async def test_wallet_is_validated_like_the_cli_and_shows_only_the_commenters_address(
    app: App, market: Market, comments: Comments, fake_github: FakeGitHub
) -> None:
    m = market
    bad = comments.created("/bmad wallet polygon 0x1234", DEV)
    await say(app, bad)
    assert "not valid" in reply(fake_github, bad)
    address = "0x52908400098527886E0F7030069857D2E4169EE7"  # EIP-55's own example
    good = comments.created(f"/bmad wallet polygon {address}", DEV)
    await say(app, good)
    [(stored,)] = await m.rows("SELECT address FROM wallet WHERE user_id = :u", u=m.users[DEV])
    assert stored == address and address in reply(fake_github, good)
    stranger = comments.created(f"/bmad wallet polygon {address}", "not-a-user")
    await say(app, stranger)
    assert "not a marketplace user" in reply(fake_github, stranger)


async def test_release_retries_only_a_failed_release_and_only_for_the_client(
    app: App, market: Market, comments: Comments, fake_github: FakeGitHub
) -> None:
    m = market
    await approved(app, m, comments)
    not_done = comments.created("/bmad release 1.3", CLIENT)
    await say(app, not_done)
    assert "has no release to retry" in reply(fake_github, not_done)
    story_id = (await story(m))["id"]
    async with m.runtime.engine.begin() as conn:
        from sqlalchemy import text

        await conn.execute(
            text(
                "INSERT INTO escrow_release_request (id, story_id, expert_id, state, reason, attempts, "
                "created_at, updated_at, last_error) VALUES ('r1', :s, :e, 'failed', 'done', 8, "
                "'2026-12-01 00:00:00', '2026-12-01 00:00:00', 'node down')"
            ),
            {"s": story_id, "e": m.users[DEV]},
        )
    by_dev = comments.created("/bmad release 1.3", DEV)
    await say(app, by_dev)
    assert "only the project's client may" in reply(fake_github, by_dev)
    retried = comments.created("/bmad release 1.3", CLIENT)
    await say(app, retried)
    assert await m.rows("SELECT state, attempts FROM escrow_release_request") == [("pending", 0)]
    assert reactions(fake_github, retried) == ["eyes"]
    again = comments.created("/bmad release 1.3", CLIENT)
    await say(app, again)
    assert "not failed: nothing to retry" in reply(fake_github, again)


# resync -----------------------------------------------------------------------------------------------


async def test_resync_repairs_a_deliberately_corrupted_state_and_says_what_changed(
    app: App, market: Market, comments: Comments, fake_github: FakeGitHub
) -> None:
    from sqlalchemy import text

    from tests.github_fixtures import REPO

    m = market
    await approved(app, m, comments)
    await m.accept_bid((await story(m))["id"], DEV)
    opened = m.pr("opened", 7, draft=True)
    await app.deliver("pull_request", opened)
    await show(app)
    assert (await story(m))["status"] == "IN_PROGRESS"
    [pr_comment] = [c for c in fake_github.comments.values() if c["issue_number"] == 7 and c["user"]["type"] == "Bot"]
    # The default branch as GitHub has it, and the open PR as the pulls API lists it.
    fake_github.put_file(REPO, "main", STORY_PATH, story_file("Approved").encode())
    fake_github.set_pull(REPO, opened["pull_request"])

    # Corruption: the story's texts overwritten, the PR's link lost, the app's PR comment deleted.
    async with m.runtime.engine.begin() as conn:
        await conn.execute(text("""UPDATE "Story" SET title = 'garbage', "acceptanceCriteria" = 'none'"""))
        await conn.execute(text("DELETE FROM pull_request_link"))
    fake_github.delete_comment(pr_comment["id"])

    by_dev = comments.created("/bmad resync", DEV)
    await say(app, by_dev)
    assert "only the project's client or PM may" in reply(fake_github, by_dev)
    assert await m.scalar('SELECT title FROM "Story"') == "garbage"

    asked = comments.created("/bmad resync", CLIENT)
    await say(app, asked)
    [(title, criteria, status)] = await m.rows('SELECT title, "acceptanceCriteria", status FROM "Story"')
    assert title == "User auth" and "sign in with GitHub" in criteria and status == "IN_PROGRESS"
    assert await m.rows("SELECT pr_number FROM pull_request_link WHERE story_id IS NOT NULL") == [(7,)]
    assert [c for c in fake_github.comments.values() if c["issue_number"] == 7 and c["user"]["type"] == "Bot"]
    text_ = reply(fake_github, asked)
    assert "story 1.3: title, acceptance criteria brought back in line" in text_
    assert "PR #7 linked to its story again" in text_
    [updated] = await audit(m, "story_updated")
    assert updated["comment_url"] == asked["comment"]["html_url"]
    # Resync again: nothing has drifted, and nothing is credited to the caller.
    again = comments.created("/bmad resync", PM)
    await say(app, again)
    assert "Nothing had drifted." in reply(fake_github, again)
