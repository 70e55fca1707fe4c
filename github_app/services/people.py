"""Who is speaking: a GitHub login as a marketplace user, and the roles they hold on a project.

The seed has no membership table, so a user holds their role on a project when they are tied to it:
its client, the expert of an accepted bid on one of its opportunities, or assigned to one of its
stories. A PM elsewhere in the marketplace cannot approve this project's stories.
"""

from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from github_app.db.enums import BidStatus, Role
from github_app.db.models import Bid, Opportunity, Project, Story, User
from github_app.domain.story_machine import Actor

# The audit log's userId for what the app does on its own (StoryAuditLog.userId has no foreign key).
SYSTEM_USER_ID = "system:bmad-marketplace-app"


async def user_by_login(session: AsyncSession, login: str | None) -> User | None:
    if not login:
        return None
    stmt = select(User).where(func.lower(User.github_username) == login.lower()).limit(1)
    return (await session.execute(stmt)).scalars().first()


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


async def actor_for(session: AsyncSession, project: Project, login: str, sender_type: str | None) -> Actor:
    is_bot = sender_type == "Bot" or login.endswith("[bot]")
    user = await user_by_login(session, login)
    if user is None:
        return Actor(None, login, frozenset(), is_bot)
    roles: frozenset[Role] = frozenset()
    if await is_tied_to_project(session, user, project):
        roles = frozenset({Role(user.role)})
    return Actor(user.id, login, roles, is_bot)


async def login_of(session: AsyncSession, user_id: str | None) -> str | None:
    if user_id is None:
        return None
    return (await session.execute(select(User.github_username).where(User.id == user_id))).scalar()
