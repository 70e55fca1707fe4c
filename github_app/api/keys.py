"""API keys against the seed's `ApiKey` model.

A key is 256 random bits, shown once. Only its SHA-256 is stored (`keyHash`): a key that random cannot
be guessed back from its hash, so no slow hash is needed, and a lookup by hash reveals nothing an
attacker can steer. The stored hash is still compared in constant time before the key is accepted.
`lastUsed` is written at most once a minute per key (the condition is in the UPDATE itself, so several
processes agree), never on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from github_app.db.app_tables import ApiKeyAdmin
from github_app.db.models import ApiKey, User
from github_app.db.types import new_id, utcnow

PREFIX = "bmad_"
LAST_USED_EVERY = timedelta(minutes=1)


class ApiKeyError(Exception):
    """A key command refused: unknown user or key."""


@dataclass(frozen=True)
class Principal:
    key_id: str
    user_id: str
    admin: bool


@dataclass(frozen=True)
class KeyInfo:
    id: str
    name: str
    admin: bool
    created_at: datetime
    last_used: datetime | None


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


async def user_by_email(session: AsyncSession, email: str) -> User:
    user = (await session.execute(select(User).where(User.email == email))).scalar_one_or_none()
    if user is None:
        raise ApiKeyError(f"no marketplace user with the email {email!r}")
    return user


async def create(session: AsyncSession, email: str, name: str, *, admin: bool) -> tuple[str, str]:
    """(key id, the key itself): the caller shows the key once; it is not stored anywhere."""
    if not name.strip():
        raise ApiKeyError("a key needs a name (what uses it)")
    user = await user_by_email(session, email)
    key = new_key()
    row = ApiKey(id=new_id(), user_id=user.id, name=name.strip(), key_hash=hash_key(key), created_at=utcnow())
    session.add(row)
    if admin:
        session.add(ApiKeyAdmin(api_key_id=row.id, granted_at=utcnow()))
    await session.flush()
    return row.id, key


async def listing(session: AsyncSession, email: str) -> list[KeyInfo]:
    user = await user_by_email(session, email)
    rows = (
        await session.execute(
            select(ApiKey, ApiKeyAdmin.api_key_id)
            .outerjoin(ApiKeyAdmin, ApiKeyAdmin.api_key_id == ApiKey.id)
            .where(ApiKey.user_id == user.id)
            .order_by(ApiKey.created_at, ApiKey.id)
        )
    ).all()
    return [KeyInfo(k.id, k.name, admin is not None, k.created_at, k.last_used) for k, admin in rows]


async def revoke(session: AsyncSession, key_id: str) -> None:
    deleted: Any = await session.execute(delete(ApiKey).where(ApiKey.id == key_id))
    await session.execute(delete(ApiKeyAdmin).where(ApiKeyAdmin.api_key_id == key_id))
    if not deleted.rowcount:
        raise ApiKeyError(f"no API key with the id {key_id!r}")


async def authenticate(session: AsyncSession, presented: str) -> Principal | None:
    """The key's holder, or None for a wrong, malformed or revoked key."""
    if not presented.startswith(PREFIX) or len(presented) > 200:
        return None
    digest = hash_key(presented)
    row = (
        await session.execute(
            select(ApiKey.id, ApiKey.user_id, ApiKey.key_hash, ApiKey.last_used, ApiKeyAdmin.api_key_id)
            .outerjoin(ApiKeyAdmin, ApiKeyAdmin.api_key_id == ApiKey.id)
            .where(ApiKey.key_hash == digest)
        )
    ).first()
    if row is None or not hmac.compare_digest(row.key_hash.encode(), digest.encode()):
        return None
    now = utcnow()
    if row.last_used is None or row.last_used < now - LAST_USED_EVERY:
        await session.execute(
            update(ApiKey)
            .where(
                ApiKey.id == row.id,
                or_(ApiKey.last_used.is_(None), ApiKey.last_used < now - LAST_USED_EVERY),
            )
            .values(last_used=now)
        )
    return Principal(key_id=row.id, user_id=row.user_id, admin=row.api_key_id is not None)
