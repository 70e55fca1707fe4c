"""Recovery of missed deliveries from the app's delivery log on the fake GitHub."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from github_app.demo.fake_github import FakeGitHub
from github_app.github.client import GitHubApp
from github_app.github.redeliver import recover_missed_deliveries


class Inbox:
    """Stands in for the inbox table: answers which GUIDs it holds, and remembers each question."""

    def __init__(self, guids: set[str]) -> None:
        self.guids = guids
        self.asked: list[set[str]] = []

    async def known(self, guids: set[str]) -> set[str]:
        self.asked.append(guids)
        return guids & self.guids


async def test_recovery_pages_through_the_log_and_redelivers_each_missing_guid_once(
    fake_github: FakeGitHub, github_app_client: GitHubApp
) -> None:
    now = datetime.now(UTC)
    since = now - timedelta(hours=24)
    minute = timedelta(minutes=1)

    def at(minutes_ago: int) -> datetime:
        return now - minutes_ago * minute

    # 240 deliveries inside the window and 30 older ones: three pages of 100, the last one partly old.
    for n in range(200):
        fake_github.add_delivery(f"ok-{n}", delivered_at=at(10 + n))
    fake_github.add_delivery("missed-once", status_code=500, delivered_at=at(300))
    first_try = fake_github.add_delivery("missed-twice", status_code=502, delivered_at=at(401))
    second_try = fake_github.add_delivery("missed-twice", status_code=504, delivered_at=at(400), redelivery=True)
    fake_github.add_delivery("timed-out", status_code=0, delivered_at=at(500))
    fake_github.add_delivery("healed", status_code=500, delivered_at=at(600))
    fake_github.add_delivery("healed", status_code=200, delivered_at=at(5), redelivery=True)
    fake_github.add_delivery("stored-but-slow", status_code=504, delivered_at=at(700))
    for n in range(33):
        fake_github.add_delivery(f"late-ok-{n}", delivered_at=at(800 + n))
    for n in range(30):
        fake_github.add_delivery(f"too-old-{n}", status_code=500, delivered_at=since - (n + 1) * minute)
    assert len(fake_github.deliveries) == 270
    inbox = Inbox({"stored-but-slow", "ok-1"})

    report = await recover_missed_deliveries(github_app_client, since, inbox.known)

    pages = fake_github.requests_to("GET", "/app/hook/deliveries")
    assert len(pages) == 3
    assert all(page.query["per_page"] == "100" and page.auth == "jwt" for page in pages)
    attempted_guids = [
        next(d["guid"] for d in fake_github.deliveries if d["id"] == delivery_id)
        for delivery_id in fake_github.redelivery_attempts
    ]
    assert sorted(attempted_guids) == ["missed-once", "missed-twice", "timed-out"]
    # Of a GUID tried twice, the newest attempt is the one asked for again.
    assert second_try["id"] in fake_github.redelivery_attempts
    assert first_try["id"] not in fake_github.redelivery_attempts
    assert inbox.asked == [{"missed-once", "missed-twice", "timed-out", "stored-but-slow"}]
    assert (report.scanned, report.failed, report.already_known, report.redelivered, report.errors) == (
        240,
        4,
        1,
        3,
        0,
    )
    assert sorted(report.redelivered_guids) == sorted(attempted_guids)


async def test_recovery_stops_at_the_first_page_older_than_the_window(
    fake_github: FakeGitHub, github_app_client: GitHubApp
) -> None:
    since = datetime.now(UTC) - timedelta(hours=1)
    for n in range(150):
        fake_github.add_delivery(f"old-{n}", status_code=500, delivered_at=since - timedelta(minutes=n + 1))
    inbox = Inbox(set())

    report = await recover_missed_deliveries(github_app_client, since, inbox.known)

    assert len(fake_github.requests_to("GET", "/app/hook/deliveries")) == 1
    assert fake_github.redelivery_attempts == []
    assert (report.scanned, report.failed, report.redelivered) == (0, 0, 0)


async def test_a_refused_redelivery_is_counted_and_the_rest_still_go_out(
    fake_github: FakeGitHub, github_app_client: GitHubApp
) -> None:
    first = fake_github.add_delivery("first", status_code=500)
    fake_github.add_delivery("second", status_code=500)
    fake_github.fail_next(1, 422, path=f"/app/hook/deliveries/{first['id']}/attempts")

    report = await recover_missed_deliveries(
        github_app_client, datetime.now(UTC) - timedelta(hours=1), Inbox(set()).known
    )

    assert (report.failed, report.redelivered, report.errors) == (2, 1, 1)
    assert report.redelivered_guids == ["second"]
    assert len(fake_github.redelivery_attempts) == 1
