"""A project in planning: analyst, PM, architect and UX stages with accepted bids, and the deliveries of
a stage's pull request (opened, reviewed, merged) with its documents on the fake GitHub."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from github_app.db.enums import BidStatus, EscrowStatus, Role, Stage
from github_app.db.models import Bid, Escrow, Opportunity, Project, User
from github_app.db.types import new_id
from github_app.demo.fake_github import _git_blob_sha
from tests.github_fixtures import REPO
from tests.harness import App
from tests.workflow import CLIENT, PM, Market, seed_market

ANALYST, ARCHITECT, UX = "ana-analyst", "archie-arch", "uma-ux"
EXPERTS = {"analyst": ANALYST, "pm": PM, "architect": ARCHITECT, "ux": UX}


async def seed_planning(app: App, fake: Any, *, stages: tuple[str, ...] = ("analyst", "architect", "ux")) -> Market:
    """seed_market's project (with its PM and QA bids), plus an analyst, an architect and a UX expert
    whose bids on their stages' Opportunities are accepted; the project is PLANNING at the analyst stage."""
    m = await seed_market(app.runtime, fake)
    async with app.runtime.sessionmaker() as s, s.begin():
        for login, role in ((ANALYST, Role.ANALYST), (ARCHITECT, Role.ARCHITECT), (UX, Role.UX)):
            user = User(id=new_id(), email=f"{login}@example.com", name=login, github_username=login, role=role)
            s.add(user)
            m.users[login] = user.id
        await s.flush()
        for stage in stages:
            await add_stage_opportunity(s, m, stage, EXPERTS[stage])
        project = await s.get(Project, m.project_id)
        assert project is not None
        project.current_stage = Stage.analyst
    return m


async def add_stage_opportunity(s: Any, m: Market, stage: str, expert: str | None) -> str:
    opp = Opportunity(
        id=new_id(),
        project_id=m.project_id,
        stage=Stage(stage),
        title=f"{stage} work",
        description="-",
        budget={"min": 1, "max": 2, "currency": "USDC"},
    )
    s.add(opp)
    await s.flush()
    if expert is not None:
        bid = Bid(
            id=new_id(),
            opportunity_id=opp.id,
            expert_id=m.users[expert],
            amount=1,
            currency="USDC",
            proposal="-",
            status=BidStatus.ACCEPTED,
        )
        s.add(bid)
        await s.flush()
        opp.accepted_bid_id = bid.id
    return opp.id


async def opportunity_of(m: Market, stage: str) -> str:
    return str(
        await m.scalar(
            'SELECT id FROM "Opportunity" WHERE "projectId" = :p AND stage = :s AND "acceptedBidId" IS NOT NULL',
            p=m.project_id,
            s=stage,
        )
    )


async def stage_escrow(
    m: Market, stage: str, *, chain: str, amount: int, currency: str, contract_address: str, fee_bps: int = 500
) -> str:
    escrow_id = new_id()
    opportunity_id = await opportunity_of(m, stage)
    async with m.runtime.sessionmaker() as s, s.begin():
        s.add(
            Escrow(
                id=escrow_id,
                project_id=m.project_id,
                opportunity_id=opportunity_id,
                client_id=m.users[CLIENT],
                expert_id=m.users[EXPERTS[stage]],
                amount=str(amount),
                currency=currency,
                blockchain=chain,
                platform_fee=fee_bps,
                status=EscrowStatus.PENDING,
                contract_address=contract_address,
            )
        )
    return escrow_id


@dataclass
class StagePr:
    """One stage pull request: its number, branch, author, head and merge commits."""

    m: Market
    number: int
    author: str
    files: dict[str, bytes]
    branch: str = ""
    head: str = ""
    merge_sha: str = ""

    def __post_init__(self) -> None:
        self.branch = self.branch or f"docs/pr-{self.number}"
        self.head = self.m.sha()
        self.merge_sha = self.m.sha()
        fake = self.m.fake
        for path, content in self.files.items():
            fake.put_file(REPO, self.head, path, content)
            fake.put_file(REPO, self.merge_sha, path, content)
        fake.set_pull_files(
            REPO,
            self.number,
            [{"filename": p, "status": "added", "sha": _git_blob_sha(c)} for p, c in self.files.items()],
        )

    def push(self, files: dict[str, bytes]) -> None:
        """New commits on the PR branch: a new head (and what its merge would hold)."""
        self.files = {**self.files, **files}
        self.head, self.merge_sha = self.m.sha(), self.m.sha()
        for path, content in self.files.items():
            self.m.fake.put_file(REPO, self.head, path, content)
            self.m.fake.put_file(REPO, self.merge_sha, path, content)

    def event(self, action: str, **kw: Any) -> dict[str, Any]:
        data = self.m.pr(
            action,
            self.number,
            author=self.author,
            title="Planning documents",
            branch=self.branch,
            head_sha=self.head,
            **kw,
        )
        if kw.get("merged"):
            data["pull_request"]["merge_commit_sha"] = self.merge_sha
        return data

    def review(
        self, reviewer: str, state: str = "approved", *, commit: str | None = None, body: str = ""
    ) -> dict[str, Any]:
        data = self.m.review(
            self.number,
            reviewer=reviewer,
            state=state,
            commit_id=commit or self.head,
            head_sha=self.head,
            author=self.author,
            review_id=int(self.m.sha()[:6], 16),
        )
        data["review"]["body"] = body
        return data


async def complete_stage(app: App, pr: StagePr, reviewer: str = CLIENT, *, merge_first: bool = False) -> None:
    await app.deliver("pull_request", pr.event("opened"))
    if merge_first:
        await app.deliver("pull_request", pr.event("closed", merged=True, sender=reviewer))
        await app.deliver("pull_request_review", pr.review(reviewer))
    else:
        await app.deliver("pull_request_review", pr.review(reviewer))
        await app.deliver("pull_request", pr.event("closed", merged=True, sender=reviewer))
