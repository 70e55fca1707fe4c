"""`/bmad rate`: the client rates an expert, once per expert and stage, after that stage's work is done."""

from __future__ import annotations

from sqlalchemy import select

from github_app.bounded import clean_text
from github_app.commands.registry import Call, Reply, register
from github_app.db.enums import BidStatus, OpportunityStatus, Stage, StoryStatus
from github_app.db.models import Bid, Opportunity, Project, Rating, Story
from github_app.db.types import new_id
from github_app.domain.command_grammar import UsageError, integer, user_ref
from github_app.domain.command_rights import CLIENT
from github_app.services.people import user_by_login


async def stage_done(call: Call, expert_id: str) -> tuple[Stage, bool] | None:
    """The stage the expert worked on in this project (their accepted bid, else a story assigned to
    them), and whether that stage's work is done: a developer's or QA's story DONE, any other stage's
    opportunity COMPLETED. None when the expert did no work here."""
    project_id = call.rc.project.id
    bid = (
        await call.session.execute(
            select(Opportunity.stage, Opportunity.status)
            .join(Bid, Opportunity.accepted_bid_id == Bid.id)
            .where(Opportunity.project_id == project_id, Bid.expert_id == expert_id, Bid.status == BidStatus.ACCEPTED)
            .limit(1)
        )
    ).first()
    for stage, column in ((Stage.developer, Story.assigned_dev_id), (Stage.qa, Story.assigned_qa_id)):
        if bid is not None and bid[0] != stage:
            continue
        done = select(Story.id).where(Story.project_id == project_id, column == expert_id)
        any_story = (await call.session.execute(done.limit(1))).first()
        if any_story is None and bid is None:
            continue
        finished = (await call.session.execute(done.where(Story.status == StoryStatus.DONE).limit(1))).first()
        return stage, finished is not None
    if bid is None:
        return None
    return Stage(bid[0]), bid[1] == OpportunityStatus.COMPLETED


@register(
    "rate",
    usage="/bmad rate @login <1-5> <feedback>",
    example="/bmad rate @dana 5 clean, well-tested work",
    summary="rate an expert once per stage, after their stage's work is done",
    rule=CLIENT,
    doing="rate experts",
)
async def rate(call: Call) -> Reply:
    if len(call.args) < 2:
        raise UsageError("rate takes a @login, a rating from 1 to 5 and your feedback")
    login = user_ref(call.args[0])
    stars = integer(call.args[1], "the rating", 1, 5)
    feedback = clean_text(" ".join(call.args[2:]))[:2000] or None
    # Serializes ratings of this project: two racing commands cannot both rate the same stage.
    await call.session.execute(select(Project.id).where(Project.id == call.rc.project.id).with_for_update())
    expert = await user_by_login(call.session, login)
    if expert is None:
        return Reply.refused(f"@{login} is not a marketplace user")
    found = await stage_done(call, expert.id)
    if found is None:
        return Reply.refused(f"@{login} has done no work on this project")
    stage, done = found
    if not done:
        return Reply.refused(f"@{login}'s {stage} work on this project is not done yet; rate it once it is")
    exists = select(Rating.id).where(
        Rating.project_id == call.rc.project.id, Rating.expert_id == expert.id, Rating.stage == stage
    )
    if (await call.session.execute(exists.limit(1))).first() is not None:
        return Reply.refused(f"@{login}'s {stage} work on this project is already rated; a rating is given once")
    assert call.speaker.user_id is not None
    call.session.add(
        Rating(
            id=new_id(),
            project_id=call.rc.project.id,
            expert_id=expert.id,
            client_id=call.speaker.user_id,
            stage=stage,
            rating=stars,
            feedback=feedback,
        )
    )
    return Reply.applied(f"@{login} rated {stars}/5 for their {stage} work on this project.")
