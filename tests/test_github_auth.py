"""App JWTs and installation tokens, checked against the fake GitHub the way GitHub checks them."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import aiohttp
import jwt
import pytest
from gidgethub import BadRequest

from github_app.demo.fake_github import FakeGitHub
from github_app.github.auth import make_app_jwt
from github_app.github.client import GitHubApp, GitHubClient
from tests.github_fixtures import (
    FAST_RETRY,
    GITHUB_APP_ID,
    INSTALLATION_ID,
    REPO,
    KeyPair,
    generate_key_pair,
)


def test_app_jwt_is_backdated_a_minute_and_expires_within_ten(github_app_keys: KeyPair) -> None:
    now = 1_750_000_000.0
    token = make_app_jwt(GITHUB_APP_ID, github_app_keys.private_pem, now=now)

    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = jwt.decode(token, github_app_keys.public_pem, algorithms=["RS256"], options={"verify_exp": False})
    assert claims == {"iat": 1_749_999_940, "exp": 1_750_000_540, "iss": str(GITHUB_APP_ID)}


def client_with_jwt(session: aiohttp.ClientSession, fake: FakeGitHub, token: str) -> GitHubClient:
    return GitHubClient(session, base_url=fake.url, jwt_source=lambda: token, retry_policy=FAST_RETRY)


async def test_fake_accepts_the_apps_own_jwt(fake_github: FakeGitHub, github_app_client: GitHubApp) -> None:
    assert await github_app_client.app_client().getitem("/app/hook/deliveries") == []
    [request] = fake_github.requests
    assert (request.auth, request.status) == ("jwt", 200)


@pytest.mark.parametrize(
    ("issued_at_offset", "lifetime", "complaint"),
    [
        pytest.param(-700, 600, "'exp'", id="expired"),
        pytest.param(-60, 20 * 60, "too far in the future", id="valid-for-too-long"),
        pytest.param(+120, 300, "'iat'", id="issued-in-the-future"),
    ],
)
async def test_fake_rejects_a_jwt_github_would_reject_and_the_client_surfaces_it(
    fake_github: FakeGitHub,
    github_session: aiohttp.ClientSession,
    github_app_keys: KeyPair,
    issued_at_offset: int,
    lifetime: int,
    complaint: str,
) -> None:
    iat = int(time.time()) + issued_at_offset
    claims = {"iat": iat, "exp": iat + lifetime, "iss": str(GITHUB_APP_ID)}
    token = jwt.encode(claims, github_app_keys.private_pem, algorithm="RS256")

    with pytest.raises(BadRequest) as raised:
        await client_with_jwt(github_session, fake_github, token).getitem("/app/hook/deliveries")

    assert raised.value.status_code == 401
    assert complaint in str(raised.value)
    # A 401 is final: asking again with the same credentials cannot help.
    assert [r.status for r in fake_github.requests] == [401]


async def test_fake_rejects_a_jwt_signed_with_another_key(
    fake_github: FakeGitHub, github_session: aiohttp.ClientSession
) -> None:
    stranger = generate_key_pair()
    token = make_app_jwt(GITHUB_APP_ID, stranger.private_pem)

    with pytest.raises(BadRequest) as raised:
        await client_with_jwt(github_session, fake_github, token).getitem("/app/hook/deliveries")

    assert raised.value.status_code == 401
    assert "could not be decoded" in str(raised.value)


async def test_installation_token_is_fetched_once_and_reused(
    fake_github: FakeGitHub, github_app_client: GitHubApp
) -> None:
    for _ in range(3):
        gh = await github_app_client.installation_client(INSTALLATION_ID)
        repo = await gh.getitem(f"/repos/{REPO}")
        assert repo["default_branch"] == "main"

    assert len(fake_github.token_requests) == 1
    assert fake_github.token_requests[0].auth == "jwt"
    [issued] = fake_github.tokens.values()
    assert issued.installation_id == INSTALLATION_ID
    # The fake hands out long tokens, as GitHub's newer format does.
    assert len(issued.token) > 100
    assert [r.auth for r in fake_github.requests_to("GET", "/repos/")] == ["token"] * 3


@pytest.mark.parametrize(
    ("token_lifetime", "token_requests"),
    [
        pytest.param(timedelta(minutes=6), 1, id="six-minutes-left-reused"),
        pytest.param(timedelta(minutes=4), 3, id="four-minutes-left-replaced"),
    ],
)
async def test_token_is_replaced_when_less_than_five_minutes_are_left(
    fake_github: FakeGitHub, github_app_client: GitHubApp, token_lifetime: timedelta, token_requests: int
) -> None:
    fake_github.token_ttl = token_lifetime
    gh = await github_app_client.installation_client(INSTALLATION_ID)
    for _ in range(2):
        await gh.getitem(f"/repos/{REPO}")

    assert len(fake_github.token_requests) == token_requests
    assert [r.status for r in fake_github.requests_to("GET", "/repos/")] == [200, 200]


async def test_twenty_concurrent_callers_cause_one_token_request(
    fake_github: FakeGitHub, github_app_client: GitHubApp
) -> None:
    async def handler() -> str:
        gh = await github_app_client.installation_client(INSTALLATION_ID)
        repo = await gh.getitem(f"/repos/{REPO}")
        return str(repo["full_name"])

    names = await asyncio.gather(*(handler() for _ in range(20)))

    assert names == [REPO] * 20
    assert len(fake_github.token_requests) == 1


async def test_unknown_installation_fails_when_the_client_is_made(
    fake_github: FakeGitHub, github_app_client: GitHubApp
) -> None:
    with pytest.raises(BadRequest) as raised:
        await github_app_client.installation_client(999)
    assert raised.value.status_code == 404


async def test_revoked_token_is_replaced_and_the_request_still_succeeds(
    fake_github: FakeGitHub, github_app_client: GitHubApp
) -> None:
    gh = await github_app_client.installation_client(INSTALLATION_ID)
    await gh.getitem(f"/repos/{REPO}")
    fake_github.revoke_tokens()

    repo = await gh.getitem(f"/repos/{REPO}")

    assert repo["full_name"] == REPO
    assert len(fake_github.token_requests) == 2
    assert [r.status for r in fake_github.requests_to("GET", "/repos/")] == [200, 401, 200]


async def test_token_outside_its_installations_repositories_sees_404(
    fake_github: FakeGitHub, github_app_client: GitHubApp
) -> None:
    fake_github.add_repo("acme/secret")
    fake_github.add_installation(88, repositories=[REPO])
    gh = await github_app_client.installation_client(88)

    assert (await gh.getitem(f"/repos/{REPO}"))["full_name"] == REPO
    with pytest.raises(BadRequest) as raised:
        await gh.getitem("/repos/acme/secret")
    assert raised.value.status_code == 404


async def test_tokens_stay_out_of_reprs(fake_github: FakeGitHub, github_app_client: GitHubApp) -> None:
    gh = await github_app_client.installation_client(INSTALLATION_ID)
    cached = await github_app_client.tokens.get(INSTALLATION_ID)

    shown = " ".join([repr(cached), str(cached), repr(github_app_client.tokens), repr(gh), repr(github_app_client)])
    assert cached.token not in shown
    assert "expires_at" in repr(cached)
