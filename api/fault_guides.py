"""What to check on site, per rule and language, read from the fault catalogue (docs/faults.md).

The catalogue is written for people, so it is the single source of what crews read in the
console: each ``## rule-id`` section has its titles on one line (``**English** · *Français* ·
<span ...>العربية</span>``), then an English part, ``### En français`` and ``### بالعربية``; each
part has a paragraph "what it means", a paragraph "what to check on site" followed by numbered
steps, and a line "bring". :func:`parse_fault_guides` is pure; :func:`fault_guides` reads the
file once per process.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

LANGUAGES: Final = ("en", "fr", "ar")
FAULTS_DOC: Final = Path(__file__).resolve().parents[1] / "docs" / "faults.md"

_log: Final = logging.getLogger("smartcity.api")


@dataclass(frozen=True, slots=True)
class _Markers:
    meaning: str
    check: str
    bring: str


_MARKERS: Final = {
    "en": _Markers("**What it means.**", "**What to check on site.**", "Bring:"),
    "fr": _Markers("**Ce que cela signifie.**", "**À vérifier sur place.**", "À emporter :"),
    "ar": _Markers("**المعنى.**", "**ما يجب فحصه في عين المكان.**", "أحضر معك:"),
}
_PART_HEADINGS: Final = {"### En français": "fr", "### بالعربية": "ar"}
_RULE_HEADING: Final = re.compile(r"^## ([a-z0-9](?:[a-z0-9-]*[a-z0-9])?)\s*$")
_TITLES: Final = re.compile(
    r"^\*\*(?P<en>[^*]+)\*\*\s*·\s*\*(?P<fr>[^*]+)\*\s*·\s*<span[^>]*>(?P<ar>[^<]+)</span>\s*$"
)
_STEP: Final = re.compile(r"^(\d+)\.\s+(.*)$")
_LINK: Final = re.compile(r"\[([^\]]+)\]\([^)]*\)")


@dataclass(frozen=True, slots=True)
class FaultGuide:
    """One rule's guidance in one language."""

    language: str
    meaning: str
    check_intro: str
    """Words on the heading line of the checks, such as "In daylight:"; often empty."""
    steps: tuple[str, ...]
    bring: str


@dataclass(frozen=True, slots=True)
class RuleGuide:
    rule_id: str
    titles: Mapping[str, str]
    guides: Mapping[str, FaultGuide]
    """By language; only the languages the catalogue has for this rule."""

    def in_language(self, language: str) -> FaultGuide | None:
        """The guide in ``language``, else in English (the catalogue's first language)."""
        return self.guides.get(language) or self.guides.get("en")


def plain(text: str) -> str:
    """Markdown emphasis, code marks and links as plain words, for a page that shows text."""
    text = _LINK.sub(r"\1", text)
    return " ".join(text.replace("**", "").replace("`", "").split())


def _paragraphs(lines: list[str]) -> list[list[str]]:
    found: list[list[str]] = []
    current: list[str] = []
    for line in lines:
        if line.strip() and not line.strip().startswith(("<div", "</div")):
            current.append(line)
        elif current:
            found.append(current)
            current = []
    if current:
        found.append(current)
    return found


def _steps(paragraphs: list[list[str]]) -> tuple[str, ...]:
    """The numbered steps of the paragraphs after the "what to check" heading."""
    steps: list[str] = []
    for paragraph in paragraphs:
        if not _STEP.match(paragraph[0].strip()):
            break
        for line in paragraph:
            step = _STEP.match(line.strip()) if not line.startswith(" ") else None
            if step is not None:
                steps.append(step.group(2))
            elif steps:
                nested = line.strip().startswith("- ")
                steps[-1] += ("\n" if nested else " ") + line.strip()
    return tuple(
        "\n".join(plain(part) for part in step.split("\n")) for step in steps if step.strip()
    )


def _guide(language: str, lines: list[str]) -> FaultGuide | None:
    markers = _MARKERS[language]
    paragraphs = _paragraphs(lines)
    meaning = check_intro = bring = ""
    steps: tuple[str, ...] = ()
    found_check = False
    for index, paragraph in enumerate(paragraphs):
        text = " ".join(line.strip() for line in paragraph)
        if text.startswith(markers.meaning):
            meaning = plain(text.removeprefix(markers.meaning))
        elif text.startswith(markers.check):
            found_check = True
            check_intro = plain(paragraph[0].strip().removeprefix(markers.check))
            steps = _steps(paragraphs[index + 1 :])
        elif text.startswith(markers.bring):
            bring = plain(text.removeprefix(markers.bring))
    if not found_check or not steps:
        return None
    return FaultGuide(language, meaning, check_intro, steps, bring)


def _rule_guide(rule_id: str, lines: list[str]) -> RuleGuide:
    titles: dict[str, str] = {}
    parts: dict[str, list[str]] = {"en": []}
    language = "en"
    for line in lines:
        heading = _PART_HEADINGS.get(line.strip())
        if heading is not None:
            language = heading
            parts[language] = []
            continue
        title = _TITLES.match(line.strip()) if not titles else None
        if title is not None:
            titles = {code: plain(title.group(code)) for code in LANGUAGES}
            continue
        parts[language].append(line)
    guides = {code: guide for code, body in parts.items() if (guide := _guide(code, body))}
    return RuleGuide(rule_id, titles, guides)


def parse_fault_guides(text: str) -> dict[str, RuleGuide]:
    """The guides of every ``## rule-id`` section of the catalogue ``text`` that has steps."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("## "):
            heading = _RULE_HEADING.match(line)
            current = sections.setdefault(heading.group(1), []) if heading else None
        elif current is not None:
            current.append(line)
    guides = {rule_id: _rule_guide(rule_id, lines) for rule_id, lines in sections.items()}
    return {rule_id: guide for rule_id, guide in guides.items() if guide.guides or guide.titles}


@cache
def fault_guides(path: Path = FAULTS_DOC) -> dict[str, RuleGuide]:
    """The catalogue's guides, read once; none when the file is not there (an installed
    package without the docs): alerts then show no checks rather than failing."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        _log.warning("no fault catalogue at %s (%s): alerts will show no checks", path, error)
        return {}
    return parse_fault_guides(text)
