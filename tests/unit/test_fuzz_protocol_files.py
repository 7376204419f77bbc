"""Fuzzing what people write for the protocol package: YAML, site files, durations, calendars.

Each parser takes any text and either returns or raises its own documented error with a
message (read_yaml: the caller's error; parse_site: SiteFileError; parse_duration: ValueError),
never a TypeError, a RecursionError or a UnicodeError. Valid inputs, generated, are accepted
with exactly their meaning.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Final

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from protocol.calendar import DayKind, MoroccanCalendar
from protocol.durations import parse_duration
from protocol.sites import SiteFileError, parse_site
from protocol.topics import DeviceClass
from protocol.yamlfile import MAX_DEPTH, read_yaml
from tests.unit.fuzz_strategies import (
    FUZZ,
    NASTY_STRINGS,
    Document,
    identifiers,
    mutated,
    mutated_text,
    outcome,
    to_yaml,
    yaml_texts,
)

SEFROU: Final = Path(__file__).resolve().parents[2] / "sites" / "sefrou.yaml"
DEEP_BLOCK_SEQUENCE: Final = "".join("  " * level + "-\n" for level in range(900))


class FuzzFileError(ValueError):
    """The error a caller of read_yaml asks for."""


def small_sefrou() -> dict[str, Document]:
    """sites/sefrou.yaml cut down to one of each shape, so that a parse takes a millisecond."""
    full = yaml.safe_load(SEFROU.read_text(encoding="utf-8"))
    runs = full["streetlight_runs"]
    with_cabinets = next(run for run in runs if "cabinets" in run and "path" in run)
    with_ends = next(run for run in runs if "start" in run and "cabinet" in run)
    buildings = full["buildings"]
    return {
        "site": full["site"],
        "models": full["models"],
        "streetlight_runs": [{**with_cabinets, "count": 4}, {**with_ends, "count": 3}],
        "devices": full["devices"][:3],
        "buildings": [
            buildings[0],
            next(b for b in buildings if any(z.get("heating") is False for z in b["zones"])),
            {**buildings[1], "id": "annex", "zones": ["hall", {"id": "office", "area_m2": 12.5}]},
        ],
    }


SITE_SEED: Final = small_sefrou()
SITE_SEED_TEXT: Final = to_yaml(SITE_SEED)


# ------------------------------------------------------------------------------- YAML


@FUZZ
@given(text=yaml_texts())
@example(text=DEEP_BLOCK_SEQUENCE)
@example(text="a: \ud800")
@example(text="&a [*a]")
def test_read_yaml_returns_or_raises_the_callers_error(text: str) -> None:
    outcome(lambda: read_yaml(text, "fuzz.yaml", FuzzFileError), FuzzFileError)


@pytest.mark.parametrize(
    "text",
    [
        DEEP_BLOCK_SEQUENCE,
        "a: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),
        "a: &a [*a]",
        "a: &a {b: [*a]}",
    ],
)
def test_documents_nested_too_deeply_are_refused_with_the_callers_error(text: str) -> None:
    with pytest.raises(FuzzFileError, match=f"nested more than {MAX_DEPTH} levels deep"):
        read_yaml(text, "deep.yaml", FuzzFileError)


def test_an_alias_bomb_is_read_at_once() -> None:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, 10)]
    _, document = read_yaml("\n".join(lines), "bomb.yaml", FuzzFileError)
    assert isinstance(document, dict)
    assert len(document) == 10


def test_files_nested_as_deep_as_allowed_are_read() -> None:
    text = "a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    _, document = read_yaml(text, "deep.yaml", FuzzFileError)
    assert isinstance(document, dict)


# ------------------------------------------------------------------------------- site files


def parses_or_refuses(text: str) -> None:
    inventory = outcome(lambda: parse_site(text, "fuzz.yaml"), SiteFileError)
    if inventory is not None:
        ids = [device.id for device in inventory.devices]
        assert len(ids) == len(set(ids))
        for device in inventory.devices:
            for coordinate in (device.latitude, device.longitude):
                assert coordinate is None or math.isfinite(coordinate)


def test_the_seed_is_a_valid_site() -> None:
    inventory = parse_site(SITE_SEED_TEXT)
    assert len(inventory.by_class(DeviceClass.STREETLIGHT)) == 7


DEEP: Final = "[" * 990 + "]" * 990


@FUZZ
@given(text=yaml_texts())
@example(text=DEEP_BLOCK_SEQUENCE)
# A RecursionError: the error message showed the deep list with repr().
@example(
    text=f"site: {{id: s, name: n, timezone: UTC, latitude: 1, longitude: 1}}\n"
    f"devices: [{{id: d, class: {DEEP}}}]"
)
@example(text=f"site: {DEEP}")
def test_any_yaml_is_a_site_or_a_site_file_error(text: str) -> None:
    parses_or_refuses(text)


@FUZZ
@given(document=mutated(SITE_SEED))
def test_almost_valid_sites_parse_or_say_what_is_wrong(document: Document) -> None:
    parses_or_refuses(to_yaml(document))


@FUZZ
@given(text=mutated_text(SITE_SEED_TEXT))
def test_mistyped_site_files_parse_or_say_what_is_wrong(text: str) -> None:
    parses_or_refuses(text)


latitudes = st.floats(-89, 89)
longitudes = st.floats(-179, 179)


@FUZZ
@given(
    prefix=identifiers(),
    count=st.integers(1, 300),
    start=st.tuples(latitudes, longitudes),
    end=st.tuples(latitudes, longitudes),
)
def test_a_valid_run_expands_to_count_lights_from_start_to_end(
    prefix: str, count: int, start: tuple[float, float], end: tuple[float, float]
) -> None:
    document = {
        "site": SITE_SEED["site"],
        "streetlight_runs": [
            {
                "id_prefix": prefix,
                "street_group": "street",
                "name": "A street",
                "count": count,
                "start": list(start),
                "end": list(end),
            }
        ],
    }
    text = to_yaml(document)
    inventory = outcome(lambda: parse_site(text), SiteFileError)
    if inventory is None:  # refused: only for lights on a street of zero length
        assert count > 1
        return
    lights = inventory.devices
    assert len(lights) == count
    width = max(3, len(str(count)))
    assert [light.id for light in lights] == [
        f"{prefix}-{index:0{width}d}" for index in range(1, count + 1)
    ]
    assert (lights[0].latitude, lights[0].longitude) == (round(start[0], 6), round(start[1], 6))
    if count > 1:
        assert (lights[-1].latitude, lights[-1].longitude) == (
            round(end[0], 6),
            round(end[1], 6),
        )


# ------------------------------------------------------------------------------- durations

UNITS: Final = {"s": 1, "m": 60, "h": 3_600, "d": 86_400}


@FUZZ
@given(
    text=st.text(max_size=30)
    | st.sampled_from(NASTY_STRINGS)
    | st.builds(
        lambda sign, number, space, unit: f"{sign}{number}{space}{unit}",
        st.sampled_from(("", "+", "-", "++")),
        st.sampled_from(("1", "0", "1.5", "1e3", "99999999999", "1" * 400, ".5", "5.", "\u0661")),
        st.sampled_from(("", " ", "\t", "\x00")),
        st.sampled_from(("s", "m", "h", "d", "w", "", "S", "ms")),
    )
)
@example(text="1" * 400 + "d")
@example(text="٣m")  # an Arabic-Indic digit: \d matches it
def test_any_text_is_a_duration_or_a_value_error(text: str) -> None:
    duration = outcome(lambda: parse_duration(text), ValueError)
    if duration is not None:
        assert duration >= dt.timedelta(0)


@FUZZ
@given(number=st.integers(0, 10**10), unit=st.sampled_from(sorted(UNITS)), plus=st.booleans())
@example(number=10**9, unit="d", plus=False)  # one day past the longest timedelta
@example(number=999_999_999, unit="d", plus=True)  # the longest accepted
def test_durations_mean_what_they_say(number: int, unit: str, plus: bool) -> None:
    text = f"{'+' if plus else ''}{number}{unit}"
    seconds = number * UNITS[unit]
    duration = outcome(lambda: parse_duration(text), ValueError)
    longest = dt.timedelta.max.days * 86_400 + 86_399  # in whole seconds: a float rounds up
    if seconds <= longest:
        assert duration == dt.timedelta(seconds=seconds)
    else:
        assert duration is None


# ------------------------------------------------------------------------------- calendar


@st.composite
def calendars(draw: st.DrawFn) -> MoroccanCalendar:
    """Calendars as a strategy file's corrections make them (control/strategy.py)."""
    first_year = draw(st.integers(2015, 2045))
    years = tuple(range(first_year, first_year + draw(st.integers(1, 3))))
    any_dates = st.dates()
    ramadans = draw(
        st.lists(
            st.builds(
                lambda first, length: (first, first + dt.timedelta(days=length)),
                st.dates(max_value=dt.date(9999, 11, 1)),
                st.integers(27, 30),
            ),
            max_size=3,
        )
    )
    return MoroccanCalendar(
        years,
        extra_holidays=frozenset(draw(st.lists(any_dates, max_size=4))),
        not_holidays=frozenset(draw(st.lists(any_dates, max_size=4))),
        ramadans=tuple(ramadans),
    )


@FUZZ
@given(calendar=calendars(), day=st.dates())
def test_every_day_has_a_kind_and_corrections_win(calendar: MoroccanCalendar, day: dt.date) -> None:
    kind = calendar.kind(day)
    assert isinstance(kind, DayKind)
    for added in calendar.extra_holidays - calendar.not_holidays:
        assert calendar.kind(added) is DayKind.HOLIDAY
    for removed in calendar.not_holidays:
        assert removed not in calendar.holidays
    # A Ramadan announced replaces the one around it (estimated, or announced before it).
    for first, last in calendar.ramadans[-1:]:
        for offset in range((last - first).days + 1):
            announced = first + dt.timedelta(days=offset)
            assert calendar.kind(announced) in (DayKind.RAMADAN, DayKind.HOLIDAY)
