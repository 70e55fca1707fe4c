"""Bot commands in issue and pull request comments: who is speaking, whether they may, and one reply.

Each comment holding commands gets one reply comment (edited in place when the comment is edited so
that its commands change) and one reaction from the app, both through the outbox under the app's
shared pace. Bots are never answered, so that two bots cannot talk in a loop. A person sending more
than `FLOOD_LIMIT` command comments within `FLOOD_WINDOW` is told once, and then ignored until the
window has room again. Everything a command changes is written in the delivery's transaction, with
the comment's reply: both commit, or neither does and the delivery is retried.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta
from typing import Any

from gidgethub import sansio
from sqlalchemy import func, select
from sqlalchemy import text as sql

from github_app import commands as command_families
from github_app.commands.registry import COMMANDS, Call, CommentRef, Outcome, Reply, quiet
from github_app.db.app_tables import CommandComment, CommandUse
from github_app.db.queries import installation_suspended, project_for_repository
from github_app.db.types import from_github_time, utcnow
from github_app.db.upsert import insert_if_absent
from github_app.domain.command_grammar import CommandLine, ParsedComment, UsageError, parse_comment
from github_app.domain.command_rights import Speaker
from github_app.domain.vocabulary import Role
from github_app.handling import HandlerContext
from github_app.outbox.enqueue import KIND_COMMAND_REPLY, KIND_REACTION, set_all_desired
from github_app.services.people import actor_for
from github_app.services.repo import load_repo_context

log = logging.getLogger(__name__)

FLOOD_LIMIT = 10
FLOOD_WINDOW = timedelta(minutes=10)
FLOOD_LOCK_SPACE = 0x626D6164  # the advisory lock namespace of the flood count ("bmad")
assert command_families.COMMANDS is COMMANDS  # the families are registered

# command_comment.outcome
UNLINKED = "unlinked"
FLOODED = "flooded"


def is_bot(user: dict[str, Any]) -> bool:
    login = str(user.get("login") or "")
    return user.get("type") == "Bot" or login.endswith("[bot]")


def reply_marker_target(issue_number: int, comment_id: int) -> str:
    return f"{issue_number}/{comment_id}"


async def handle_issue_comment(ctx: HandlerContext, event: sansio.Event) -> None:
    data = event.data
    action = data.get("action")
    if action not in ("created", "edited"):
        return
    comment = data.get("comment") or {}
    sender = data.get("sender") or {}
    author = comment.get("user") or {}
    # Bots, this app included, are never answered: two bots must not talk in a loop.
    if is_bot(sender) or is_bot(author):
        return
    issue = data.get("issue") or {}
    repository = (data.get("repository") or {}).get("full_name")
    installation_id = (data.get("installation") or {}).get("id")
    comment_id, number = comment.get("id"), issue.get("number")
    if not (isinstance(repository, str) and isinstance(installation_id, int)):
        return
    if not (isinstance(comment_id, int) and isinstance(number, int)):
        return
    # An edit by someone else (a maintainer fixing a typo) does not speak for the author: the author,
    # the comment's owner, is who the commands are from; only the author's own edits are acted on.
    if author.get("id") != sender.get("id"):
        return
    slug = ctx.runtime.settings.github_app_slug
    parsed = parse_comment(str(comment.get("body") or ""), slug)
    session = ctx.session
    key = repository.lower()
    stmt = select(CommandComment).where(CommandComment.repository_key == key, CommandComment.comment_id == comment_id)
    known = (await session.execute(stmt.with_for_update())).scalars().first()
    if not parsed.commands and known is None:
        return
    updated_at = from_github_time(comment.get("updated_at")) or from_github_time(comment.get("created_at"))
    if known is not None:
        if known.comment_updated_at and updated_at and updated_at <= known.comment_updated_at:
            return  # a duplicate, or an older version of the comment delivered late
        if known.commands == "\n".join(parsed.keys):
            known.comment_updated_at = updated_at
            return  # an edit that leaves its commands as they were
    ref = CommentRef(comment_id, str(comment.get("html_url") or ""), number, "pull_request" in issue)
    login = str(sender.get("login") or "")
    account_id = sender.get("id") if isinstance(sender.get("id"), int) else None
    if account_id is None:
        return  # GitHub names every sender's account; a comment that does not cannot be authenticated
    target = reply_marker_target(number, comment_id)

    async def answer(text: str, outcome: Outcome, status: str, user_id: str | None = None) -> None:
        await _desire_reply(session, installation_id, repository, target, comment_id, text, outcome)
        await _remember(session, key, ref, account_id, login, user_id, parsed, updated_at, status, known, text)

    if not parsed.commands:
        assert known is not None
        gone = Reply.applied("The comment no longer holds commands; what they did stays.")
        text = _reply_text(login, [("(commands removed)", gone)])
        await answer(text, Outcome.APPLIED, "removed")
        return

    flood = await _flood(session, account_id)
    if flood is not None:
        if flood:
            await answer(flood, Outcome.REFUSED, FLOODED)
        else:
            await _remember(session, key, ref, account_id, login, None, parsed, updated_at, FLOODED, known)
        return

    project = await project_for_repository(session, repository, installation_id)
    if project is None:
        if await _answered_unlinked(session, key):
            return
        await answer(_unlinked_text(login, repository), Outcome.REFUSED, UNLINKED)
        return
    if await installation_suspended(session, installation_id):
        return
    rc = await load_repo_context(ctx, data)
    if rc is None:
        return
    actor = await actor_for(session, project, login, sender.get("type"), account_id)
    speaker = Speaker(
        login=login,
        account_id=account_id,
        user_id=actor.user_id,
        roles=frozenset(Role(r) for r in actor.roles),
        is_client=actor.user_id is not None and actor.user_id == project.client_id,
        problem=actor.identity_problem,
    )
    # The client holds the CLIENT role on their own project whatever their marketplace role says.
    if speaker.is_client:
        actor = replace(actor, roles=actor.roles | {Role.CLIENT})
    results: list[tuple[str, Reply]] = []
    for line in parsed.commands:
        results.append((line.text, await _run(ctx, rc, speaker, actor, ref, line)))
    if parsed.dropped:
        results.append(
            (f"{parsed.dropped} more", Reply.refused(f"at most {len(parsed.commands)} commands are run per comment"))
        )
    outcome = _overall([reply.outcome for _, reply in results])
    status = outcome.value
    await answer(_reply_text(login, results), outcome, status, actor.user_id)


async def _run(ctx: HandlerContext, rc: Any, speaker: Speaker, actor: Any, ref: CommentRef, line: CommandLine) -> Reply:
    name = line.name or "help"
    command = COMMANDS.get(name)
    if command is None:
        known = ", ".join(sorted(COMMANDS))
        return Reply.refused(f"`{name[:40]}` is not a command. Commands: {known}; `/bmad help` explains them.")
    if line.error is not None:
        return Reply.refused(f"{quiet(line.error)}. Usage: `{command.usage}`")
    refusal = command.rule.refusal(speaker, None, command.doing)
    if refusal is not None and command.name != "help":
        return Reply.refused(refusal)
    call = Call(ctx.session, ctx.runtime, rc, speaker, actor, ref, ctx.delivery_id, command, line.args, line.text)
    # Each command in a savepoint: one that is refused half-way leaves nothing behind for the next.
    savepoint = await ctx.session.begin_nested()
    try:
        reply = await command.run(call)
    except UsageError as exc:
        await savepoint.rollback()
        return Reply.refused(f"{quiet(str(exc))}. Usage: `{command.usage}`")
    except BaseException:
        await savepoint.rollback()
        raise
    await savepoint.commit()
    return reply


def _overall(outcomes: list[Outcome]) -> Outcome:
    if Outcome.REFUSED in outcomes:
        return Outcome.REFUSED
    if Outcome.PENDING in outcomes:
        return Outcome.PENDING
    return Outcome.APPLIED


_MARK = {Outcome.APPLIED: "✅", Outcome.PENDING: "⏳", Outcome.REFUSED: "⚠️"}


def _reply_text(login: str, results: list[tuple[str, Reply]]) -> str:
    parts = [f"@{login}"]
    for text, reply in results:
        parts.append(f"> {quiet(text).replace(chr(96), chr(39))}\n\n{_MARK[reply.outcome]} {reply.text}")
    return "\n\n".join(parts)


def _unlinked_text(login: str, repository: str) -> str:
    return (
        f"@{login} this repository is not linked to a BMAD marketplace project, so its commands do nothing. "
        f"The project's client links it by setting the project's repository to `{repository}` in the "
        "marketplace; commands work from then on. (This is said once per repository.)"
    )


async def _answered_unlinked(session: Any, key: str) -> bool:
    stmt = select(CommandComment.comment_id).where(
        CommandComment.repository_key == key, CommandComment.outcome == UNLINKED
    )
    return (await session.execute(stmt.limit(1))).first() is not None


async def _flood(session: Any, account_id: int) -> str | None:
    """None when the account may run commands now (the run is counted); else the one message to give
    ("" when it was given already in this window)."""
    if session.get_bind().dialect.name == "postgresql":
        # One count at a time per person: concurrent workers must not each see room for one more.
        await session.execute(
            sql("SELECT pg_advisory_xact_lock(:space, :key)"), {"space": FLOOD_LOCK_SPACE, "key": account_id % 2**31}
        )
    now = utcnow()
    since = now - FLOOD_WINDOW
    recent = (CommandUse.account_id == account_id, CommandUse.at > since)
    count = (await session.execute(select(func.count()).where(*recent))).scalar() or 0
    if count < FLOOD_LIMIT:
        session.add(CommandUse(account_id=account_id, at=now, flooded=False))
        return None
    told = await session.execute(select(CommandUse.id).where(*recent, CommandUse.flooded.is_(True)).limit(1))
    if told.first() is not None:
        return ""
    session.add(CommandUse(account_id=account_id, at=now, flooded=True))
    oldest = (
        await session.execute(
            select(func.min(CommandUse.at)).where(CommandUse.account_id == account_id, CommandUse.at > since)
        )
    ).scalar()
    until = (oldest or now) + FLOOD_WINDOW
    minutes = int(FLOOD_WINDOW.total_seconds() // 60)
    return (
        f"Too many commands: at most {FLOOD_LIMIT} comments with commands every {minutes} minutes per person. "
        f"Your commands are ignored, without a reply, until {until:%H:%M} UTC; send them again after that."
    )


async def _remember(
    session: Any,
    key: str,
    ref: CommentRef,
    account_id: int | None,
    login: str,
    user_id: str | None,
    parsed: ParsedComment,
    updated_at: Any,
    outcome: str,
    known: CommandComment | None,
    result: str | None = None,
) -> None:
    now = utcnow()
    commands = "\n".join(parsed.keys)
    if known is None:
        created = await insert_if_absent(
            session,
            CommandComment.__table__,  # type: ignore[arg-type]
            {
                "repository_key": key,
                "comment_id": ref.id,
                "issue_number": ref.issue_number,
                "account_id": account_id,
                "login": login,
                "user_id": user_id,
                "commands": commands,
                "comment_url": ref.url[:1000],
                "comment_updated_at": updated_at,
                "outcome": outcome,
                "result": result,
                "created_at": now,
                "updated_at": now,
            },
            conflict=["repository_key", "comment_id"],
        )
        if created:
            return
        known = await session.get(CommandComment, (key, ref.id))
        assert known is not None
    known.commands, known.outcome, known.user_id = commands, outcome, user_id or known.user_id
    known.comment_updated_at, known.updated_at = updated_at, now
    if result is not None:
        known.result = result


async def _desire_reply(
    session: Any,
    installation_id: int,
    repository: str,
    target: str,
    comment_id: int,
    body: str,
    outcome: Outcome,
) -> None:
    """The comment's one reply says `body` and its reaction shows `outcome`, through the outbox."""
    wishes: list[tuple[str, str, dict[str, Any]]] = [
        (KIND_COMMAND_REPLY, target, {"body": body}),
        (KIND_REACTION, str(comment_id), {"content": outcome.reaction}),
    ]
    await set_all_desired(session, installation_id=installation_id, repository=repository, wishes=wishes)


async def follow_up(
    session: Any,
    *,
    installation_id: int,
    repository: str,
    issue_number: int,
    comment_id: int,
    text: str,
    outcome: Outcome,
) -> None:
    """What became of a command whose effect came later (a refund): added to the comment's one reply,
    and its reaction updated, in the caller's transaction."""
    known = await session.get(CommandComment, (repository.lower(), comment_id))
    earlier = known.result if known is not None and known.result else ""
    body = f"{earlier}\n\n{_MARK[outcome]} {text}".strip()
    target = reply_marker_target(issue_number, comment_id)
    await _desire_reply(session, installation_id, repository, target, comment_id, body, outcome)
    if known is not None:
        known.result, known.outcome, known.updated_at = body, outcome.value, utcnow()
