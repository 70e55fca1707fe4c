"""Story statuses as people write them, mapped to the five of BMAD's story template.

Real files decorate the value (`**Done**`, `✅ Done`, `🔄 READY FOR IMPLEMENTATION`), add words after it
(`Done - all tasks complete`, `완료 (Completed)`) and write it in their own language (`Pronto para
Desenvolvimento`). A value is mapped only when its *beginning* names one status: words before the status
are never skipped, so `Not Done` and `QA Approved` stay unmapped and are reported rather than guessed. A
repository can teach the app its own words with `status_aliases` in `.github/bmad-marketplace.yml`.

Only short, bounded text is examined (`MAX_STATUS_CHARS`), and every pattern is a literal phrase with
single-character separators, so a hostile value costs linear time.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping


class StoryFileStatus(enum.StrEnum):
    """The `## Status` values of BMAD's story template."""

    DRAFT = "Draft"
    APPROVED = "Approved"
    IN_PROGRESS = "InProgress"
    REVIEW = "Review"
    DONE = "Done"


KNOWN_STATUSES = ", ".join(s.value for s in StoryFileStatus)
MAX_STATUS_CHARS = 200
MAX_ALIASES = 100

_D, _A, _I, _R, _DONE = (
    StoryFileStatus.DRAFT,
    StoryFileStatus.APPROVED,
    StoryFileStatus.IN_PROGRESS,
    StoryFileStatus.REVIEW,
    StoryFileStatus.DONE,
)

# Phrases that mean exactly one template status wherever they start a value. "Ready for ..." before work
# starts is the template's Approved (the story may be picked up); "Ready for Review" is Review.
_PHRASES: tuple[tuple[str, StoryFileStatus], ...] = (
    # English
    ("ready for development", _A),
    ("ready for implementation", _A),
    ("ready for dev", _A),
    ("ready to start", _A),
    ("ready for review", _R),
    ("ready for qa", _R),
    ("in progress", _I),
    ("in development", _I),
    ("in review", _R),
    ("under review", _R),
    ("review", _R),
    ("drafted", _D),
    ("draft", _D),
    ("approved", _A),
    ("fully complete", _DONE),
    ("completed", _DONE),
    ("complete", _DONE),
    ("done", _DONE),
    # Portuguese
    ("pronto para desenvolvimento", _A),
    ("pronto para implementação", _A),
    ("pronto para revisão", _R),
    ("pronta para desenvolvimento", _A),
    ("pronta para revisão", _R),
    ("em desenvolvimento", _I),
    ("em andamento", _I),
    ("em progresso", _I),
    ("em revisão", _R),
    ("rascunho", _D),
    ("aprovado", _A),
    ("aprovada", _A),
    ("concluído", _DONE),
    ("concluída", _DONE),
    ("concluido", _DONE),
    ("concluida", _DONE),
    # Spanish
    ("listo para desarrollo", _A),
    ("listo para revisión", _R),
    ("en progreso", _I),
    ("en desarrollo", _I),
    ("en revisión", _R),
    ("borrador", _D),
    ("aprobado", _A),
    ("aprobada", _A),
    ("completado", _DONE),
    ("completada", _DONE),
    ("terminado", _DONE),
    # French
    ("brouillon", _D),
    ("approuvé", _A),
    ("approuvée", _A),
    ("en cours", _I),
    ("en revue", _R),
    ("terminé", _DONE),
    ("terminée", _DONE),
    # German
    ("entwurf", _D),
    ("genehmigt", _A),
    ("in bearbeitung", _I),
    ("in arbeit", _I),
    ("abgeschlossen", _DONE),
    ("erledigt", _DONE),
    # Korean
    ("초안", _D),
    ("승인됨", _A),
    ("승인", _A),
    ("진행 중", _I),
    ("진행중", _I),
    ("검토 중", _R),
    ("검토중", _R),
    ("검토 대기", _R),
    ("리뷰", _R),
    ("완료", _DONE),
    # Vietnamese
    ("bản nháp", _D),
    ("đang thực hiện", _I),
    ("hoàn thành", _DONE),
    # Chinese
    ("草稿", _D),
    ("已批准", _A),
    ("已审批", _A),
    ("已核准", _A),
    ("进行中", _I),
    ("開發中", _I),
    ("开发中", _I),
    ("待审查", _R),
    ("审查中", _R),
    ("待评审", _R),
    ("评审中", _R),
    ("已完成", _DONE),
    ("完成", _DONE),
    # Japanese
    ("ドラフト", _D),
    ("下書き", _D),
    ("承認済み", _A),
    ("進行中", _I),
    ("実装中", _I),
    ("レビュー", _R),
    ("完了", _DONE),
)

_TEMPLATE_NAMES = {re.sub(r"[\s_-]", "", s.value.lower()): s for s in StoryFileStatus}
_STATUS_LABEL = re.compile(r"^(?:status|状态|狀態|状態|ステータス|상태|estado|situação|statut|trạng thái)\s*[:：]\s*")
_CHECKBOX = re.compile(r"^\[[ xX]\]\s*")


def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    # Words may be glued (InProgress), hyphenated or spaced; after a Latin word another letter means
    # another word ("complete" is not "completely"). Scripts without spaces need no such boundary.
    joined = r"[\s_-]?".join(re.escape(word) for word in phrase.split())
    boundary = r"(?![^\W\d_])" if phrase[-1].isascii() or "\u00c0" <= phrase[-1] <= "\u024f" else ""
    return re.compile(rf"^{joined}{boundary}")


def _compile(phrases: Mapping[str, StoryFileStatus]) -> tuple[tuple[re.Pattern[str], StoryFileStatus], ...]:
    # Longest first, so "ready for review" is never read as something shorter.
    ordered = sorted(phrases.items(), key=lambda item: -len(item[0]))
    return tuple((_phrase_pattern(phrase), status) for phrase, status in ordered if phrase)


_BUILT_IN = _compile(dict(_PHRASES))


def normalize_status(raw: str) -> str:
    """The comparable form of a status value: no markdown, no leading symbols, checkbox or `Status:`
    label, lower case, single spaces."""
    text = re.sub(r"[*_`~]", " ", raw[:MAX_STATUS_CHARS])
    text = " ".join(text.split()).lower()
    text = _strip_leading_symbols(text)
    text = _CHECKBOX.sub("", text)
    text = _strip_leading_symbols(text)
    text = _STATUS_LABEL.sub("", text)
    return _strip_leading_symbols(text)


def _strip_leading_symbols(text: str) -> str:
    index = 0
    while index < len(text) and not text[index].isalnum() and text[index] != "[":
        index += 1
    return text[index:]


def _candidates(text: str) -> list[str]:
    """The value, and a parenthesised translation when one follows it: `완료 (Completed)`."""
    found = [text]
    open_at = text.find("(")
    close_at = text.find(")", open_at + 1)
    if 0 < open_at < close_at:
        found.append(_strip_leading_symbols(text[open_at + 1 : close_at].strip()))
    return found


def map_status(raw: str, aliases: Mapping[str, StoryFileStatus] | None = None) -> StoryFileStatus | None:
    """The template status a written value means, or None when it means none or more than one."""
    text = normalize_status(raw)
    if not text:
        return None
    tables = [_compile({normalize_status(k): v for k, v in aliases.items()})] if aliases else []
    tables.append(_BUILT_IN)
    for table in tables:
        meanings = {status for candidate in _candidates(text) if (status := _lookup(table, candidate))}
        if len(meanings) == 1:
            return meanings.pop()
        if meanings:
            return None  # the value and its translation disagree: not guessed
    return None


def _lookup(table: tuple[tuple[re.Pattern[str], StoryFileStatus], ...], text: str) -> StoryFileStatus | None:
    for pattern, status in table:
        if pattern.match(text):
            return status
    return None


def template_status(value: object) -> StoryFileStatus | None:
    """One of the template's statuses named in configuration (`Done`, `in progress`, `InProgress`)."""
    if not isinstance(value, str):
        return None
    return _TEMPLATE_NAMES.get(re.sub(r"[\s_-]", "", value.lower()))


def parse_status_aliases(value: object, problems: list[str]) -> dict[str, StoryFileStatus]:
    """`status_aliases` from the repo configuration: a mapping of written value to template status."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(
            f"status_aliases should map a written status to one of {KNOWN_STATUSES} "
            f'(for example "QA Approved": Done), not {value!r}; ignored'
        )
        return {}
    aliases: dict[str, StoryFileStatus] = {}
    bad: list[str] = []
    for written, meaning in list(value.items())[: MAX_ALIASES + 1]:
        if len(aliases) >= MAX_ALIASES:
            bad.append(f"more than {MAX_ALIASES} aliases; the rest are ignored")
            break
        status = template_status(meaning)
        key = normalize_status(str(written)) if isinstance(written, str | int | float) else ""
        if not key:
            bad.append(f"{written!r} is not a status someone could write")
        elif status is None:
            bad.append(f"{written!r}: {meaning!r} is not one of {KNOWN_STATUSES}")
        else:
            aliases[key] = status
    if bad:
        problems.append(f"status_aliases: {'; '.join(bad)}")
    return aliases
