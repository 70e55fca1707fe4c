"""The GitHub client against the fake GitHub: retries, rate limits, metrics, logs, and the fake's API."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket

import aiohttp
import pytest
from gidgethub import BadRequest, GitHubBroken, RateLimitExceeded
from prometheus_client import REGISTRY

from github_app.demo.fake_github import FakeGitHub
from github_app.github.client import AnswerLost, GitHubApp
from tests.github_fixtures import FAST_RETRY, GITHUB_APP_ID, INSTALLATION_ID, REPO, KeyPair, fake_app_client
from tests.waits import until

REPO_PATH = f"/repos/{REPO}"


class RecordingSleep:
    """Remembers the waits the client asked for, without waiting: a test checks how long the client
    chose to wait, not how long the machine took."""

    def __init__(self) -> None:
        self.requested: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.requested.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def recording_app(
    fake_github: FakeGitHub, github_app_keys: KeyPair, github_session: aiohttp.ClientSession, sleep: RecordingSleep
) -> GitHubApp:
    """The app's client factory, pointed at the fake, whose waits are recorded by `sleep`."""
    return fake_app_client(fake_github, github_app_keys, github_session, sleep=sleep)


def api_calls(method: str, status: str) -> float:
    return REGISTRY.get_sample_value("github_api_calls_total", {"method": method, "status": status}) or 0.0


def statuses(fake: FakeGitHub, path: str = REPO_PATH) -> list[int]:
    return [r.status for r in fake.requests if r.path == path]


async def test_server_errors_are_retried_until_success_and_counted(
    fake_github: FakeGitHub, github_app_client: GitHubApp
) -> None:
    gh = await github_app_client.installation_client(INSTALLATION_ID)
    errors_before, ok_before = api_calls("GET", "500"), api_calls("GET", "200")
    fake_github.fail_next(2, 500, path=REPO_PATH)

    repo = await gh.getitem(REPO_PATH)

    assert repo["full_name"] == REPO
    assert statuses(fake_github) == [500, 500, 200]
    assert api_calls("GET", "500") - errors_before == 2
    assert api_calls("GET", "200") - ok_before == 1


async def test_gives_up_after_a_bounded_number_of_attempts(
    fake_github: FakeGitHub, github_app_client: GitHubApp
) -> None:
    gh = await github_app_client.installation_client(INSTALLATION_ID)
    fake_github.fail_next(100, 502, path=REPO_PATH)

    with pytest.raises(GitHubBroken):
        await gh.getitem(REPO_PATH)

    assert statuses(fake_github) == [502] * FAST_RETRY.max_attempts


async def test_a_create_is_never_repeated_after_an_answer_that_may_hide_success(
    fake_github: FakeGitHub, github_app_client: GitHubApp
) -> None:
    gh = await github_app_client.installation_client(INSTALLATION_ID)
    runs = f"{REPO_PATH}/check-runs"
    fake_github.lose_answer_next(1, path=runs)

    with pytest.raises(AnswerLost):
        await gh.create(runs, {"name": "BMAD story", "head_sha": "a" * 40})

    assert [r.status for r in fake_github.requests_to("POST", runs)] == [502]
    assert len(fake_github.check_runs) == 1  # GitHub made it; the app must look before making another

    # A rate-limit refusal made nothing: it is waited out and sent again.
    fake_github.rate_limit_next(1, retry_after=0, path=runs)
    await gh.create(runs, {"name": "BMAD story", "head_sha": "b" * 40})
    assert [r.status for r in fake_github.requests_to("POST", runs)] == [502, 403, 201]


async def test_forbidden_without_rate_limit_is_not_retried(
    fake_github: FakeGitHub, github_app_client: GitHubApp
) -> None:
    gh = await github_app_client.installation_client(INSTALLATION_ID)
    fake_github.fail_next(1, 403, path=REPO_PATH)

    with pytest.raises(BadRequest):
        await gh.getitem(REPO_PATH)

    assert statuses(fake_github) == [403]


async def test_secondary_limit_with_retry_after_is_waited_out(
    fake_github: FakeGitHub, recording_app: GitHubApp, sleep: RecordingSleep
) -> None:
    gh = await recording_app.installation_client(INSTALLATION_ID)
    fake_github.rate_limit_next(1, retry_after=7, path=f"{REPO_PATH}/check-runs")

    run = await gh.post(f"{REPO_PATH}/check-runs", data={"name": "bmad", "head_sha": "abc123"})

    assert fake_github.check_runs[run["id"]]["head_sha"] == "abc123"
    limited, accepted = fake_github.requests_to("POST", f"{REPO_PATH}/check-runs")
    assert (limited.status, accepted.status) == (403, 201)
    assert sleep.requested == [pytest.approx(7, abs=0.5)]  # what Retry-After asked, before the second try
    # The rejected attempt created nothing: exactly one check run exists.
    assert len(fake_github.check_runs) == 1


async def test_other_clients_of_the_installation_hold_back_during_a_rate_limit(
    fake_github: FakeGitHub, recording_app: GitHubApp, sleep: RecordingSleep
) -> None:
    first = await recording_app.installation_client(INSTALLATION_ID)
    second = await recording_app.installation_client(INSTALLATION_ID)
    fake_github.rate_limit_next(1, retry_after=7, path=REPO_PATH)

    async def later() -> None:
        await until(lambda: any(r.status == 403 for r in fake_github.requests), what="the rate-limit answer")
        await second.getitem(f"{REPO_PATH}/commits/abc/pulls")

    await asyncio.gather(first.getitem(REPO_PATH), later())

    # The client that was answered and the one that was not both waited out the rest of the limit
    # (the sleep is recorded, not slept, so the clock barely moved).
    assert sleep.requested == [pytest.approx(7, abs=1), pytest.approx(7, abs=1)]
    assert [r.status for r in fake_github.requests if r.path.startswith(REPO_PATH)] == [403, 200, 200]


async def test_secondary_limit_without_retry_after_backs_off_a_minute_then_longer(
    fake_github: FakeGitHub, github_app_keys: KeyPair, github_session: aiohttp.ClientSession, sleep: RecordingSleep
) -> None:
    app = GitHubApp(GITHUB_APP_ID, github_app_keys.private_pem, fake_github.url, github_session, sleep=sleep)
    gh = await app.installation_client(INSTALLATION_ID)
    fake_github.rate_limit_next(2, retry_after=None, path=REPO_PATH)

    repo = await gh.getitem(REPO_PATH)

    assert repo["full_name"] == REPO
    assert statuses(fake_github) == [403, 403, 200]
    first, second = [s for s in sleep.requested if s >= 1]
    assert first >= 60
    assert second >= 2 * 60


async def test_primary_limit_waits_until_the_reset(
    fake_github: FakeGitHub, recording_app: GitHubApp, sleep: RecordingSleep
) -> None:
    gh = await recording_app.installation_client(INSTALLATION_ID)
    fake_github.primary_limit_next(1, reset_in=5, path=REPO_PATH)

    await gh.getitem(REPO_PATH)

    limited, accepted = [r for r in fake_github.requests if r.path == REPO_PATH]
    assert (limited.status, accepted.status) == (403, 200)
    # The reset is a whole second on GitHub's clock, 5 to 6 s away: waited until then, not a back-off.
    [waited] = sleep.requested
    assert 4.5 <= waited <= 6.5


async def test_primary_limit_resetting_beyond_the_wait_budget_fails_at_once(
    fake_github: FakeGitHub, recording_app: GitHubApp, sleep: RecordingSleep
) -> None:
    gh = await recording_app.installation_client(INSTALLATION_ID)
    fake_github.primary_limit_next(1, reset_in=FAST_RETRY.max_total_wait + 60, path=REPO_PATH)

    with pytest.raises(RateLimitExceeded):
        await gh.getitem(REPO_PATH)

    assert sleep.requested == []  # no wait was even started
    assert statuses(fake_github) == [403]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_connection_errors_are_retried_until_github_is_back(
    github_app_keys: KeyPair, github_session: aiohttp.ClientSession
) -> None:
    port = free_port()
    fake = FakeGitHub(GITHUB_APP_ID, github_app_keys.public_pem)
    errors_before = api_calls("GET", "error")

    async def sleep_while_github_comes_back(seconds: float) -> None:
        if not fake.url:
            await fake.start(port=port)
        await asyncio.sleep(seconds)

    app = GitHubApp(
        GITHUB_APP_ID,
        github_app_keys.private_pem,
        f"http://127.0.0.1:{port}",
        github_session,
        retry_policy=FAST_RETRY,
        sleep=sleep_while_github_comes_back,
    )
    try:
        assert await app.app_client().getitem("/app/hook/deliveries") == []
    finally:
        await fake.close()
    assert api_calls("GET", "error") - errors_before == 1
    assert [r.status for r in fake.requests] == [200]


async def test_unreachable_github_raises_after_bounded_attempts(
    github_app_keys: KeyPair, github_session: aiohttp.ClientSession
) -> None:
    errors_before = api_calls("GET", "error")
    app = GitHubApp(
        GITHUB_APP_ID,
        github_app_keys.private_pem,
        f"http://127.0.0.1:{free_port()}",
        github_session,
        retry_policy=FAST_RETRY,
    )

    with pytest.raises(aiohttp.ClientConnectionError):
        await app.app_client().getitem("/app/hook/deliveries")

    assert api_calls("GET", "error") - errors_before == FAST_RETRY.max_attempts


async def test_credentials_never_reach_the_logs(
    fake_github: FakeGitHub, github_app_client: GitHubApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gh = await github_app_client.installation_client(INSTALLATION_ID)
    fake_github.fail_next(1, 500, path=REPO_PATH)
    fake_github.rate_limit_next(1, retry_after=0, path=REPO_PATH)
    await gh.getitem(REPO_PATH)
    fake_github.revoke_tokens()
    await gh.getitem(REPO_PATH)
    fake_github.fail_next(100, 503, path=REPO_PATH)
    with pytest.raises(GitHubBroken) as raised:
        await gh.getitem(REPO_PATH)
    await github_app_client.app_client().getitem("/app/hook/deliveries")

    assert "retrying" in caplog.text and "giving up" in caplog.text
    secrets = list(fake_github.tokens)
    assert len(secrets) == 2
    for secret in secrets:
        assert secret not in caplog.text
        assert secret not in str(raised.value)
    assert "bearer" not in caplog.text.lower()


async def test_pages_are_followed_through_the_link_header(
    fake_github: FakeGitHub, github_app_client: GitHubApp
) -> None:
    files = [{"filename": f"docs/stories/{n}.md", "status": "modified"} for n in range(250)]
    fake_github.set_pull_files(REPO, 7, files)
    gh = await github_app_client.installation_client(INSTALLATION_ID)

    seen = [f["filename"] async for f in gh.getiter(f"{REPO_PATH}/pulls/7/files?per_page=100")]

    assert seen == [f["filename"] for f in files]
    assert len(fake_github.requests_to("GET", f"{REPO_PATH}/pulls/7/files")) == 3


async def test_fake_serves_file_contents_like_github(fake_github: FakeGitHub, github_app_client: GitHubApp) -> None:
    story = b"# Story 1.2\n\nStatus: Review\n"
    fake_github.put_file(REPO, "feature", "docs/stories/1.2.story.md", story)
    gh = await github_app_client.installation_client(INSTALLATION_ID)

    found = await gh.getitem(f"{REPO_PATH}/contents/docs/stories/1.2.story.md?ref=feature")
    listing = await gh.getitem(f"{REPO_PATH}/contents/docs?ref=feature")

    assert base64.b64decode(found["content"]) == story
    assert [(e["type"], e["name"]) for e in listing] == [("dir", "stories")]
    with pytest.raises(BadRequest) as missing:
        await gh.getitem(f"{REPO_PATH}/contents/docs/stories/9.9.story.md?ref=feature")
    assert missing.value.status_code == 404


async def test_fake_keeps_check_runs_and_comments_editable_in_place(
    fake_github: FakeGitHub, github_app_client: GitHubApp
) -> None:
    gh = await github_app_client.installation_client(INSTALLATION_ID)
    run = await gh.post(f"{REPO_PATH}/check-runs", data={"name": "bmad", "head_sha": "abc", "status": "in_progress"})
    annotation = {
        "path": "a.md",
        "start_line": 1,
        "end_line": 1,
        "annotation_level": "notice",
        "message": "m",
    }
    with pytest.raises(BadRequest) as too_many:
        await gh.patch(
            f"{REPO_PATH}/check-runs/{run['id']}",
            data={"output": {"title": "t", "summary": "s", "annotations": [annotation] * 51}},
        )
    await gh.patch(
        f"{REPO_PATH}/check-runs/{run['id']}",
        data={
            "conclusion": "success",
            "output": {"title": "t", "summary": "s", "annotations": [annotation] * 50},
        },
    )
    comment = await gh.post(f"{REPO_PATH}/issues/3/comments", data={"body": "first"})
    await gh.patch(f"{REPO_PATH}/issues/comments/{comment['id']}", data={"body": "edited"})

    assert too_many.value.status_code == 422
    stored = fake_github.check_runs[run["id"]]
    assert (stored["status"], stored["conclusion"], len(stored["annotations"])) == (
        "completed",
        "success",
        50,
    )
    assert [c["body"] for c in fake_github.comments.values()] == ["edited"]
