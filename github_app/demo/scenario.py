"""`bmad-app demo`: the whole product on embedded parts, told as a timeline.

The real `serve` (HTTP ingress, inbox worker, outbox sender, funding check, release worker) runs in this
process on a temporary SQLite file, against the fake GitHub on 127.0.0.1, with py-evm (the escrow
contract deployed, a USDC-like token) and LiteSVM (a USDC-like mint) in-process. Every GitHub event is
a signed delivery posted to the real webhook endpoint; nothing is called behind the app's back except
what the marketplace and its users do outside GitHub (accept a bid, fund an escrow).

Two stories: 1.1 goes the long way (pushed as a draft, approved with `/bmad validate`, a FAIL gate, a
fix, a PASS gate, the merge) and is paid on Polygon; 1.2 is pushed approved, passes and is paid on
Solana. Each step waits for what it must cause; a step whose effect does not show within its time
fails the demo.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import text

from github_app.config import Settings
from github_app.demo.fake_github import FakeGitHub
from github_app.demo.payloads import Payloads
from github_app.receive import signed_headers

REPO = "acme/widgets"
INSTALLATION_ID = 4242
APP_ID = 900_001
CLIENT, PM, DEV, QA = "cleo-client", "pat-pm", "dana-dev", "quinn-qa"
AMOUNT = 1_500 * 10**6  # 1,500 USDC (6 decimals)
FEE_BPS = 500
STEP_SECONDS = 20.0


class StepFailed(Exception):
    pass


@dataclass
class DemoResult:
    ok: bool
    failed_step: str | None = None
    lines: list[str] = field(default_factory=list)
    balances: dict[str, dict[str, int]] = field(default_factory=dict)  # chain -> who -> base units
    releases: dict[str, str] = field(default_factory=dict)  # chain -> release transaction


def story_file(number: int, status: str, title: str) -> str:
    return f"""# Story 1.{number}: {title}

## Status
{status}

## Story
**As a** shopper,
**I want** {title.lower()},
**so that** my widgets are mine.

## Acceptance Criteria
1. It works for a signed-in shopper
2. It refuses everyone else

## Tasks / Subtasks
- [ ] Build it (AC: 1, 2)
"""


def gate_file(number: int, gate: str, reason: str) -> str:
    return (
        f'schema: 1\nstory: "1.{number}"\nstory_title: "Story 1.{number}"\ngate: {gate}\n'
        f'status_reason: "{reason}"\nreviewer: "Quinn (Test Architect)"\n'
    )


class Demo:
    def __init__(self, workdir: Path, out: Callable[[str], None]) -> None:
        self.workdir = workdir
        self.out = out
        self.result = DemoResult(ok=False)
        self.secret = secrets.token_hex(20)
        self.users: dict[str, str] = {}
        self.printed_audit: set[str] = set()
        self.stories: dict[int, str] = {}

    # -- output ---------------------------------------------------------------------------------------

    def say(self, line: str = "") -> None:
        self.result.lines.append(line)
        self.out(line)

    # -- set-up ---------------------------------------------------------------------------------------

    async def setup(self) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        from github_app.db import migrate
        from github_app.demo.evm_env import deploy_env, in_process_web3
        from github_app.demo.solana_env import solana_env

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        public_pem = (
            key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )
        self.fake = FakeGitHub(APP_ID, public_pem)
        self.fake.add_repo(REPO)
        self.fake.add_installation(INSTALLATION_ID, [REPO])
        await self.fake.start()
        self.payloads = Payloads(self.fake, REPO, INSTALLATION_ID)

        self.database_url = f"sqlite+aiosqlite:///{self.workdir / 'demo.sqlite3'}"
        await asyncio.to_thread(migrate.upgrade, self.database_url)
        self.evm = await deploy_env(in_process_web3())
        self.sol = solana_env()
        self.settings = Settings(
            database_url=self.database_url,
            github_app_id=APP_ID,
            github_private_key=private_pem,
            webhook_secrets=(self.secret,),
            github_api_url=self.fake.url,
            github_url=self.fake.url,
            port=0,
            log_level="ERROR",
            worker_poll_seconds=0.05,
            worker_retry_base_seconds=0.2,
            worker_burst_defer_seconds=0,
            github_writes_per_second=50,
            escrow_sync_seconds=0.2,
            polygon_escrow_contract=self.evm.escrow_address,
            polygon_explorer_url="https://amoy.polygonscan.com",
            solana_explorer_url="https://explorer.solana.com",
        )
        self.say(f"GitHub (fake) at {self.fake.url}; repository {REPO}; app {APP_ID}")
        self.say(f"Polygon (py-evm): escrow contract {self.evm.escrow_address}, USDC {self.evm.tokens['USDC']}")
        self.say(f"Solana (LiteSVM): USDC-SPL mint {self.sol.mint}")
        self.say(f"Database: {self.workdir / 'demo.sqlite3'}")

    async def seed(self) -> None:
        """The marketplace's side: people, a project linked to the repository, the PM's and QA's won bids,
        the developer's and client's wallets."""
        from github_app.db.app_tables import Wallet
        from github_app.db.enums import BidStatus, Role, Stage
        from github_app.db.models import Bid, Opportunity, Project, User
        from github_app.db.types import new_id, utcnow
        from github_app.demo.evm_env import CLIENT_KEY, address, expert_key

        self.expert_evm = address(expert_key(1))
        self.client_evm = address(CLIENT_KEY)
        from solders.keypair import Keypair

        self.expert_sol = Keypair().pubkey()
        async with self.runtime.sessionmaker() as s, s.begin():
            for login, role, name in (
                (CLIENT, Role.CLIENT, "Cleo (client)"),
                (PM, Role.PM, "Pat (PM)"),
                (DEV, Role.DEVELOPER, "Dana (developer)"),
                (QA, Role.QA, "Quinn (QA)"),
            ):
                u = User(id=new_id(), email=f"{login}@example.com", name=name, github_username=login, role=role)
                s.add(u)
                self.users[login] = u.id
            await s.flush()
            project = Project(
                id=new_id(),
                client_id=self.users[CLIENT],
                name="Widgets",
                repo_url=f"https://github.com/{REPO}",
                repo_name=REPO,
            )
            s.add(project)
            await s.flush()
            self.project_id = project.id
            for login, stage in ((PM, Stage.pm), (QA, Stage.qa)):
                opp = Opportunity(
                    id=new_id(),
                    project_id=project.id,
                    stage=stage,
                    title=f"{stage.value} for Widgets",
                    description="-",
                    budget={"min": 1, "max": 2, "currency": "USDC"},
                )
                s.add(opp)
                await s.flush()
                bid = Bid(
                    id=new_id(),
                    opportunity_id=opp.id,
                    expert_id=self.users[login],
                    amount=1,
                    currency="USDC",
                    proposal="-",
                    status=BidStatus.ACCEPTED,
                )
                s.add(bid)
                await s.flush()
                opp.accepted_bid_id = bid.id
            for login, chain, wallet in (
                (DEV, "polygon", self.expert_evm),
                (DEV, "solana", str(self.expert_sol)),
                (CLIENT, "polygon", self.client_evm),
                (CLIENT, "solana", str(self.sol.client.pubkey())),
            ):
                s.add(Wallet(user_id=self.users[login], chain=chain, address=wallet, updated_at=utcnow()))
        self.say(f"Marketplace: client {CLIENT}, PM {PM}, developer {DEV}, QA {QA}; project Widgets -> {REPO}")

    # -- the app ----------------------------------------------------------------------------------------

    async def start_app(self) -> None:
        from github_app.escrow.backends import Chains
        from github_app.runtime import Runtime
        from github_app.server import run_server

        self.runtime = await Runtime.create(self.settings)  # the demo's own reads of the database
        self.stop = asyncio.Event()
        port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        chains = Chains(backends={"polygon": self.evm.chain(confirmations=1), "solana": self.sol.chain()})
        self.server = asyncio.create_task(
            run_server(self.settings, stop=self.stop, started=port.set_result, chains=chains), name="demo-serve"
        )
        waiting: set[asyncio.Future[Any]] = {port, self.server}
        done, _ = await asyncio.wait(waiting, timeout=STEP_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        if port not in done:
            if self.server in done:
                self.server.result()
            raise StepFailed("the app did not start")
        self.url = f"http://127.0.0.1:{port.result()}"
        self.http = aiohttp.ClientSession()
        self.say(f"bmad-app serve listening on {self.url} (HTTP ingress, inbox worker, outbox, escrow workers)")

    async def close(self) -> None:
        if hasattr(self, "http"):
            await self.http.close()
        if hasattr(self, "server"):
            self.stop.set()
            try:
                await asyncio.wait_for(self.server, 30)
            except Exception:  # noqa: BLE001 - reported by the step that failed
                pass
        if hasattr(self, "runtime"):
            await self.runtime.close()
        if hasattr(self, "fake"):
            await self.fake.close()

    # -- steps ------------------------------------------------------------------------------------------

    async def deliver(self, event: str, data: dict[str, Any], what: str) -> str:
        body = json.dumps(data).encode()
        delivery_id = str(uuid.uuid4())
        headers = signed_headers(event, body, self.secret, delivery_id)
        async with self.http.post(self.url + "/api/github/webhooks", data=body, headers=headers) as resp:
            status = resp.status
        action = f".{data['action']}" if "action" in data else ""
        self.say(f"  -> {event}{action:<11} {what}  [delivery {delivery_id[:8]}: HTTP {status}]")
        if status != 202:
            raise StepFailed(f"the app answered {status} to the {event} delivery")
        await self.until(f"delivery {delivery_id[:8]} processed", lambda: self._delivery_done(delivery_id))
        return delivery_id

    async def _delivery_done(self, delivery_id: str) -> bool:
        state = await self.scalar("SELECT state FROM webhook_inbox WHERE delivery_id = :d", d=delivery_id)
        if state == "dead":
            raise StepFailed(f"delivery {delivery_id} failed for good")
        return bool(state == "done")

    async def until(self, what: str, condition: Callable[[], Awaitable[bool]], seconds: float = STEP_SECONDS) -> None:
        deadline = time.monotonic() + seconds
        while not await condition():
            if time.monotonic() > deadline:
                raise StepFailed(what)
            await asyncio.sleep(0.05)

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.runtime.engine.connect() as conn:
            return (await conn.execute(text(sql), params)).scalar()

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        async with self.runtime.engine.connect() as conn:
            return list((await conn.execute(text(sql), params)).all())

    async def story_status(self, number: int) -> str | None:
        value = await self.scalar('SELECT status FROM "Story" WHERE "storyNumber" = :n', n=number)
        return None if value is None else str(value)

    async def expect_status(self, number: int, status: str) -> None:
        async def reached() -> bool:
            return await self.story_status(number) == status

        await self.until(f"story 1.{number} reaching {status}", reached)
        await self.transitions()

    async def transitions(self) -> None:
        """The audit rows written since the last call: each state change, as the app recorded it."""
        for audit_id, number, action, before, after in await self.rows(
            'SELECT a.id, s."storyNumber", a.action, a."fromStatus", a."toStatus" FROM "StoryAuditLog" a '
            'JOIN "Story" s ON s.id = a."storyId" ORDER BY a."createdAt", a.id'
        ):
            if audit_id in self.printed_audit:
                continue
            self.printed_audit.add(audit_id)
            change = f"{before or '-'} -> {after}" if after and before != after else ""
            self.say(f"       story 1.{number}: {action:<26} {change}")

    async def expect_check_run(self, pr: int, number: int, conclusion: str) -> None:
        head = self.payloads.pr_heads[pr]

        async def shown() -> bool:
            return any(
                r.get("head_sha") == head and r.get("conclusion") == conclusion for r in self.fake.check_runs.values()
            )

        await self.until(f"the check run of story 1.{number} concluding {conclusion}", shown)
        await self.transitions()
        [run] = [r for r in self.fake.check_runs.values() if r.get("head_sha") == head]
        self.say(f"       check run '{run['name']}' on {head[:8]}: {conclusion} ({run['output']['title']})")

    async def accept_bid(self, number: int) -> None:
        """The marketplace: the developer's bid on the story's published opportunity is accepted."""
        from github_app.db.enums import BidStatus
        from github_app.db.models import Bid, Opportunity
        from github_app.db.types import new_id

        story_id = self.stories[number]

        async def published() -> bool:
            return (
                await self.scalar("SELECT opportunity_id FROM story_opportunity WHERE story_id = :s", s=story_id)
            ) is not None

        await self.until(f"story 1.{number} published to the marketplace", published)
        opp_id = await self.scalar("SELECT opportunity_id FROM story_opportunity WHERE story_id = :s", s=story_id)
        async with self.runtime.sessionmaker() as s, s.begin():
            bid = Bid(
                id=new_id(),
                opportunity_id=opp_id,
                expert_id=self.users[DEV],
                amount=AMOUNT,
                currency="USDC",
                proposal="I will build it",
                status=BidStatus.ACCEPTED,
            )
            s.add(bid)
            await s.flush()
            opp = await s.get(Opportunity, opp_id)
            assert opp is not None
            opp.accepted_bid_id = bid.id
        self.say(f"  marketplace: {DEV}'s bid on story 1.{number} accepted")

    async def create_escrow(self, number: int, chain: str) -> str:
        from github_app.db.enums import EscrowStatus
        from github_app.db.models import Escrow
        from github_app.db.types import new_id

        story_id = self.stories[number]
        opp_id = await self.scalar("SELECT opportunity_id FROM story_opportunity WHERE story_id = :s", s=story_id)
        escrow_id = new_id()
        solana = chain == "solana"
        address = self.sol.chain().address_of(escrow_id) if solana else self.evm.escrow_address
        async with self.runtime.sessionmaker() as s, s.begin():
            s.add(
                Escrow(
                    id=escrow_id,
                    project_id=self.project_id,
                    opportunity_id=opp_id,
                    client_id=self.users[CLIENT],
                    expert_id=self.users[DEV],
                    amount=str(AMOUNT),
                    currency="USDC-SPL" if solana else "USDC",
                    blockchain=chain,
                    platform_fee=FEE_BPS,
                    status=EscrowStatus.PENDING,
                    contract_address=address,
                )
            )
        return escrow_id

    async def escrow_status(self, escrow_id: str) -> str:
        return str(await self.scalar('SELECT status FROM "Escrow" WHERE id = :e', e=escrow_id))

    async def fund_polygon(self, number: int) -> str:
        escrow_id = await self.create_escrow(number, "polygon")
        tx = await self.evm.fund(escrow_id, self.expert_evm, "USDC", AMOUNT, FEE_BPS)
        self.say(f"  client: funds story 1.{number}'s escrow on Polygon with {AMOUNT / 10**6:,.2f} USDC (tx {tx[:10]})")
        await self.until("the Polygon escrow seen funded", lambda: self._is(escrow_id, "FUNDED"))
        self.say(f"       escrow {escrow_id[:8]} (Polygon): PENDING -> FUNDED, read from the contract")
        return escrow_id

    async def fund_solana(self, number: int) -> str:
        escrow_id = await self.create_escrow(number, "solana")
        account = self.sol.chain().escrow_account(escrow_id)

        async def opened() -> bool:
            return self.sol.svm.get_account(account) is not None

        await self.until("the app opening the Solana escrow account", opened)
        self.sol.fund(account, AMOUNT)
        self.say(f"  client: funds story 1.{number}'s escrow on Solana with {AMOUNT / 10**6:,.2f} USDC-SPL")
        await self.until("the Solana escrow seen funded", lambda: self._is(escrow_id, "FUNDED"))
        self.say(f"       escrow {escrow_id[:8]} (Solana): PENDING -> FUNDED, read from its account")
        return escrow_id

    async def _is(self, escrow_id: str, status: str) -> bool:
        return await self.escrow_status(escrow_id) == status

    async def balances(self) -> dict[str, dict[str, int]]:
        from solders.pubkey import Pubkey

        from github_app.demo.evm_env import TREASURY_KEY, address

        treasury_evm = address(TREASURY_KEY)
        return {
            "polygon": {
                "expert": await self.evm.balance("USDC", self.expert_evm),
                "treasury": await self.evm.balance("USDC", treasury_evm),
                "escrow": await self.evm.balance("USDC", self.evm.escrow_address),
            },
            "solana": {
                "expert": self.sol.balance(self.expert_sol),
                "treasury": self.sol.balance(Pubkey.from_string(str(self.sol.treasury))),
            },
        }

    # -- the story ----------------------------------------------------------------------------------------

    async def run(self) -> None:
        p = self.payloads
        self.say("")
        self.say("Timeline")
        await self.deliver("installation", p.installation_created(CLIENT), f"{CLIENT} installs the app on {REPO}")

        # Story 1.1: a draft, approved by the PM's command.
        path1 = "docs/stories/1.1.sign-in.md"
        await self.deliver(
            "push", p.push("main", {path1: story_file(1, "Draft", "Sign in")}, PM, "Story 1.1"), f"{PM} pushes {path1}"
        )
        await self.expect_status(1, "DRAFT")
        self.stories[1] = str(await self.scalar('SELECT id FROM "Story" WHERE "storyNumber" = 1'))
        await self.deliver("issue_comment", p.comment(1, "/bmad validate 1.1 score=9", PM), f"{PM}: /bmad validate 1.1")
        await self.expect_status(1, "APPROVED")
        await self.accept_bid(1)

        # Story 1.2: pushed approved by the PM.
        path2 = "docs/stories/1.2.checkout.md"
        await self.deliver(
            "push",
            p.push("main", {path2: story_file(2, "Approved", "Checkout")}, PM, "Story 1.2"),
            f"{PM} pushes {path2}, approved",
        )
        await self.expect_status(2, "APPROVED")
        self.stories[2] = str(await self.scalar('SELECT id FROM "Story" WHERE "storyNumber" = 2'))
        await self.accept_bid(2)

        escrow1 = await self.fund_polygon(1)
        escrow2 = await self.fund_solana(2)
        before = await self.balances()

        # Story 1.1's development: a PR, a FAIL gate, a fix, a PASS gate, the merge.
        branch1, title1 = "story/1.1", "Story 1.1: Sign in"
        await self.deliver(
            "push", p.push(branch1, {"src/auth.py": "def sign_in(): ...\n"}, DEV, "Sign in"), f"{DEV} pushes {branch1}"
        )
        await self.deliver(
            "pull_request",
            p.pull_request("opened", 11, author=DEV, title=title1, branch=branch1),
            f"{DEV} opens PR #11",
        )
        await self.expect_status(1, "READY_FOR_REVIEW")
        gate1 = "docs/qa/gates/1.1-sign-in.yml"
        await self.deliver(
            "push",
            p.push(branch1, {gate1: gate_file(1, "FAIL", "no rate limit on sign-in")}, QA, "QA gate: FAIL"),
            f"{QA} pushes a FAIL gate",
        )
        await self.expect_status(1, "IN_PROGRESS")
        await self.expect_check_run(11, 1, "failure")
        await self.deliver(
            "push",
            p.push(branch1, {"src/auth.py": "def sign_in(): ...  # rate limited\n"}, DEV, "Rate limit"),
            f"{DEV} pushes the fix",
        )
        await self.deliver(
            "pull_request",
            p.pull_request("synchronize", 11, author=DEV, title=title1, branch=branch1),
            "PR #11 updated",
        )
        await self.expect_status(1, "READY_FOR_REVIEW")
        await self.deliver(
            "push",
            p.push(branch1, {gate1: gate_file(1, "PASS", "rate limited now")}, QA, "QA gate: PASS"),
            f"{QA} pushes a PASS gate",
        )
        await self.expect_check_run(11, 1, "success")
        await self.deliver(
            "pull_request",
            p.pull_request("closed", 11, author=DEV, title=title1, branch=branch1, sender=PM, merged=True),
            f"{PM} merges PR #11",
        )
        await self.expect_status(1, "DONE")

        # Story 1.2: a PR, a PASS gate, the merge.
        branch2, title2 = "story/1.2", "Story 1.2: Checkout"
        await self.deliver(
            "push",
            p.push(branch2, {"src/cart.py": "def checkout(): ...\n"}, DEV, "Checkout"),
            f"{DEV} pushes {branch2}",
        )
        await self.deliver(
            "pull_request",
            p.pull_request("opened", 12, author=DEV, title=title2, branch=branch2),
            f"{DEV} opens PR #12",
        )
        await self.deliver(
            "push",
            p.push(branch2, {"docs/qa/gates/1.2-checkout.yml": gate_file(2, "PASS", "all good")}, QA, "QA gate"),
            f"{QA} pushes a PASS gate",
        )
        await self.expect_check_run(12, 2, "success")
        await self.deliver(
            "pull_request",
            p.pull_request("closed", 12, author=DEV, title=title2, branch=branch2, sender=PM, merged=True),
            f"{PM} merges PR #12",
        )
        await self.expect_status(2, "DONE")

        await self.until("the Polygon escrow released", lambda: self._is(escrow1, "RELEASED"))
        await self.until("the Solana escrow released", lambda: self._is(escrow2, "RELEASED"))
        await self.transitions()
        after = await self.balances()
        self.result.balances = {
            f"{chain}:{who}": {"before": before[chain][who], "after": after[chain][who]}
            for chain in after
            for who in after[chain]
        }
        for chain, escrow_id in (("polygon", escrow1), ("solana", escrow2)):
            tx = str(await self.scalar('SELECT "releaseTransactionHash" FROM "Escrow" WHERE id = :e', e=escrow_id))
            self.result.releases[chain] = tx
        await self.report(before, after)
        await self.audit_log(1)

    async def report(self, before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> None:
        fee = AMOUNT * FEE_BPS // 10_000
        self.say("")
        self.say(f"Payouts ({FEE_BPS / 100:g}% platform fee: {fee / 10**6:,.2f} of {AMOUNT / 10**6:,.2f})")
        for chain, unit in (("polygon", "USDC"), ("solana", "USDC-SPL")):
            self.say(f"  {chain} (release {self.result.releases[chain][:16]}...):")
            for who in after[chain]:
                b, a = before[chain][who], after[chain][who]
                self.say(f"    {who:<9} {b / 10**6:>12,.2f} -> {a / 10**6:>12,.2f} {unit}  ({(a - b) / 10**6:+,.2f})")
        releases = await self.scalar("SELECT count(*) FROM escrow_chain_tx WHERE kind = 'release'")
        self.say(f"  release transactions signed: {releases} (one per escrow)")

    async def audit_log(self, number: int) -> None:
        self.say("")
        self.say(f"Audit log of story 1.{number}")
        for created, action, before, after, login in await self.rows(
            'SELECT a."createdAt", a.action, a."fromStatus", a."toStatus", u."githubUsername" FROM "StoryAuditLog" a '
            'LEFT JOIN "User" u ON u.id = a."userId" WHERE a."storyId" = :s ORDER BY a."createdAt", a.id',
            s=self.stories[number],
        ):
            change = f"{before or '-'} -> {after}" if after and before != after else ""
            self.say(f"  {str(created)[:19]}  {action:<26} {change:<32} {login or 'the app'}")


def check_result(result: DemoResult) -> list[str]:
    """What must be true once the demo ran: each escrow paid once, with the fee split exactly."""
    problems = []
    fee = AMOUNT * FEE_BPS // 10_000
    for chain in ("polygon", "solana"):
        b = result.balances.get(f"{chain}:expert", {})
        t = result.balances.get(f"{chain}:treasury", {})
        if b.get("after", 0) - b.get("before", 0) != AMOUNT - fee:
            problems.append(f"the expert was not paid exactly {AMOUNT - fee} on {chain}")
        if t.get("after", 0) - t.get("before", 0) != fee:
            problems.append(f"the treasury did not get exactly {fee} on {chain}")
    return problems


async def run_demo(workdir: Path, out: Callable[[str], None] = print) -> DemoResult:
    demo = Demo(workdir, out)
    step = "setting up"
    try:
        await demo.setup()
        step = "starting the app"
        from github_app.runtime import Runtime

        demo.runtime = await Runtime.create(demo.settings)
        await demo.seed()
        await demo.runtime.close()
        await demo.start_app()
        step = "the timeline"
        await demo.run()
        problems = check_result(demo.result)
        if problems:
            raise StepFailed("; ".join(problems))
        demo.result.ok = True
    except StepFailed as exc:
        demo.result.failed_step = str(exc)
        demo.say(f"FAILED: {exc} did not happen in time ({step})")
    finally:
        await demo.close()
    return demo.result
