"""Properties of the story state machine over arbitrary event sequences from arbitrary senders."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from github_app.bmad.gate_file import GateDecision
from github_app.db.enums import DeliverableStatus, Role, StoryStatus
from github_app.domain.story_machine import (
    Actor,
    ConvertedToDraft,
    DraftPrOpened,
    Event,
    GateRecorded,
    MarkedReady,
    NoChange,
    PrClosedUnmerged,
    PrMerged,
    PullRequestRef,
    ReadyPrOpened,
    Recorded,
    Refused,
    StoryFileApproved,
    StorySnapshot,
    Transition,
    apply,
    decide,
    deliverable_change_allowed,
)

S = StoryStatus
D = DeliverableStatus
G = GateDecision

DEV = Actor("u-dev", "dana", frozenset({Role.DEVELOPER}))
OTHER_DEV = Actor("u-bob", "bob", frozenset({Role.DEVELOPER}))
QA = Actor("u-qa", "quinn", frozenset({Role.QA}))
OTHER_QA = Actor("u-qa2", "quincy", frozenset({Role.QA}))
PM = Actor("u-pm", "pam", frozenset({Role.PM}))
CLIENT = Actor("u-client", "cleo", frozenset({Role.CLIENT}))
DEV_AND_QA = Actor("u-dev", "dana", frozenset({Role.DEVELOPER, Role.QA}))
STRANGER = Actor(None, "stranger")
BOT = Actor("u-bot", "app[bot]", frozenset(Role), is_bot=True)
ACTORS = [DEV, OTHER_DEV, QA, OTHER_QA, PM, CLIENT, DEV_AND_QA, STRANGER, BOT]

# PRs 1 and 2 are the assigned developer's; 3 and 4 are not.
PRS = {
    1: PullRequestRef(1, "u-dev", "dana"),
    2: PullRequestRef(2, "u-dev", "dana"),
    3: PullRequestRef(3, "u-bob", "bob"),
    4: PullRequestRef(4, None, "stranger"),
}
DEVELOPERS_PRS = {1, 2}

FAST = settings(max_examples=200, deadline=None)

prs = st.sampled_from(list(PRS.values()))
events: st.SearchStrategy[Event] = st.one_of(
    st.just(StoryFileApproved()),
    st.builds(DraftPrOpened, prs),
    st.builds(ReadyPrOpened, prs),
    st.builds(MarkedReady, prs),
    st.builds(ConvertedToDraft, prs),
    st.builds(PrClosedUnmerged, prs),
    st.builds(PrMerged, prs),
    st.builds(GateRecorded, st.sampled_from(list(G)), st.booleans()),
)
any_step = st.tuples(events, st.sampled_from(ACTORS))
# Uniformly random senders almost never get a story to DONE, so half of the steps are the deliveries a
# real project sends: each event from the person who would normally cause it.
developers_prs = st.sampled_from([PRS[n] for n in sorted(DEVELOPERS_PRS)])
usual_step = st.one_of(
    st.tuples(st.just(StoryFileApproved()), st.just(PM)),
    st.tuples(st.builds(DraftPrOpened, developers_prs), st.just(DEV)),
    st.tuples(st.builds(ReadyPrOpened, developers_prs), st.just(DEV)),
    st.tuples(st.builds(MarkedReady, developers_prs), st.just(DEV)),
    st.tuples(st.builds(ConvertedToDraft, developers_prs), st.just(DEV)),
    st.tuples(st.builds(PrClosedUnmerged, developers_prs), st.just(DEV)),
    st.tuples(st.builds(PrMerged, developers_prs), st.just(CLIENT)),
    st.tuples(st.builds(GateRecorded, st.sampled_from(list(G)), st.booleans()), st.just(QA)),
)
random_steps = st.lists(st.one_of(usual_step, any_step), min_size=10, max_size=40)


@st.composite
def journeys(draw: st.DrawFn) -> list[tuple[Event, Actor]]:
    """A successful delivery, in a random order, with random deliveries spliced in anywhere."""
    skeleton: list[tuple[Event, Actor]] = [
        (StoryFileApproved(), PM),
        (ReadyPrOpened(PRS[1]), DEV),
        (PrMerged(PRS[1]), CLIENT),
        (GateRecorded(G.PASS, accepted=True), QA),
    ]
    sequence = draw(st.permutations(skeleton))
    for step in draw(st.lists(st.one_of(usual_step, any_step), max_size=30)):
        sequence.insert(draw(st.integers(0, len(sequence))), step)
    return sequence


steps = st.one_of(random_steps, journeys())
starts = st.builds(
    StorySnapshot,
    epic=st.just(1),
    story=st.just(3),
    status=st.sampled_from([S.DRAFT, S.APPROVED]),
    assigned_dev_id=st.just("u-dev"),
    assigned_qa_id=st.sampled_from(["u-qa", None]),
)


def may_record_gate(story: StorySnapshot, actor: Actor) -> bool:
    """Who the product rules let record a gate, written independently of the machine."""
    if actor.is_bot or actor.user_id is None or actor.user_id == story.assigned_dev_id:
        return False
    if story.assigned_qa_id is not None:
        return actor.user_id == story.assigned_qa_id
    return Role.QA in actor.roles


@dataclass
class History:
    """What actually happened, kept beside the machine's own snapshot."""

    merged_by_developer: set[int] = field(default_factory=set)
    latest_gate: GateRecorded | None = None
    deliverables: dict[int, DeliverableStatus] = field(default_factory=dict)

    def saw(self, story: StorySnapshot, event: Event, actor: Actor) -> None:
        # A merge is a fact whoever performs it, bots included.
        if isinstance(event, PrMerged) and event.pr.number in DEVELOPERS_PRS:
            self.merged_by_developer.add(event.pr.number)
        if isinstance(event, GateRecorded) and may_record_gate(story, actor):
            self.latest_gate = event


@given(start=starts, sequence=steps)
@FAST
def test_done_needs_a_merged_developer_pr_and_an_accepted_latest_gate(
    start: StorySnapshot, sequence: list[tuple[Event, Actor]]
) -> None:
    story, history = start, History()
    for event, actor in sequence:
        history.saw(story, event, actor)
        decision = decide(story, event, actor)
        story = apply(story, decision)
        if story.status is S.DONE:
            assert story.pr_number in history.merged_by_developer
            assert history.latest_gate is not None
            assert history.latest_gate.accepted
            assert history.latest_gate.decision is not G.FAIL
            break


@given(start=starts, sequence=steps)
@FAST
def test_nothing_leaves_done(start: StorySnapshot, sequence: list[tuple[Event, Actor]]) -> None:
    story = start
    done: StorySnapshot | None = None
    for event, actor in sequence:
        decision = decide(story, event, actor)
        story = apply(story, decision)
        if done is not None:
            assert isinstance(decision, NoChange)
            assert story == done
        elif story.status is S.DONE:
            done = story


@given(start=starts, sequence=steps)
@FAST
def test_decisions_are_consistent_with_the_story_they_produce(
    start: StorySnapshot, sequence: list[tuple[Event, Actor]]
) -> None:
    story = start
    for event, actor in sequence:
        decision = decide(story, event, actor)
        if isinstance(decision, Transition):
            assert decision.from_status is story.status
            assert decision.to_status is decision.after.status
            assert decision.from_status is not decision.to_status
            assert decision.reason
        elif isinstance(decision, Recorded):
            assert decision.status is story.status is decision.after.status
            assert decision.after != story
        else:
            assert decision.reason
        if actor.is_bot and not isinstance(event, PrMerged):
            assert isinstance(decision, NoChange)
        story = apply(story, decision)


@given(start=starts, sequence=steps)
@FAST
def test_only_the_assigned_developers_prs_are_ever_linked(
    start: StorySnapshot, sequence: list[tuple[Event, Actor]]
) -> None:
    story = start
    for event, actor in sequence:
        story = apply(story, decide(story, event, actor))
        assert story.pr_number is None or story.pr_number in DEVELOPERS_PRS


@given(start=starts, sequence=steps)
@FAST
def test_deliverables_follow_their_lifecycle(start: StorySnapshot, sequence: list[tuple[Event, Actor]]) -> None:
    story, deliverables = start, dict[int, DeliverableStatus]()
    for event, actor in sequence:
        decision = decide(story, event, actor)
        if isinstance(decision, Transition | Recorded) and decision.deliverable_status is not None:
            assert decision.deliverable_pr is not None
            current = deliverables.get(decision.deliverable_pr)
            assert deliverable_change_allowed(current, decision.deliverable_status), (current, decision)
            assert current is not decision.deliverable_status
            deliverables[decision.deliverable_pr] = decision.deliverable_status
        story = apply(story, decision)
        if story.status is S.DONE:
            assert story.pr_number is not None
            assert deliverables[story.pr_number] is D.APPROVED


@given(start=starts, sequence=steps)
@FAST
def test_approval_happens_only_through_a_pm_or_architect(
    start: StorySnapshot, sequence: list[tuple[Event, Actor]]
) -> None:
    story = start
    for event, actor in sequence:
        decision = decide(story, event, actor)
        if isinstance(decision, Transition) and (decision.from_status, decision.to_status) == (
            S.DRAFT,
            S.APPROVED,
        ):
            assert actor.roles & {Role.PM, Role.ARCHITECT}
            assert isinstance(event, StoryFileApproved)
        story = apply(story, decision)


# Order independence -------------------------------------------------------------------------------

EXPECTED_DONE = StorySnapshot(
    1,
    3,
    S.DONE,
    assigned_dev_id="u-dev",
    assigned_qa_id="u-qa",
    pr_number=1,
    pr_merged=True,
    gate=G.PASS,
    gate_accepted=True,
    deliverable_status=D.APPROVED,
)
PASS_BY_QA = (GateRecorded(G.PASS, accepted=True), QA)
MERGE = (PrMerged(PRS[1]), CLIENT)
# Deliveries that must not change the outcome wherever they land: bots, other people's PRs, strangers.
noise = st.sampled_from(
    [
        (PrMerged(PRS[1]), BOT),
        (GateRecorded(G.FAIL, accepted=False), BOT),
        (ReadyPrOpened(PRS[3]), OTHER_DEV),
        (GateRecorded(G.FAIL, accepted=False), OTHER_QA),
        (GateRecorded(G.FAIL, accepted=False), STRANGER),
        (ConvertedToDraft(PRS[3]), OTHER_DEV),
        (StoryFileApproved(), DEV),
    ]
)


def run_all(story: StorySnapshot, sequence: list[tuple[Event, Actor]]) -> StorySnapshot:
    for event, actor in sequence:
        story = apply(story, decide(story, event, actor))
    return story


def interleave(core: list[tuple[Event, Actor]], extra: list[tuple[Event, Actor]], cuts: list[int]) -> list:
    sequence = list(core)
    for item, cut in zip(extra, cuts, strict=False):
        sequence.insert(cut % (len(sequence) + 1), item)
    return sequence


@given(
    order=st.permutations([(ReadyPrOpened(PRS[1]), DEV), MERGE, PASS_BY_QA]),
    extra=st.lists(noise, max_size=6),
    cuts=st.lists(st.integers(0, 20), min_size=6, max_size=6),
)
@FAST
def test_ready_pr_merge_and_gate_complete_the_story_in_any_order(
    order: list[tuple[Event, Actor]], extra: list[tuple[Event, Actor]], cuts: list[int]
) -> None:
    start = StorySnapshot(1, 3, S.APPROVED, assigned_dev_id="u-dev", assigned_qa_id="u-qa")

    assert run_all(start, interleave(order, extra, cuts)) == EXPECTED_DONE


@given(
    order=st.permutations([(DraftPrOpened(PRS[1]), DEV), (MarkedReady(PRS[1]), DEV), MERGE, PASS_BY_QA]),
    duplicates=st.lists(st.sampled_from([0, 1, 2, 3]), max_size=4),
    cuts=st.lists(st.integers(0, 20), min_size=4, max_size=4),
)
@FAST
def test_draft_pr_lifecycle_completes_in_any_order_with_duplicate_deliveries(
    order: list[tuple[Event, Actor]], duplicates: list[int], cuts: list[int]
) -> None:
    start = StorySnapshot(1, 3, S.APPROVED, assigned_dev_id="u-dev", assigned_qa_id="u-qa")
    repeated = [order[i] for i in duplicates]

    assert run_all(start, interleave(order, repeated, cuts)) == EXPECTED_DONE


@given(
    order=st.permutations([MERGE, PASS_BY_QA]),
    extra=st.lists(noise, max_size=6),
    cuts=st.lists(st.integers(0, 20), min_size=6, max_size=6),
)
@FAST
def test_merge_and_accepted_gate_commute_from_ready_for_review(
    order: list[tuple[Event, Actor]], extra: list[tuple[Event, Actor]], cuts: list[int]
) -> None:
    start = StorySnapshot(
        1,
        3,
        S.READY_FOR_REVIEW,
        assigned_dev_id="u-dev",
        assigned_qa_id="u-qa",
        pr_number=1,
        deliverable_status=D.SUBMITTED,
    )
    sequence = interleave(order, extra, cuts)

    decisions_reaching_done = 0
    story = start
    for event, actor in sequence:
        decision = decide(story, event, actor)
        if isinstance(decision, Transition) and decision.to_status is S.DONE:
            decisions_reaching_done += 1
        story = apply(story, decision)

    assert story == EXPECTED_DONE
    # Payment is triggered once: exactly one transition reaches DONE.
    assert decisions_reaching_done == 1


@given(start=starts, sequence=steps)
@FAST
def test_refused_events_never_come_from_bots(start: StorySnapshot, sequence: list[tuple[Event, Actor]]) -> None:
    story = start
    for event, actor in sequence:
        decision = decide(story, event, actor)
        if isinstance(decision, Refused):
            # A bot's merge is a fact; what it refuses is about the PR, not the bot.
            assert not actor.is_bot or isinstance(event, PrMerged)
            assert decision.reason[0].isalnum() or decision.reason[0] == "@"
        story = apply(story, decision)
