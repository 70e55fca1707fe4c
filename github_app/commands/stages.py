"""What `/bmad status` shows of the planning stages: the project's status and current stage, then each
planning stage with its expert, its deliverable (the PR delivering it) and its escrow."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from github_app.bmad.planning import PLANNING_STAGES
from github_app.bounded import clip
from github_app.db.models import Opportunity, Project
from github_app.services.people import login_of
from github_app.services.stage_views import stage_escrow_text
from github_app.services.stages import accepted_expert, delivering


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


async def planning_lines(session: AsyncSession, project: Project) -> list[str]:
    """The planning section of the status reply; empty for a project with no planning Opportunity."""
    stmt = (
        select(Opportunity)
        .where(Opportunity.project_id == project.id, Opportunity.stage.in_(PLANNING_STAGES))
        .order_by(Opportunity.created_at)
    )
    opportunities = list((await session.execute(stmt)).scalars().all())
    if not opportunities:
        return []
    by_stage: dict[str, Opportunity] = {}
    for opportunity in opportunities:  # the one with an accepted bid, else the newest, as the app judges
        held = by_stage.get(str(opportunity.stage))
        if held is None or held.accepted_bid_id is None:
            by_stage[str(opportunity.stage)] = opportunity
    current = str(project.current_stage) if project.current_stage else "none"
    lines = [
        f"Project: {project.status}, current stage {current}",
        "",
        "| stage | expert | opportunity | deliverable | escrow |",
        "|---|---|---|---|---|",
    ]
    for stage in PLANNING_STAGES:
        if stage not in by_stage:
            continue
        opportunity = by_stage[stage]
        expert = await login_of(session, await accepted_expert(session, opportunity))
        found = await delivering(session, opportunity.id)
        deliverable = f"PR #{found[0].pr_number} {found[1].status}" if found else "-"
        cells = [
            stage,
            f"@{expert}" if expert else "no accepted bid",
            str(opportunity.status),
            deliverable,
            clip(await stage_escrow_text(session, opportunity.id), 200),
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return [*lines, ""]
