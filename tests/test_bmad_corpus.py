"""Every real BMAD file of the corpus through the parsers: none crashes, each is read or refused with a
reason, and the files whose reading once lost data are read as what they are."""

from __future__ import annotations

from collections import Counter

import pytest

from github_app.bmad.core_config import parse_core_config
from github_app.bmad.gate_file import GateFileError, is_gate_path, parse_gate_file
from github_app.bmad.statuses import StoryFileStatus
from github_app.bmad.story_file import (
    BmadFileError,
    NotAStory,
    StoryDocument,
    StoryIdError,
    is_story_path,
    parse_story_file,
)
from tests.corpus import CorpusFile, corpus_file, corpus_files


def story_outcome(entry: CorpusFile) -> tuple[str, StoryDocument | BmadFileError | NotAStory]:
    try:
        return "story", parse_story_file(entry.path, entry.text())
    except NotAStory as exc:
        return "not a story", exc
    except StoryIdError as exc:
        return "unstorable id", exc
    except BmadFileError as exc:
        return "no story number", exc


def test_every_story_file_is_read_or_refused_with_its_reason() -> None:
    outcomes = Counter()
    for entry in corpus_files("stories"):
        outcome, result = story_outcome(entry)
        outcomes[outcome] += 1
        if isinstance(result, BmadFileError | NotAStory):
            assert entry.path in str(result), (entry.path, str(result))
        else:
            assert result.title.strip() and len(result.title) <= 300, entry.path
            # Whatever was not understood is said, by value: an unmapped status is never silently dropped.
            if result.status_raw is not None and result.status is None:
                assert any(repr(result.status_raw) in p for p in result.problems), entry.path

    assert outcomes == {"story": 77, "not a story": 8, "unstorable id": 14, "no story number": 3}


def test_every_gate_file_is_read_or_refused_with_its_reason() -> None:
    outcomes = Counter()
    for entry in corpus_files("gates"):
        try:
            doc = parse_gate_file(entry.path, entry.read())
        except GateFileError as exc:
            outcomes["refused"] += 1
            assert str(exc).strip(), entry.path
        else:
            outcomes["read"] += 1
            assert doc.epic >= 0 and doc.story >= 0

    assert outcomes == {"read": 42, "refused": 27}


def test_every_core_config_gives_folders() -> None:
    configs = corpus_files("configs")
    assert len(configs) == 14
    for entry in configs:
        paths = parse_core_config(entry.read())
        assert paths.problems == (), entry.repo
        assert paths.story_dir == "docs/stories" and paths.gate_dir == "docs/qa/gates"


def test_archived_gates_are_not_gates() -> None:
    gate_paths = [e.path for e in corpus_files("gates")]
    archived = [p for p in gate_paths if "/gates/archive/" in p]
    assert len(archived) == 4
    assert not any(is_gate_path(p, "docs/qa/gates") for p in archived)
    counted = [p for p in gate_paths if is_gate_path(p, "docs/qa/gates")]
    # 69 - 4 archived - 5 under _bmad-output/... or /qa/gates, outside the default folder
    assert len(counted) == 60


def test_story_files_in_sprint_subfolders_are_story_files() -> None:
    entry = corpus_file("stories", "CauanyRodrigues01/task-flow", "docs/stories/sprint_1/1.1.story.md")
    assert is_story_path(entry.path, "docs/stories")


@pytest.mark.parametrize(
    ("repo", "path", "kind"),
    [
        ("pradok/events-scheduler", "docs/stories/4.5-review-summary.md", "summary"),
        ("Dokt-R/ai-dungeon-master", "docs/stories/1.3_validation_report.md", "report"),
        ("seokhojung/befun-v3", "docs/stories/2.1/2.1.appendix.md", "appendix"),
        ("Jirawatpyk/Tinedy-system", "docs/stories/EPIC-1-SUMMARY.md", "epic"),
        ("Jirawatpyk/Tinedy-system", "docs/stories/SPRINT-BACKLOG.md", "sprint"),
        ("Graveside2022/pisad", "docs/stories/epic-6-impact-analysis.md", "epic"),
    ],
)
def test_documents_that_are_not_stories_are_refused_by_kind(repo: str, path: str, kind: str) -> None:
    outcome, result = story_outcome(corpus_file("stories", repo, path))
    assert outcome == "not a story"
    assert isinstance(result, NotAStory) and kind in result.kind


def read(repo: str, path: str) -> StoryDocument:
    return parse_story_file(path, corpus_file("stories", repo, path).text())


def test_the_real_story_beside_its_review_summary() -> None:
    doc = read("pradok/events-scheduler", "docs/stories/4.5.configurable-delivery-time-override.story.md")
    assert (doc.epic, doc.story, doc.status) == (4, 5, StoryFileStatus.DONE)
    assert doc.status_raw == "Done ✅"
    assert doc.description and doc.acceptance_criteria


def test_portuguese_story_with_bold_labels() -> None:
    doc = read("CauanyRodrigues01/task-flow", "docs/stories/sprint_1/1.1.story.md")
    assert doc.title == "Configuração Inicial do Projeto e Autenticação de Usuários"
    assert doc.status is StoryFileStatus.APPROVED  # "Pronto para Desenvolvimento"
    assert doc.description.startswith("Como usuário, quero me registrar")
    assert doc.acceptance_criteria and "**Notas de Desenvolvimento:**" not in doc.acceptance_criteria
    assert doc.problems == ()


def test_status_in_a_table_under_the_title() -> None:
    doc = read("Cleverson02/circuito-elegante", "docs/stories/1.1.story.md")
    assert (doc.status_raw, doc.status) == ("Done", StoryFileStatus.DONE)


def test_status_and_criteria_under_decorated_third_level_headings() -> None:
    doc = read("Graveside2022/pisad", "docs/stories/1.1_Story.md")
    assert doc.status is StoryFileStatus.DONE  # "✅ **FULLY COMPLETE** (Foundation + Enhancements)"
    assert doc.description.startswith("**As a** developer")
    assert doc.acceptance_criteria


def test_front_matter_title_status_and_as_a_heading() -> None:
    doc = read("Haizard/mult-tenant-school", "docs/stories/9.3.story.md")
    assert doc.title == "Tenant Front-End Website"
    assert doc.status is StoryFileStatus.APPROVED  # "🔄 READY FOR IMPLEMENTATION"
    assert doc.description.startswith("As a School Administrator, I want each school")


def test_front_matter_supplies_the_story_number() -> None:
    doc = read("Haizard/mult-tenant-school", "docs/stories/12.story.md")
    assert (doc.epic, doc.story, doc.title) == (12, 1, "AI Chatbot with Subject-Specific Tutoring")


def test_windows_line_endings_in_a_real_file() -> None:
    entry = corpus_file("stories", "Haizard/mult-tenant-school", "docs/stories/2.1.story.md")
    assert b"\r\n" in entry.read()
    doc = parse_story_file(entry.path, entry.text())
    assert doc.status is StoryFileStatus.DONE
    assert "\r" not in doc.acceptance_criteria + doc.description + doc.title


def test_story_statement_section_and_status_bullet_under_another_heading() -> None:
    doc = read("Jackela/Casual-Academic-Time-Allocation-Management-System", "docs/product/stories/1.1.story.md")
    assert doc.status is StoryFileStatus.DONE  # "- **Status:** Done" under "## Story Information"
    assert doc.description and doc.acceptance_criteria


def test_korean_status_with_its_translation() -> None:
    doc = read("Chongdal/ai-memo-hands-on-20250916", "docs/stories/1.1.story.md")
    assert (doc.status_raw, doc.status) == ("완료 (Completed)", StoryFileStatus.DONE)


def test_words_before_a_status_are_not_skipped_and_are_reported() -> None:
    doc = read("mobiztool/tarot-reading-app", "docs/stories/1.1.project-setup.md")
    assert doc.status is None
    assert any("'**QA Approved** ✅'" in p and "status_aliases" in p for p in doc.problems)
    aliased = parse_story_file(
        doc_path := "docs/stories/1.1.project-setup.md",
        corpus_file("stories", "mobiztool/tarot-reading-app", doc_path).text(),
        status_aliases={"qa approved": StoryFileStatus.DONE},
    )
    assert aliased.status is StoryFileStatus.DONE and aliased.problems == ()


@pytest.mark.parametrize(
    ("repo", "path", "story_id"),
    [
        ("HaiLammm/datn", "_bmad-output/planning-artifacts/stories/3.2.1.story.md", "3.2.1"),
        ("seokhojung/befun-v3", "docs/stories/1.2A.supabase-connection-setup.md", "1.2A"),
        ("pradok/events-scheduler", "docs/stories/1.11b.refactor-bounded-context-violations.story.md", "1.11b"),
    ],
)
def test_ids_the_marketplace_cannot_hold_are_refused_by_id(repo: str, path: str, story_id: str) -> None:
    outcome, result = story_outcome(corpus_file("stories", repo, path))
    assert outcome == "unstorable id"
    assert isinstance(result, StoryIdError) and result.story_id == story_id


def test_a_100_kb_story_file() -> None:
    entry = corpus_file("stories", "pradok/events-scheduler", "docs/stories/1.11.user-crud-rest-api.story.md")
    text = entry.text()
    padded = text + "\n## Dev Notes\n" + ("- a note about the implementation, kept for the record\n" * 1900)
    assert len(padded.encode()) > 100_000
    doc, original = parse_story_file(entry.path, padded), parse_story_file(entry.path, text)
    assert (doc.title, doc.status, doc.acceptance_criteria) == (
        original.title,
        original.status,
        original.acceptance_criteria,
    )


def gate(repo: str, path: str) -> bytes:
    return corpus_file("gates", repo, path).read()


def test_irregularly_named_gate_is_read_for_the_story_it_names() -> None:
    path = "docs/qa/gates/epic-14.14.1-attribute-models.yml"
    doc = parse_gate_file(path, gate("AlexMobiCraft/FREESPORT", path))
    assert (doc.epic, doc.story, doc.gate.value) == (14, 1, "PASS")


def test_irregular_gate_with_its_decision_under_another_key_is_refused_with_a_hint() -> None:
    path = "docs/qa/gates/14.story-14.3-attribute-deduplication.yml"  # story: 14.3, status: CONCERNS
    with pytest.raises(GateFileError, match="status: CONCERNS"):
        parse_gate_file(path, gate("AlexMobiCraft/FREESPORT", path))


def test_markdown_gate_without_yaml_is_refused() -> None:
    path = "docs/qa/gates/3.2.1.0-import-existing-customers.md"
    with pytest.raises(GateFileError, match="Markdown gate"):
        parse_gate_file(path, gate("AlexMobiCraft/FREESPORT", path))


def test_gate_in_front_matter_followed_by_notes() -> None:
    path = "_bmad-output/planning-artifacts/docs/qa/gates/5.5-skill-jd-matching-foundation.yml"
    with pytest.raises(GateFileError, match="gate_decision: PASS"):
        parse_gate_file(path, gate("HaiLammm/datn", path))
