"""Pytest fixtures for tests that talk to GitHub: the app's key pair, a running fake GitHub, and the
app's client factory pointed at it. The root conftest loads them as a plugin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from github_app.demo.fake_github import FakeGitHub
from github_app.github.client import GitHubApp, RetryPolicy

GITHUB_APP_ID = 424242
INSTALLATION_ID = 77
REPO = "acme/widgets"

# The production policy with its waits scaled down: every retry path still sleeps for real, briefly.
FAST_RETRY = RetryPolicy(max_attempts=4, max_total_wait=10.0, min_backoff=0.05, error_backoff=0.01, reset_margin=0.0)


@dataclass(frozen=True)
class KeyPair:
    private_pem: str
    public_pem: str


def generate_key_pair() -> KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return KeyPair(private_pem, public_pem)


@pytest.fixture(scope="session")
def github_app_keys() -> KeyPair:
    """The app's RSA key pair, generated once per test session (key generation is slow)."""
    return generate_key_pair()


@pytest_asyncio.fixture
async def fake_github(github_app_keys: KeyPair) -> AsyncIterator[FakeGitHub]:
    """A fake GitHub on 127.0.0.1 that knows the app, with installation INSTALLATION_ID seeing REPO."""
    fake = FakeGitHub(GITHUB_APP_ID, github_app_keys.public_pem)
    fake.add_repo(REPO)
    fake.add_installation(INSTALLATION_ID)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


@pytest_asyncio.fixture
async def github_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def fake_app_client(
    fake_github: FakeGitHub, keys: KeyPair, session: aiohttp.ClientSession, **options: Any
) -> GitHubApp:
    """The app's GitHub client factory, pointed at the fake, with short retry waits (and `options`)."""
    return GitHubApp(GITHUB_APP_ID, keys.private_pem, fake_github.url, session, retry_policy=FAST_RETRY, **options)


@pytest.fixture
def github_app_client(
    fake_github: FakeGitHub, github_app_keys: KeyPair, github_session: aiohttp.ClientSession
) -> GitHubApp:
    return fake_app_client(fake_github, github_app_keys, github_session)
