"""Real BMAD files from public repositories pushed through the whole app: signed deliveries in, stories,
gates and the 'BMAD story files' check run out. The files are read from the corpus at test time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text

from github_app.demo.fake_github import FakeGitHub
from github_app.outbox.sender import OutboxSender
from tests.corpus import corpus_file
from tests.github_fixtures import REPO
from tests.harness import App
from tests.workflow import DEV, PM, QA, Market, seed_market, story_file


@pytest.fixture
async def market(app: App, fake_github: FakeGitHub) -> AsyncIterator[Market]:
    yield await seed_market(app.runtime, fake_github)


def story(repo: str, path: str) -> bytes:
    return corpus_file("stories", repo, path).read()


def gate(repo: str, path: str) -> bytes:
    return corpus_file("gates", repo, path).read()


async def stories(m: Market) -> dict[str, dict[str, Any]]:
    rows = await m.rows(
        'SELECT "epicNumber", "storyNumber", title, description, "acceptanceCriteria", status, "storyFile", id '
        'FROM "Story"'
    )
    keys = ("title", "description", "criteria", "status", "file", "id")
    return {f"{r[0]}.{r[1]}": dict(zip(keys, r[2:], strict=True)) for r in rows}


async def story_files_run(app: App, fake: FakeGitHub, sha: str) -> dict[str, Any]:
    await OutboxSender(app.runtime, writes_per_second=1000).run_until_idle()
    runs = [r for r in fake.check_runs.values() if r["head_sha"] == sha and r["name"] == "BMAD story files"]
    assert len(runs) == 1, runs
    return runs[0]


PRADOK = "pradok/events-scheduler"
STORY_45 = "docs/stories/4.5.configurable-delivery-time-override.story.md"
SUMMARY_45 = "docs/stories/4.5-review-summary.md"


async def test_a_review_summary_pushed_after_its_story_changes_nothing(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    m = market
    await app.deliver("push", m.push("main", {STORY_45: story(PRADOK, STORY_45)}, PM))
    before = (await stories(m))["4.5"]
    assert before["title"] == "Configurable Delivery Time Override for Manual Testing"
    assert before["description"] and before["criteria"]

    data = m.push("main", {SUMMARY_45: story(PRADOK, SUMMARY_45)}, PM)
    await app.deliver("push", data)

    assert await stories(m) == {"4.5": before}
    run = await story_files_run(app, fake_github, data["after"])
    assert run["conclusion"] == "neutral"
    assert SUMMARY_45 in run["output"]["summary"] and "summary" in run["output"]["summary"]


async def test_reports_appendices_and_epic_summaries_create_no_story(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    m = market
    files = {
        "docs/stories/1.3_validation_report.md": story(
            "Dokt-R/ai-dungeon-master", "docs/stories/1.3_validation_report.md"
        ),
        "docs/stories/2.1/2.1.appendix.md": story("seokhojung/befun-v3", "docs/stories/2.1/2.1.appendix.md"),
        "docs/stories/EPIC-1-SUMMARY.md": story("Jirawatpyk/Tinedy-system", "docs/stories/EPIC-1-SUMMARY.md"),
    }
    data = m.push("main", dict(files), PM)
    await app.deliver("push", data)

    assert await stories(m) == {}
    summary = (await story_files_run(app, fake_github, data["after"]))["output"]["summary"]
    for path in files:
        assert path in summary
    # Removing a report is not the removal of the story its number names.
    await app.deliver("push", m.push("main", {"docs/stories/1.3_validation_report.md": None}, PM))
    assert await m.rows('SELECT 1 FROM "StoryAuditLog"') == []


async def test_one_file_per_story_is_its_source(app: App, market: Market, fake_github: FakeGitHub) -> None:
    m = market
    await app.deliver("push", m.push("main", {STORY_45: story(PRADOK, STORY_45)}, PM))
    before = (await stories(m))["4.5"]
    other = "docs/stories/4.5.delivery-time-override-v2.md"
    data = m.push("main", {other: story_file("Draft", title="Something else", epic=4, number=5)}, PM)
    await app.deliver("push", data)

    assert (await stories(m))["4.5"] == before
    run = await story_files_run(app, fake_github, data["after"])
    assert run["conclusion"] == "failure"
    assert other in run["output"]["summary"] and STORY_45 in run["output"]["summary"]

    # Renamed in one push: the old name's removal frees the story for the new name.
    renamed = "docs/stories/4.5.delivery-time-override.story.md"
    await app.deliver("push", m.push("main", {STORY_45: None, renamed: story(PRADOK, STORY_45)}, PM))
    assert (await stories(m))["4.5"]["file"] == renamed


async def test_a_summary_recorded_as_the_source_gives_way_to_the_story_file(app: App, market: Market) -> None:
    m = market
    await app.deliver("push", m.push("main", {STORY_45: story(PRADOK, STORY_45)}, PM))
    # What an older version of the app may have recorded: the summary as the story's file.
    async with m.runtime.engine.begin() as conn:
        await conn.execute(text('UPDATE "Story" SET "storyFile" = :f'), {"f": SUMMARY_45})
    await app.deliver("push", m.push("main", {STORY_45: story(PRADOK, STORY_45)}, PM))
    assert (await stories(m))["4.5"]["file"] == STORY_45


async def test_a_file_without_a_section_never_empties_the_story(app: App, market: Market) -> None:
    m = market
    path = "docs/stories/1.1.story.md"
    await app.deliver("push", m.push("main", {path: story_file("Draft", title="Scaffold", epic=1, number=1)}, PM))
    before = (await stories(m))["1.1"]
    # The real file has a status table and acceptance criteria but no story statement.
    await app.deliver("push", m.push("main", {path: story("Cleverson02/circuito-elegante", path)}, PM))

    after = (await stories(m))["1.1"]
    assert after["title"] == "Scaffold do Monorepo & Configuração Base"
    assert after["description"] == before["description"] != ""
    assert after["criteria"] != before["criteria"] and "Fastify" in after["criteria"]


async def test_translated_status_in_a_sprint_subfolder_approves_the_story(app: App, market: Market) -> None:
    m = market
    path = "docs/stories/sprint_1/1.1.story.md"
    await app.deliver("push", m.push("main", {path: story("CauanyRodrigues01/task-flow", path)}, PM))

    row = (await stories(m))["1.1"]
    assert row["status"] == "APPROVED"  # "**Status:** Pronto para Desenvolvimento"
    assert row["title"] == "Configuração Inicial do Projeto e Autenticação de Usuários"
    assert row["description"].startswith("Como usuário") and row["criteria"]
    assert await m.rows("SELECT title FROM \"Opportunity\" WHERE stage = 'developer'") == [
        ("Story 1.1: Configuração Inicial do Projeto e Autenticação de Usuários",)
    ]


async def test_unmapped_statuses_are_reported_by_file_and_value_until_aliased(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    m = market
    paths = {
        "docs/stories/2.10.story.md": story("Cleverson02/circuito-elegante", "docs/stories/2.10.story.md"),
        "docs/stories/1.2.story.md": story("GuanryA5/OneDay_Framework", "docs/stories/1.2.story.md"),
    }
    data = m.push("main", paths, PM)
    await app.deliver("push", data)
    summary = (await story_files_run(app, fake_github, data["after"]))["output"]["summary"]
    assert "docs/stories/2.10.story.md: status 'Ready'" in summary
    assert "docs/stories/1.2.story.md: status 'Not Started'" in summary
    assert {k: v["status"] for k, v in (await stories(m)).items()} == {"2.10": "DRAFT", "1.2": "DRAFT"}

    fake_github.put_file(REPO, "main", ".github/bmad-marketplace.yml", b'status_aliases:\n  "Ready": Approved\n')
    again = m.push("main", {"docs/stories/2.10.story.md": paths["docs/stories/2.10.story.md"]}, PM)
    again["commits"][-1]["modified"].append(".github/bmad-marketplace.yml")  # the configuration changed too
    await app.deliver("push", again)
    assert (await stories(m))["2.10"]["status"] == "APPROVED"


async def test_front_matter_titles_and_as_a_headings(app: App, market: Market) -> None:
    m = market
    repo = "Haizard/mult-tenant-school"
    files = {p: story(repo, p) for p in ("docs/stories/9.3.story.md", "docs/stories/12.story.md")}
    await app.deliver("push", m.push("main", files, PM))

    rows = await stories(m)
    assert rows["9.3"]["title"] == "Tenant Front-End Website"
    assert rows["9.3"]["description"].startswith("As a School Administrator")
    assert rows["9.3"]["status"] == "APPROVED"  # "🔄 READY FOR IMPLEMENTATION", pushed by the PM
    assert rows["12.1"]["title"] == "AI Chatbot with Subject-Specific Tutoring"


async def test_story_folder_set_by_the_core_configuration(app: App, market: Market) -> None:
    m = market
    m.fake.put_file(REPO, "main", ".bmad-core/core-config.yaml", b"devStoryLocation: docs/product/stories\n")
    repo = "Jackela/Casual-Academic-Time-Allocation-Management-System"
    path = "docs/product/stories/1.1.story.md"
    await app.deliver("push", m.push("main", {path: story(repo, path), "docs/stories/1.2.x.md": story_file()}, PM))

    rows = await stories(m)
    assert set(rows) == {"1.1"}  # docs/stories is not the story folder here
    assert rows["1.1"]["title"].startswith("Implement Core Authentication")
    assert rows["1.1"]["description"] and rows["1.1"]["criteria"]


async def test_ids_the_marketplace_cannot_hold_do_not_stop_the_push(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    m = market
    repo = "seokhojung/befun-v3"
    names = (
        "docs/stories/1.2A.supabase-connection-setup.md",
        "docs/stories/1.2.user-authentication-system.md",
        "docs/stories/2.3A.1.desk-model-spec.story.md",
    )
    data = m.push("main", {p: story(repo, p) for p in names}, PM)
    await app.deliver("push", data)

    assert set(await stories(m)) == {"1.2"}
    run = await story_files_run(app, fake_github, data["after"])
    assert run["conclusion"] == "failure"
    assert "1.2A.supabase-connection-setup.md: story id 1.2A" in run["output"]["summary"]
    assert "2.3A.1.desk-model-spec.story.md: story id 2.3A" in run["output"]["summary"]
    [(state,)] = await m.rows("SELECT state FROM webhook_inbox ORDER BY received_at DESC LIMIT 1")
    assert state == "done"


async def in_review(app: App, m: Market, epic: int, number: int, pr: int, branch: str) -> str:
    """Story epic.number approved by the PM, won by DEV, its PR open for review."""
    path = f"docs/stories/{epic}.{number}.story.md"
    await app.deliver("push", m.push("main", {path: story_file("Approved", epic=epic, number=number)}, PM))
    story_id = (await stories(m))[f"{epic}.{number}"]["id"]
    await m.accept_bid(story_id, DEV)
    await app.deliver("pull_request", m.pr("opened", pr, branch=branch, title=f"Story {epic}.{number}"))
    return str(story_id)


async def test_archived_gates_never_count(app: App, market: Market) -> None:
    m = market
    story_id = await in_review(app, m, 2, 1, 60, "story/2.1-configurator")
    repo, archived = (
        "seokhojung/befun-v3",
        ("docs/qa/gates/archive/2.1-3d-configurator-foundation/2.1.3d-configurator-foundation.yml"),
    )
    await app.deliver("push", m.push("story/2.1-configurator", {archived: gate(repo, archived)}, QA))
    assert await m.rows("SELECT 1 FROM gate_review") == []

    current = "docs/qa/gates/2.1-3d-configurator-foundation.yml"
    await app.deliver("push", m.push("story/2.1-configurator", {current: gate(repo, archived)}, QA))
    assert await m.rows("SELECT story_id, path, decision FROM gate_review") == [(story_id, current, "CONCERNS")]


async def test_irregular_gates_count_when_they_name_their_story_else_are_reported(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    m = market
    repo = "AlexMobiCraft/FREESPORT"
    story_id = await in_review(app, m, 14, 1, 61, "story/14.1-attributes")
    named = "docs/qa/gates/epic-14.14.1-attribute-models.yml"
    await app.deliver("push", m.push("story/14.1-attributes", {named: gate(repo, named)}, QA))
    assert await m.rows("SELECT story_id, decision FROM gate_review") == [(story_id, "PASS")]

    await in_review(app, m, 14, 3, 62, "story/14.3-dedup")
    for path, reason in (
        ("docs/qa/gates/14.story-14.3-attribute-deduplication.yml", "it has status: CONCERNS"),
        ("docs/qa/gates/ARCH-1C-INTEGRATION-GATE.yml", "gate file names no story"),
    ):
        await app.deliver("push", m.push("story/14.3-dedup", {path: gate(repo, path)}, QA))
        [(problem,)] = await m.rows("SELECT gate_problem FROM pull_request_link WHERE pr_number = 62")
        assert problem.startswith(path) and reason in problem
    assert len(await m.rows("SELECT 1 FROM gate_review")) == 1


async def test_a_markdown_gate_with_a_heading_before_its_yaml(app: App, market: Market) -> None:
    m = market
    story_id = await in_review(app, m, 1, 3, 63, "story/1.3-user-auth")
    text = '# Quality Gate: Story 1.3\n\n```yaml\nschema: 1\nstory: "1.3"\ngate: PASS\n```\n\nNotes.\n'
    await app.deliver("push", m.push("story/1.3-user-auth", {"docs/qa/gates/1.3-user-auth.md": text}, QA))
    assert await m.rows("SELECT story_id, decision FROM gate_review") == [(story_id, "PASS")]
