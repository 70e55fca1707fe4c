"""Who is speaking: a GitHub login as a marketplace user, and the roles they hold on a project.

The seed has no membership table, so a user holds their role on a project when they are tied to it:
its client, the expert of an accepted bid on one of its opportunities, or assigned to one of its
stories. A PM elsewhere in the marketplace cannot approve this project's stories.

A login is only a name: GitHub lets it be renamed and then reclaimed by another account. The first time
a marketplace user acts, their GitHub username is bound to the numeric account id GitHub authenticated
(`github_account`); from then on only that account speaks for them. `User.githubUsername` is unique
only as typed, so two users whose usernames differ in letter case both match a login: such a login is
refused as ambiguous, never resolved to one of them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from github_app.db.app_tables import GitHubAccount
from github_app.db.enums import BidStatus, Role
from github_app.db.models import Bid, Opportunity, Project, Story, User
from github_app.db.types import utcnow
from github_app.db.upsert import insert_if_absent
from github_app.domain.story_machine import Actor

log = logging.getLogger(__name__)

# The audit log's userId for what the app does on its own (StoryAuditLog.userId has no foreign key).
SYSTEM_USER_ID = "system:bmad-marketplace-app"


@dataclass(frozen=True)
class Identity:
    """The marketplace user a GitHub account is, if any; `problem` says why a login that names a
    marketplace user was not taken as that user."""

    user: User | None = None
    problem: str | None = None


async def _users_named(session: AsyncSession, login: str) -> list[User]:
    stmt = select(User).where(func.lower(User.github_username) == login.lower()).order_by(User.id).limit(2)
    return list((await session.execute(stmt)).scalars().all())


async def user_by_login(session: AsyncSession, login: str | None) -> User | None:
    """The one user whose GitHub username is `login` (ignoring case); None when none, or several, are."""
    if not login:
        return None
    users = await _users_named(session, login)
    return users[0] if len(users) == 1 else None


def _account_id(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


async def identify(session: AsyncSession, login: str | None, account_id: object) -> Identity:
    """The marketplace user GitHub account `account_id`, now called `login`, speaks for; binds the
    account to the user on their first action."""
    if not login:
        return Identity()
    # A delivery names its sender and the PR's author, often the same account, to several handlers:
    # asked once per unit of work. Not a first binding: a savepoint may still roll its insert back.
    answers: dict[tuple[str, object], Identity] = session.info.setdefault("identities", {})
    key = (login, account_id)
    if key not in answers:
        identity, bound_now = await _identify(session, login, account_id)
        if bound_now:
            return identity
        answers[key] = identity
    return answers[key]


async def _identify(session: AsyncSession, login: str, account_id: object) -> tuple[Identity, bool]:
    users = await _users_named(session, login)
    if len(users) > 1:
        problem = (
            f"@{login} matches several marketplace accounts whose GitHub usernames differ only in letter "
            "case; it is refused until only one of them names this login"
        )
        log.warning("ambiguous GitHub login refused", extra={"login": login})
        return Identity(problem=problem), False
    account = _account_id(account_id)
    by_account = await session.get(GitHubAccount, account) if account is not None else None
    if not users:
        if by_account is not None:
            # The bound account was renamed; the marketplace still knows it by its old login.
            return Identity(
                problem=f"@{login} is the GitHub account bound to the marketplace user known as "
                f"@{by_account.login}; it was renamed, so that user's GitHub username must be updated first"
            ), False
        return Identity(), False
    user = users[0]
    if account is None:
        return Identity(problem=f"the event names no GitHub account id for @{login}, so it cannot be verified"), False
    if by_account is not None and by_account.user_id == user.id:
        by_user: GitHubAccount | None = by_account  # user_id is unique: the account bound to this user
    else:
        stmt = select(GitHubAccount).where(GitHubAccount.user_id == user.id)
        by_user = (await session.execute(stmt)).scalars().first()
    if by_user is not None and by_user.account_id != account:
        log.warning(
            "GitHub login now belongs to another account; refused",
            extra={"login": login, "account_id": account, "bound_account_id": by_user.account_id},
        )
        return Identity(
            problem=f"@{login} now belongs to a different GitHub account (id {account}) than the one bound "
            f"to its marketplace user (id {by_user.account_id}): the login was renamed and reclaimed"
        ), False
    if by_account is not None and by_account.user_id != user.id:
        return Identity(
            problem=f"GitHub account {account} (@{login}) is already bound to another marketplace user, "
            f"known as @{by_account.login}"
        ), False
    if by_user is not None and by_user.login != login:
        by_user.login = login  # the same account, under the login the marketplace now knows it by
    if by_user is None:
        # A concurrent first action binding the same user to another account loses on the unique user_id
        # and is retried, then refused above.
        await insert_if_absent(
            session,
            GitHubAccount.__table__,
            {"account_id": account, "user_id": user.id, "login": login, "bound_at": utcnow()},
            conflict=["account_id"],
        )
        log.info("GitHub account bound to marketplace user", extra={"login": login, "account_id": account})
        return Identity(user=user), True
    return Identity(user=user), False


async def is_tied_to_project(session: AsyncSession, user: User, project: Project) -> bool:
    if user.id == project.client_id:
        return True
    bid = (
        select(Bid.id)
        .join(Opportunity, Opportunity.accepted_bid_id == Bid.id)
        .where(Opportunity.project_id == project.id, Bid.expert_id == user.id, Bid.status == BidStatus.ACCEPTED)
        .limit(1)
    )
    if (await session.execute(bid)).first():
        return True
    story = (
        select(Story.id)
        .where(Story.project_id == project.id, or_(Story.assigned_dev_id == user.id, Story.assigned_qa_id == user.id))
        .limit(1)
    )
    return (await session.execute(story)).first() is not None


async def actor_for(
    session: AsyncSession, project: Project, login: str, sender_type: str | None, account_id: object
) -> Actor:
    """The event's sender: `login`, `sender_type` and `account_id` are the payload's sender.login,
    sender.type and sender.id."""
    is_bot = sender_type == "Bot" or login.endswith("[bot]")
    account = _account_id(account_id)
    if is_bot:  # bots are never actors: nothing to look up, nothing to bind
        return Actor(None, login, frozenset(), True, account)
    identity = await identify(session, login, account)
    user = identity.user
    if user is None:
        return Actor(None, login, frozenset(), False, account, identity.problem)
    roles: frozenset[Role] = frozenset()
    if await is_tied_to_project(session, user, project):
        roles = frozenset({Role(user.role)})
    return Actor(user.id, login, roles, False, account)


async def login_of(session: AsyncSession, user_id: str | None) -> str | None:
    if user_id is None:
        return None
    user = await session.get(User, user_id)  # often already in the session: the sender or the PR's author
    return user.github_username if user is not None else None
