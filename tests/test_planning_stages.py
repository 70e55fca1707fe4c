"""The planning stages driven from GitHub through signed deliveries and the fake GitHub: each stage's PR
becomes a Deliverable, the client reviews it, the merge and the approval complete the stage, its
documents are registered, its escrow is released exactly once on the in-process chains, and the project
moves to its next stage and into development."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from solders.keypair import Keypair

from github_app.demo.evm_env import CLIENT_KEY, EvmEnv, address, deploy_env, expert_key, in_process_web3
from github_app.demo.fake_github import FakeGitHub
from github_app.demo.solana_env import solana_env
from github_app.domain.escrow import fee_split
from github_app.escrow.backends import Chains
from github_app.escrow.funding import sync_funding
from github_app.escrow.refunds import refund
from github_app.escrow.releases import Releaser
from github_app.outbox.sender import OutboxSender
from tests.chain.market import set_wallet
from tests.github_fixtures import REPO
from tests.harness import App
from tests.planning import ANALYST, ARCHITECT, UX, StagePr, complete_stage, opportunity_of, seed_planning, stage_escrow
from tests.workflow import (
    CLIENT,
    DEV,
    GATE_PATH,
    OTHER_DEV,
    PM,
    QA,
    STORY_PATH,
    STRANGER,
    Market,
    gate_file,
    seed_market,
    story_file,
)

BRIEF = b"# Project Brief: Widgets\n\n## Executive Summary\nWidgets for everyone.\n"
PRD_SHARDS = {
    "docs/prd/index.md": b"# Widgets PRD\n\n- [Goals](./goals.md)\n- [Epic 1](./epic-1-foundation.md)\n",
    "docs/prd/goals.md": b"# Goals\n\n- Sign in\n- See only my widgets\n",
    "docs/prd/epic-1-foundation.md": "# Epic 1 Foundation\n\n## Story 1.1 — Sign in ✓\n".encode(),
}
ARCHITECTURE = b"# Widgets Architecture\n\n## Tech Stack\n| Category | Technology |\n|---|---|\n| Language | Python |\n"
FRONT_END = b"# Widgets UI/UX Specification\n\n## Information Architecture\n"

EVM_EXPERT = {ANALYST: address(expert_key(11)), PM: address(expert_key(12)), UX: address(expert_key(14))}
SOL_ARCHITECT = Keypair().pubkey()


@pytest.fixture
async def market(app: App, fake_github: FakeGitHub) -> AsyncIterator[Market]:
    m = await seed_planning(app, fake_github)
    for login, wallet in EVM_EXPERT.items():
        await set_wallet(m, login, "polygon", wallet)
    await set_wallet(m, ARCHITECT, "solana", str(SOL_ARCHITECT))
    await set_wallet(m, CLIENT, "polygon", address(CLIENT_KEY))  # Polygon keys an escrow by its funder
    yield m


async def project(m: Market) -> tuple[Any, Any]:
    [row] = await m.rows('SELECT status, "currentStage" FROM "Project" WHERE id = :p', p=m.project_id)
    return row


async def deliverables(m: Market) -> list[tuple[Any, ...]]:
    return await m.rows(
        'SELECT stage, status, "prNumber", "prAuthor", "expertId", "storyId", "approvedAt" IS NOT NULL '
        'FROM "Deliverable" ORDER BY "prNumber"'
    )


async def stage_check(app: App, fake: FakeGitHub, head: str) -> dict[str, Any]:
    await OutboxSender(app.runtime, writes_per_second=1000).run_until_idle()
    runs = [r for r in fake.check_runs.values() if r["name"] == "BMAD stage" and r["head_sha"] == head]
    assert len(runs) == 1, runs
    return runs[0]


async def fund_evm(m: Market, evm: EvmEnv, stage: str, login: str, amount: int) -> str:
    escrow_id = await stage_escrow(
        m, stage, chain="polygon", amount=amount, currency="USDC", contract_address=evm.escrow_address
    )
    await evm.fund(escrow_id, EVM_EXPERT[login], "USDC", amount, 500)
    return escrow_id


async def test_a_full_planning_phase_pays_each_stage_once_and_starts_development(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    m = market
    evm = await deploy_env(in_process_web3())
    sol = solana_env()
    sol_chain = sol.chain()
    chains = Chains(backends={"polygon": evm.chain(), "solana": sol_chain})
    releaser = Releaser(app.runtime, chains, poll_seconds=0.01, waiting_retry_seconds=0)
    amounts = {"analyst": 1_000_000, "pm": 2_000_003, "architect": 3_000_007, "ux": 4_000_009}
    escrows = {
        "analyst": await fund_evm(m, evm, "analyst", ANALYST, amounts["analyst"]),
        "pm": await fund_evm(m, evm, "pm", PM, amounts["pm"]),
        "ux": await fund_evm(m, evm, "ux", UX, amounts["ux"]),
    }
    arch_escrow = await stage_escrow(
        m, "architect", chain="solana", amount=amounts["architect"], currency="USDC-SPL", contract_address="-"
    )
    async with m.runtime.engine.begin() as conn:
        from sqlalchemy import text

        await conn.execute(
            text('UPDATE "Escrow" SET "contractAddress" = :a WHERE id = :e'),
            {"a": sol_chain.address_of(arch_escrow), "e": arch_escrow},
        )
    first = await sync_funding(app.runtime, chains)  # also creates the Solana escrow account
    assert sorted(first.funded) == sorted(escrows.values()) and first.not_funded == [arch_escrow]
    sol.fund(sol_chain.escrow_account(arch_escrow), amounts["architect"])
    assert (await sync_funding(app.runtime, chains)).funded == [arch_escrow]
    escrows["architect"] = arch_escrow

    # Analyst: the brief, reviewed then merged.
    brief = StagePr(m, 10, ANALYST, {"docs/brief.md": BRIEF})
    await app.deliver("pull_request", brief.event("opened"))
    assert await deliverables(m) == [("analyst", "SUBMITTED", 10, ANALYST, m.users[ANALYST], None, False)]
    assert (await stage_check(app, fake_github, brief.head))["status"] == "in_progress"
    await app.deliver("pull_request_review", brief.review(CLIENT))
    run = await stage_check(app, fake_github, brief.head)
    assert run["conclusion"] == "success" and "approved" in run["output"]["title"]
    await app.deliver("pull_request", brief.event("closed", merged=True, sender=CLIENT))
    assert await project(m) == ("PLANNING", "pm")

    # PM: a sharded PRD, merged first and approved at the merged head afterwards (either order).
    prd = StagePr(m, 11, PM, PRD_SHARDS)
    await complete_stage(app, prd, merge_first=True)
    assert await project(m) == ("PLANNING", "architect")

    # Architect (paid on Solana) and UX.
    await complete_stage(app, StagePr(m, 12, ARCHITECT, {"docs/architecture.md": ARCHITECTURE}))
    assert await project(m) == ("PLANNING", "ux")
    await complete_stage(app, StagePr(m, 13, UX, {"docs/front-end-spec.md": FRONT_END}))
    assert await project(m) == ("IN_DEVELOPMENT", "developer")

    assert [(d[0], d[1], d[6]) for d in await deliverables(m)] == [
        ("analyst", "APPROVED", True),
        ("pm", "APPROVED", True),
        ("architect", "APPROVED", True),
        ("ux", "APPROVED", True),
    ]
    planning_opportunities = await m.rows(
        "SELECT stage, status FROM \"Opportunity\" WHERE stage IN ('analyst', 'pm', 'architect', 'ux')"
    )
    assert sorted(planning_opportunities) == [
        ("analyst", "COMPLETED"),
        ("architect", "COMPLETED"),
        ("pm", "COMPLETED"),
        ("ux", "COMPLETED"),
    ]

    # Every stage paid exactly once, with exact balances, on both chains.
    await releaser.run_until_idle()
    for stage, login in (("analyst", ANALYST), ("pm", PM), ("ux", UX)):
        expert_share, _ = fee_split(amounts[stage], 500)
        assert await evm.balance("USDC", EVM_EXPERT[login]) == expert_share
    assert sol.balance(SOL_ARCHITECT) == fee_split(amounts["architect"], 500)[0]
    assert sorted(await m.rows('SELECT status FROM "Escrow"')) == [("RELEASED",)] * 4
    released = await m.rows("SELECT state, story_id, escrow_id FROM escrow_release_request ORDER BY created_at")
    assert sorted(r[2] for r in released) == sorted(escrows.values())
    assert {(r[0], r[1]) for r in released} == {("released", None)}
    assert len(await m.rows("SELECT id FROM stage_audit_log WHERE action = 'escrow_released'")) == 4

    # A merge delivered again, and the releaser run again, pay nothing more.
    await app.deliver("pull_request", brief.event("closed", merged=True, sender=CLIENT))
    await app.deliver("pull_request_review", brief.review(CLIENT))
    await releaser.run_until_idle()
    assert len(await m.rows("SELECT id FROM escrow_release_request")) == 4
    assert await evm.balance("USDC", EVM_EXPERT[ANALYST]) == fee_split(amounts["analyst"], 500)[0]
    final = await stage_check(app, fake_github, brief.head)
    assert final["conclusion"] == "success" and "paid" in final["output"]["summary"]


async def test_documents_at_the_merge_commit_with_sizes_types_and_the_expert(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    m = market
    brief = StagePr(m, 20, ANALYST, {"docs/brief.md": BRIEF})
    await complete_stage(app, brief)
    prd = StagePr(m, 21, PM, PRD_SHARDS)
    # The PR text may claim anything: sizes come from GitHub's contents API at the merge commit.
    await complete_stage(app, prd)
    rows = await m.rows(
        'SELECT filename, "storagePath", "mimeType", size, "documentType", "uploadedById" FROM "Document" '
        'ORDER BY "storagePath"'
    )
    expected = [
        ("brief.md", f"github:{REPO}@{brief.merge_sha}:docs/brief.md", "text/markdown", len(BRIEF), "brief", ANALYST),
        *[
            (path.rsplit("/", 1)[-1], f"github:{REPO}@{prd.merge_sha}:{path}", "text/markdown", len(content), "prd", PM)
            for path, content in sorted(PRD_SHARDS.items())
        ],
    ]
    assert rows == sorted([(*e[:5], m.users[e[5]]) for e in expected], key=lambda r: r[1])
    # Byte sizes, not characters: the epic shard holds a multi-byte character.
    epic = "docs/prd/epic-1-foundation.md"
    assert [r[3] for r in rows if r[1].endswith(epic)] == [len(PRD_SHARDS[epic])] != [len(PRD_SHARDS[epic].decode())]
    [(meta,)] = await m.rows("SELECT metadata FROM stage_audit_log WHERE action = 'stage_completed' AND stage = 'pm'")
    assert "merged" in str(meta)


async def test_reviews_by_anyone_but_the_client_or_a_named_reviewer_are_ignored(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    m = market
    brief = StagePr(m, 30, ANALYST, {"docs/brief.md": BRIEF})
    await app.deliver("pull_request", brief.event("opened"))
    await app.deliver("pull_request_review", brief.review(STRANGER))
    await app.deliver("pull_request_review", brief.review(ANALYST))  # the expert's own approval
    await app.deliver("pull_request_review", brief.review(PM))  # a PM of the project, but not named
    old_head = brief.head
    brief.push({"docs/brief.md": BRIEF + b"\n## Problem Statement\n"})
    await app.deliver("pull_request", brief.event("synchronize"))
    await app.deliver("pull_request_review", brief.review(CLIENT, commit=old_head))  # another head
    run = await stage_check(app, fake_github, brief.head)
    assert run["status"] == "in_progress" and "review not counted" in run["output"]["summary"].lower()
    await app.deliver("pull_request", brief.event("closed", merged=True, sender=CLIENT))
    assert [d[1] for d in await deliverables(m)] == ["SUBMITTED"]
    assert await project(m) == ("PLANNING", "analyst")
    reasons = [
        str(r[0])
        for r in await m.rows("SELECT metadata FROM stage_audit_log WHERE action = 'stage_review_not_counted'")
    ]
    assert len(reasons) == 4
    assert any("neither the project's client" in r for r in reasons)
    assert any("cannot review their own deliverable" in r for r in reasons)
    assert any("not of the PR's current head" in r for r in reasons)
    assert await m.scalar('SELECT status FROM "Opportunity" WHERE id = :o', o=await opportunity_of(m, "analyst")) == (
        "OPEN"
    )

    # The client approves the merged head: complete.
    await app.deliver("pull_request_review", brief.review(CLIENT))
    assert await project(m) == ("PLANNING", "pm")


async def test_a_pm_the_client_names_in_the_configuration_reviews_like_the_client(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    m = market
    fake_github.put_file(
        REPO, "main", ".github/bmad-marketplace.yml", f"stage_reviewers: [{PM}, {STRANGER}]\n".encode()
    )
    brief = StagePr(m, 31, ANALYST, {"docs/brief.md": BRIEF})
    await app.deliver("pull_request", brief.event("opened"))
    await app.deliver("pull_request_review", brief.review(STRANGER))  # named, but not a PM/architect of it
    assert [d[1] for d in await deliverables(m)] == ["SUBMITTED"]
    await app.deliver("pull_request_review", brief.review(PM, "changes_requested", body="Add the problem statement"))
    assert await m.rows('SELECT status, "reviewNotes", "reviewedAt" IS NOT NULL FROM "Deliverable"') == [
        ("CHANGES_REQUESTED", "Add the problem statement", True)
    ]
    assert (await stage_check(app, fake_github, brief.head))["conclusion"] == "failure"
    brief.push({"docs/brief.md": BRIEF + b"\n## Problem Statement\n"})
    await app.deliver("pull_request", brief.event("synchronize"))
    assert [d[1] for d in await deliverables(m)] == ["SUBMITTED"]
    await complete_stage(app, brief, reviewer=PM)
    assert await project(m) == ("PLANNING", "pm")


async def test_a_pr_from_an_expert_without_the_accepted_bid_is_refused(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    m = market
    intruder = StagePr(m, 40, OTHER_DEV, {"docs/brief.md": BRIEF})
    await app.deliver("pull_request", intruder.event("opened"))
    await app.deliver("pull_request_review", intruder.review(CLIENT))
    await app.deliver("pull_request", intruder.event("closed", merged=True, sender=CLIENT))
    assert await deliverables(m) == []
    assert await m.rows('SELECT id FROM "Document"') == []
    assert await m.rows("SELECT id FROM escrow_release_request") == []
    assert await project(m) == ("PLANNING", "analyst")
    run = await stage_check(app, fake_github, intruder.head)
    assert run["conclusion"] == "failure"
    assert "not the expert of the accepted bid" in run["output"]["summary"]
    # The PM (who holds an accepted bid, on another stage) cannot deliver the analyst's brief either,
    # nor can the analyst deliver the PRD while the project is at the analyst stage.
    await app.deliver("pull_request", StagePr(m, 41, PM, {"docs/brief.md": BRIEF}).event("opened"))
    await app.deliver("pull_request", StagePr(m, 42, ANALYST, PRD_SHARDS).event("opened"))
    assert await deliverables(m) == []
    refusals = [r[0] for r in await m.rows("SELECT refusal FROM stage_pull_request ORDER BY pr_number")]
    assert "not the expert of the accepted bid" in refusals[1] and "current stage is analyst" in refusals[2]


async def test_a_project_cancelled_part_way_stops_and_its_funded_escrows_are_refunded(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    m = market
    evm = await deploy_env(in_process_web3())
    chains = Chains(backends={"polygon": evm.chain()})
    releaser = Releaser(app.runtime, chains, poll_seconds=0.01, waiting_retry_seconds=0)
    analyst_escrow = await fund_evm(m, evm, "analyst", ANALYST, 1_000_000)
    pm_escrow = await fund_evm(m, evm, "pm", PM, 2_000_000)
    await sync_funding(app.runtime, chains)
    await complete_stage(app, StagePr(m, 50, ANALYST, {"docs/brief.md": BRIEF}))
    await releaser.run_until_idle()
    assert await evm.balance("USDC", EVM_EXPERT[ANALYST]) == fee_split(1_000_000, 500)[0]

    prd = StagePr(m, 51, PM, PRD_SHARDS)
    await app.deliver("pull_request", prd.event("opened"))
    async with m.runtime.engine.begin() as conn:
        from sqlalchemy import text

        await conn.execute(text("UPDATE \"Project\" SET status = 'CANCELLED' WHERE id = :p"), {"p": m.project_id})
    await app.deliver("pull_request_review", prd.review(CLIENT))
    await app.deliver("pull_request", prd.event("closed", merged=True, sender=CLIENT))
    await releaser.run_until_idle()
    assert [d[1] for d in await deliverables(m)] == ["APPROVED", "SUBMITTED"]
    assert await project(m) == ("CANCELLED", "pm")
    assert len(await m.rows("SELECT id FROM escrow_release_request")) == 1
    assert await evm.balance("USDC", EVM_EXPERT[PM]) == 0
    run = await stage_check(app, fake_github, prd.head)
    assert run["conclusion"] == "failure" and "CANCELLED" in run["output"]["summary"]

    result = await refund(app.runtime, chains, pm_escrow, poll_seconds=0.01)
    assert result.tx_hash.startswith("0x")
    assert await m.rows('SELECT status FROM "Escrow" WHERE id = :e', e=pm_escrow) == [("REFUNDED",)]
    assert await m.rows('SELECT status FROM "Escrow" WHERE id = :e', e=analyst_escrow) == [("RELEASED",)]


async def test_the_client_rates_a_stage_expert_once_after_the_stage_and_status_shows_the_stages(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    from tests.comments import Comments
    from tests.test_bot_commands import reply, say

    m = market
    comments = Comments(fake_github)
    early = comments.created(f"/bmad rate @{ANALYST} 5 thorough brief", CLIENT)
    await say(app, early)
    assert "not done yet" in reply(fake_github, early)

    brief = StagePr(m, 60, ANALYST, {"docs/brief.md": BRIEF})
    await complete_stage(app, brief)
    await app.deliver("pull_request", StagePr(m, 61, PM, PRD_SHARDS).event("opened"))
    by_expert = comments.created(f"/bmad rate @{PM} 5 me", PM)
    rated = comments.created(f"/bmad rate @{ANALYST} 4 thorough brief", CLIENT)
    again = comments.created(f"/bmad rate @{ANALYST} 1 changed my mind", CLIENT)
    pm_early = comments.created(f"/bmad rate @{PM} 5 fast", CLIENT)
    status = comments.created("/bmad status", PM)
    for data in (by_expert, rated, again, pm_early, status):
        await say(app, data)
    assert "rated 4/5" in reply(fake_github, rated)
    assert "already rated" in reply(fake_github, again)
    assert "not done yet" in reply(fake_github, pm_early)
    assert "only the project's client" in reply(fake_github, by_expert)
    assert await m.rows('SELECT stage, rating, "expertId", "clientId" FROM "Rating"') == [
        ("analyst", 4, m.users[ANALYST], m.users[CLIENT])
    ]
    shown = reply(fake_github, status)
    assert "Project: PLANNING, current stage pm" in shown
    assert f"| analyst | @{ANALYST} | COMPLETED | PR #60 APPROVED | release requested |" in shown
    assert f"| pm | @{PM} | OPEN | PR #61 SUBMITTED | no escrow yet |" in shown
    assert f"| architect | @{ARCHITECT} | OPEN | - | no escrow yet |" in shown


async def set_stage(m: Market, stage: str) -> None:
    async with m.runtime.engine.begin() as conn:
        from sqlalchemy import text

        await conn.execute(
            text('UPDATE "Project" SET "currentStage" = :s WHERE id = :p'), {"s": stage, "p": m.project_id}
        )


async def test_v6_planning_artifacts_are_read_where_v6_keeps_them(app: App, fake_github: FakeGitHub) -> None:
    m = await seed_planning(app, fake_github, stages=())
    await set_stage(m, "pm")
    fake_github.put_file(REPO, "main", "_bmad/bmm/config.yaml", b'output_folder: "{project-root}/_bmad-output"\n')
    prd = b"# Widgets - Product Requirements Document\n\n## Functional Requirements\n"
    pr = StagePr(m, 70, PM, {"_bmad-output/planning-artifacts/prd.md": prd})
    await complete_stage(app, pr)
    assert await m.rows('SELECT filename, size, "documentType", "storagePath" FROM "Document"') == [
        ("prd.md", len(prd), "prd", f"github:{REPO}@{pr.merge_sha}:_bmad-output/planning-artifacts/prd.md")
    ]
    # No planning stage has an Opportunity after pm here: development begins.
    assert await project(m) == ("IN_DEVELOPMENT", "developer")


async def test_the_last_story_done_completes_a_project_in_development(app: App, fake_github: FakeGitHub) -> None:
    from tests.chain.market import done_story

    m = await seed_planning(app, fake_github, stages=())
    await set_stage(m, "pm")
    await complete_stage(app, StagePr(m, 80, PM, {"docs/prd.md": b"# PRD\n"}))
    assert await project(m) == ("IN_DEVELOPMENT", "developer")
    draft = {STORY_PATH.replace("1.3", "1.4"): story_file("Draft", number=4)}
    await app.deliver("push", m.push("main", draft, PM))
    await done_story(app, m, number=3)
    # Another story is still a draft: the project is not complete.
    assert await project(m) == ("IN_DEVELOPMENT", "developer")
    await done_story(app, m, number=4)
    assert await project(m) == ("COMPLETED", "developer")
    [(meta,)] = await m.rows("SELECT metadata FROM stage_audit_log WHERE action = 'project_completed'")
    assert "every story" in str(meta)


async def test_a_stage_release_is_requested_once_whatever_asks_again(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    from github_app.services.stages import request_stage_release

    m = market
    await complete_stage(app, StagePr(m, 90, ANALYST, {"docs/brief.md": BRIEF}))
    opportunity = await opportunity_of(m, "analyst")
    async with m.runtime.sessionmaker() as s, s.begin():
        await request_stage_release(s, opportunity, m.users[ANALYST], None, "asked again")
    assert await m.rows("SELECT opportunity_id, story_id, reason FROM escrow_release_request") == [
        (opportunity, None, "PR #90 was merged and is approved at its head")
    ]


async def test_drafts_wait_and_a_late_opened_delivery_never_reopens_a_closed_pr(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    m = market
    brief = StagePr(m, 95, ANALYST, {"docs/brief.md": BRIEF})
    opened = brief.event("opened", draft=True)
    await app.deliver("pull_request", opened)
    assert await deliverables(m) == []
    ready = brief.event("ready_for_review")
    closed = brief.event("closed")
    late = brief.event("synchronize", updated_at="2026-10-01T00:00:00Z")  # older than the close
    await app.deliver("pull_request", ready)
    await app.deliver("pull_request", closed)
    await app.deliver("pull_request", late)
    assert [d[1] for d in await deliverables(m)] == ["REJECTED"]
    also = StagePr(m, 96, ANALYST, {"docs/brief.md": BRIEF, "docs/prd.md": b"# PRD\n"})
    await app.deliver("pull_request", also.event("opened"))
    assert [d[1] for d in await deliverables(m)] == ["REJECTED"]
    run = await stage_check(app, fake_github, also.head)
    assert run["conclusion"] == "failure" and "also changes the documents of the pm stage" in run["output"]["summary"]


async def test_a_dismissed_approval_takes_the_deliverable_back_and_the_merge_completes_nothing(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    m = market
    brief = StagePr(m, 97, ANALYST, {"docs/brief.md": BRIEF})
    await app.deliver("pull_request", brief.event("opened"))
    approval = brief.review(CLIENT)
    await app.deliver("pull_request_review", approval)
    assert [d[1] for d in await deliverables(m)] == ["APPROVED"]
    # A repository rule (or a bot) dismisses the approval: GitHub no longer counts it, nor does the app.
    dismissed = m.review(
        brief.number,
        reviewer=CLIENT,
        action="dismissed",
        review_id=approval["review"]["id"],
        commit_id=brief.head,
        head_sha=brief.head,
        author=ANALYST,
        sender="github-actions[bot]",
    )
    dismissed["sender"]["type"] = "Bot"
    await app.deliver("pull_request_review", dismissed)
    assert [d[1] for d in await deliverables(m)] == ["SUBMITTED"]
    run = await stage_check(app, fake_github, brief.head)
    assert run["status"] == "in_progress"
    await app.deliver("pull_request", brief.event("closed", merged=True, sender=CLIENT))
    assert [d[1] for d in await deliverables(m)] == ["SUBMITTED"]
    assert await project(m) == ("PLANNING", "analyst")
    assert await m.rows("SELECT id FROM escrow_release_request") == []
    assert await m.rows('SELECT id FROM "Document"') == []
    actions = [r[0] for r in await m.rows("SELECT action FROM stage_audit_log ORDER BY created_at")]
    assert "stage_approval_dismissed" in actions
    # Approved again at the merged head, it completes.
    await app.deliver("pull_request_review", brief.review(CLIENT))
    assert await project(m) == ("PLANNING", "pm")


async def cancel(m: Market) -> None:
    async with m.runtime.engine.begin() as conn:
        from sqlalchemy import text

        await conn.execute(text("UPDATE \"Project\" SET status = 'CANCELLED' WHERE id = :p"), {"p": m.project_id})


async def test_a_cancelled_project_moves_no_story_and_pays_nothing_and_its_prs_say_why(
    app: App, fake_github: FakeGitHub
) -> None:
    from tests.comments import Comments
    from tests.test_bot_commands import reply, say

    m = await seed_market(app.runtime, fake_github)
    await app.deliver("push", m.push("main", {STORY_PATH: story_file("Approved")}, PM))
    story_id = str(await m.scalar('SELECT id FROM "Story" WHERE "storyNumber" = 3'))
    await m.accept_bid(story_id, DEV)
    sha, branch, title = m.sha(), "story/1.3-work", "Story 1.3: work"
    await app.deliver("pull_request", m.pr("opened", 3, head_sha=sha, branch=branch, title=title))
    assert await m.scalar('SELECT status FROM "Story" WHERE id = :s', s=story_id) == "READY_FOR_REVIEW"

    await cancel(m)
    # QA's passing gate and the merge would make the story DONE and request its payout.
    await app.deliver("push", m.push(branch, {GATE_PATH: gate_file("PASS")}, QA))
    await app.deliver(
        "pull_request", m.pr("closed", 3, merged=True, head_sha=sha, branch=branch, title=title, sender=PM)
    )
    blocked = Comments(fake_github).created("/bmad block 1.3 waiting", CLIENT)
    await say(app, blocked)
    assert await m.scalar('SELECT status FROM "Story" WHERE id = :s', s=story_id) == "READY_FOR_REVIEW"
    assert await m.rows("SELECT id FROM escrow_release_request") == []
    assert "CANCELLED" in reply(fake_github, blocked)
    [run] = [r for r in fake_github.check_runs.values() if r["name"] == "BMAD story" and r["head_sha"] == sha]
    assert run["conclusion"] == "failure" and "CANCELLED" in run["output"]["summary"]
    [comment] = [c for c in fake_github.comments.values() if c["issue_number"] == 3 and c["user"]["type"] == "Bot"]
    assert "CANCELLED" in comment["body"]
    refused = await m.rows(
        'SELECT metadata FROM "StoryAuditLog" WHERE "storyId" = :s AND action = \'transition_refused\'', s=story_id
    )
    assert refused and all("CANCELLED" in str(r[0]) for r in refused)


async def test_stage_prs_get_the_stage_check_run_and_no_story_check_run(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    m = market

    def story_runs(head: str) -> list[dict[str, Any]]:
        return [r for r in fake_github.check_runs.values() if r["name"] == "BMAD story" and r["head_sha"] == head]

    brief = StagePr(m, 98, ANALYST, {"docs/brief.md": BRIEF})
    await app.deliver("pull_request", brief.event("opened"))
    intruder = StagePr(m, 99, OTHER_DEV, {"docs/brief.md": BRIEF})
    await app.deliver("pull_request", intruder.event("opened"))
    assert (await stage_check(app, fake_github, brief.head))["status"] == "in_progress"
    assert (await stage_check(app, fake_github, intruder.head))["conclusion"] == "failure"
    assert story_runs(brief.head) == [] and story_runs(intruder.head) == []
    brief.push({"docs/brief.md": BRIEF + b"\n## Problem Statement\n"})
    await app.deliver("pull_request", brief.event("synchronize"))
    await stage_check(app, fake_github, brief.head)
    assert story_runs(brief.head) == []

    # A plain PR still gets the story's run.
    await app.deliver("pull_request", m.pr("opened", 100, title="Fix the footer", branch="fix-footer"))
    await OutboxSender(app.runtime, writes_per_second=1000).run_until_idle()
    [plain] = [r for r in fake_github.check_runs.values() if r["name"] == "BMAD story"]
    assert plain["output"]["title"] == "Not linked to a story"

    # A draft is no deliverable yet and was shown as a plain PR: once it is one, that run says so.
    draft = StagePr(m, 101, ANALYST, {"docs/brief.md": BRIEF}, branch="docs/brief-v2")
    await app.deliver("pull_request", brief.event("closed"))
    await app.deliver("pull_request", draft.event("opened", draft=True))
    await OutboxSender(app.runtime, writes_per_second=1000).run_until_idle()
    await app.deliver("pull_request", draft.event("ready_for_review"))
    assert (await stage_check(app, fake_github, draft.head))["status"] == "in_progress"
    [was_plain] = story_runs(draft.head)
    assert was_plain["conclusion"] == "neutral" and "BMAD stage" in was_plain["output"]["summary"]


async def test_the_client_refunds_a_stage_escrow_with_the_story_refund_command(
    app: App, market: Market, fake_github: FakeGitHub
) -> None:
    from github_app.escrow.requested_refunds import RequestedRefunds
    from tests.comments import Comments
    from tests.test_bot_commands import reactions, reply, say

    m = market
    comments = Comments(fake_github)
    evm = await deploy_env(in_process_web3())
    chains = Chains(backends={"polygon": evm.chain()})
    await fund_evm(m, evm, "analyst", ANALYST, 1_000_000)
    pm_escrow = await fund_evm(m, evm, "pm", PM, 2_000_000)
    await sync_funding(app.runtime, chains)
    await complete_stage(app, StagePr(m, 110, ANALYST, {"docs/brief.md": BRIEF}))
    await app.deliver("pull_request", StagePr(m, 111, PM, PRD_SHARDS).event("opened"))
    await cancel(m)

    by_expert = comments.created("/bmad refund pm", PM)
    completed = comments.created("/bmad refund analyst", CLIENT)
    no_stage = comments.created("/bmad refund ux", CLIENT)
    asked = comments.created("/bmad refund pm", CLIENT)
    twice = comments.created("/bmad refund PM", CLIENT)
    for data in (by_expert, completed, no_stage, asked, twice):
        await say(app, data)
    assert "only the project's client may" in reply(fake_github, by_expert)
    assert "the analyst stage is COMPLETED" in reply(fake_github, completed)
    assert "has no escrow to refund" in reply(fake_github, no_stage)
    assert "refund of escrow" in reply(fake_github, asked) and "never released to the expert" in reply(
        fake_github, asked
    )
    assert "already requested" in reply(fake_github, twice)
    assert await m.rows("SELECT escrow_id, story_id, opportunity_id FROM refund_request") == [
        (pm_escrow, None, await opportunity_of(m, "pm"))
    ]
    [(meta,)] = await m.rows("SELECT metadata FROM stage_audit_log WHERE action = 'refund_requested'")
    assert pm_escrow in str(meta)

    await RequestedRefunds(app.runtime, chains, chain_poll_seconds=0.01).run_until_idle()
    assert await m.rows('SELECT status FROM "Escrow" WHERE id = :e', e=pm_escrow) == [("REFUNDED",)]
    assert await evm.balance("USDC", address(CLIENT_KEY)) == 2_000_000
    assert await evm.balance("USDC", EVM_EXPERT[PM]) == 0
    await say(app, comments.created("/bmad status", CLIENT))  # brings the outbox along
    assert "refunded: [transaction]" in reply(fake_github, asked)
    assert reactions(fake_github, asked) == ["+1"]
