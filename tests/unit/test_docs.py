"""The docs say what the code does: protocol.md, agent.md, simulators.md and the README.

Each test reads a document and the code it describes, so that one cannot change without the
other.
"""

import inspect
import itertools
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import get_args

import msgspec
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from typer.testing import CliRunner

from edge_agents.agent import FIRMWARE, REMEMBERED_COMMANDS, AgentSettings
from edge_agents.config import AgentConfig
from edge_agents.control import (
    LOCAL_THERMOSTAT,
    THERMOSTAT_DEADBAND_K,
    VALVE_PROPORTIONAL_BAND_K,
    sign_brightness_for_ambient,
)
from protocol.catalogue import CATALOGUE, ValueKind
from protocol.commands import (
    ACTIONS,
    DEFAULT_SCHEDULE,
    FROST_PROTECTION_C,
    Refusal,
    SetSchedule,
    check_command,
)
from protocol.decoding import DEFAULT_WINDOW, RejectReason
from protocol.faults import FAULT_CLASSES, FaultType
from protocol.payloads import CommandPayload
from protocol.sites import load_site
from protocol.topics import DeviceClass
from simulators.city import DEFAULT_STEP_S, SENSOR_DRIFT_K_PER_HOUR, SENSOR_DRIFT_MAX_K
from simulators.environment import DAYS_DRAWN
from simulators.faults import (
    GROUND_TRUTH_COLUMNS,
    TYPICAL_DURATION,
    UNTIL_REPAIRED,
    load_fault_plan,
)
from simulators.simulate import CATCH_UP_SPAN, RANDOM_FAULT_HORIZON
from simulators.streetlight_fleet import (
    FADED_CAPACITY,
    SHADE_BELOW_ELEVATION,
    SHADED_SHARE,
    SOILED_SHARE,
)
from smartcity import cli
from smartcity.cli import app
from storage import faults as faults_db

ROOT = Path(__file__).parents[2]
PROTOCOL_DOC = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
AGENT_DOC = (ROOT / "docs" / "agent.md").read_text(encoding="utf-8")
SIMULATORS_DOC = (ROOT / "docs" / "simulators.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")
SITE_FILE = ROOT / "sites" / "sefrou.yaml"


def _flat(text: str) -> str:
    """The text with every run of white space (line breaks included) as one space."""
    return " ".join(text.split())


FLAT_AGENT_DOC, FLAT_SIMULATORS_DOC, FLAT_README = map(_flat, (AGENT_DOC, SIMULATORS_DOC, README))


def test_every_metric_is_documented_with_its_unit_and_range() -> None:
    for spec in CATALOGUE.values():
        assert f"Expected reporting interval: **{spec.expected_interval_s} s**" in PROTOCOL_DOC
        for metric in spec.metrics.values():
            valid = (
                "true / false"
                if metric.kind is ValueKind.FLAG
                else f"{metric.minimum:g} .. {metric.maximum:g}"
            )
            row = f"| `{metric.name}` | {metric.unit or '-'} | {valid} | {metric.kind} |"
            assert row in PROTOCOL_DOC, f"docs/protocol.md lacks or misstates {metric.name}"


def test_every_rejection_reason_is_documented() -> None:
    for reason in RejectReason:
        assert f"| `{reason}` |" in PROTOCOL_DOC


# ----------------------------------------------------------------------------- the edge agent


def _row(document: str, prefix: str) -> str:
    """The table row of ``document`` that starts with ``prefix``; fails if there is none."""
    rows = [line for line in document.splitlines() if line.startswith(prefix)]
    assert len(rows) == 1, f"expected one row starting {prefix!r}, found {len(rows)}"
    return rows[0]


def _section(document: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    start = document.index(f"\n{heading}\n")
    ends = [
        document.find(f"\n{'#' * depth} ", start + len(heading) + 2)
        for depth in range(1, len(level) + 1)
    ]
    end = min((e for e in ends if e != -1), default=len(document))
    return document[start:end]


def _yaml_blocks(text: str) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)


def _config_default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default is None:
        return "none"
    return f"`{field.default}`"


def _config_fields(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    for name, field in model.model_fields.items():
        sections = [
            member
            for member in get_args(field.annotation) or (field.annotation,)
            if isinstance(member, type) and issubclass(member, BaseModel)
        ]
        if sections:
            for section in sections:
                yield from _config_fields(section, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", field


def test_every_configuration_field_is_documented_with_its_default() -> None:
    for path, field in _config_fields(AgentConfig):
        row = _row(AGENT_DOC, f"| `{path}` |")
        assert row.startswith(f"| `{path}` | {_config_default(field)} |"), row


def test_the_configuration_examples_are_valid() -> None:
    blocks = _yaml_blocks(_section(AGENT_DOC, "### Configuration file"))
    kinds = {AgentConfig.model_validate(yaml.safe_load(block)).driver.kind for block in blocks}
    assert kinds == {"modbus", "simulated"}


def _param_default(field: msgspec.inspect.Field) -> str:
    if field.required:
        return "required"
    if field.default is None:
        return "none"
    if isinstance(field.default, str):
        return f'`"{field.default}"`'
    if isinstance(field.default, bool):
        return f"`{str(field.default).lower()}`"  # as JSON writes it
    return f"`{field.default!r}`"


def _param_valid(kind: msgspec.inspect.Type) -> str | None:
    """How the docs write the valid values of a parameter's type, where that is mechanical."""
    if isinstance(kind, msgspec.inspect.UnionType):
        kinds = [k for k in kind.types if not isinstance(k, msgspec.inspect.NoneType)]
        return _param_valid(kinds[0]) if len(kinds) == 1 else None
    if isinstance(kind, msgspec.inspect.IntType | msgspec.inspect.FloatType):
        return f"{kind.ge:g} .. {kind.le:g}"
    if isinstance(kind, msgspec.inspect.ListType):
        return f"{kind.min_length} .. {kind.max_length}"
    if isinstance(kind, msgspec.inspect.StrType) and kind.max_length is not None:
        return f"at most {kind.max_length} characters"
    if isinstance(kind, msgspec.inspect.EnumType):
        return ", ".join(f"`{member.value}`" for member in kind.cls)
    return None


def _params(
    struct: type[msgspec.Struct], prefix: str = ""
) -> Iterator[tuple[str, msgspec.inspect.Field]]:
    """Each parameter of a command, nested ones as ``steps[].start``, with its msgspec field."""
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    for field in info.fields:
        yield f"{prefix}{field.name}", field
        item = field.type.item_type if isinstance(field.type, msgspec.inspect.ListType) else None
        if isinstance(item, msgspec.inspect.StructType):
            yield from _params(item.cls, f"{prefix}{field.name}[].")


def test_every_command_action_and_parameter_is_documented() -> None:
    for device_class, actions in ACTIONS.items():
        for action, params_type in actions.items():
            for name, field in _params(params_type):
                row = _row(AGENT_DOC, f"| `{action}` | {device_class} | `{name}` |")
                cells = [cell.strip() for cell in row.strip("|").split("|")]
                valid = _param_valid(field.type)
                if valid is not None:
                    assert cells[3].startswith(valid), row
                assert cells[4] == _param_default(field), row


def test_the_documented_command_refusals_are_the_codes_words() -> None:
    now = datetime(2026, 11, 28, 18, tzinfo=UTC)

    def reason(device_class: DeviceClass, action: str, **params: object) -> str:
        command = CommandPayload(
            v=1,
            id="c-1",
            issued_at=now,
            expires_at=now + timedelta(minutes=5),
            action=action,
            params=dict(params),
        )
        refusal = check_command(device_class, command, now)
        assert isinstance(refusal, Refusal)
        return refusal.reason

    assert reason(DeviceClass.STREETLIGHT, "open_valve") in FLAT_AGENT_DOC
    assert reason(DeviceClass.STREETLIGHT, "set_dimming", level=140) in FLAT_AGENT_DOC


def test_the_local_program_is_documented_with_the_codes_figures() -> None:
    for step in DEFAULT_SCHEDULE.steps:
        _row(AGENT_DOC, f"| {step.start} | {step.level:g} % |")
    dark = SetSchedule(steps=DEFAULT_SCHEDULE.steps).dark_below_elevation
    assert DEFAULT_SCHEDULE.dark_below_elevation == dark
    assert f"`dark_below_elevation` ({dark:g} deg by default)" in FLAT_AGENT_DOC
    thermostat = LOCAL_THERMOSTAT
    assert (
        f"heating setpoint {thermostat.heating_setpoint:g} C, "
        f"cooling setpoint {thermostat.cooling_setpoint:g} C" in FLAT_AGENT_DOC
    )
    assert f"below {FROST_PROTECTION_C:g} C the zone is heated" in FLAT_AGENT_DOC
    assert f"+/- {THERMOSTAT_DEADBAND_K:g} K" in FLAT_AGENT_DOC
    assert f"/ {VALVE_PROPORTIONAL_BAND_K:g} K" in FLAT_AGENT_DOC
    assert f"{sign_brightness_for_ambient(10):g} % at 10 lx" in FLAT_AGENT_DOC
    assert f"to {sign_brightness_for_ambient(40_000):g} % at 40,000 lx" in FLAT_AGENT_DOC
    assert f"`autonomy_after_s` ({AgentSettings().autonomy_after_s} s)" in FLAT_AGENT_DOC
    assert f"the last {REMEMBERED_COMMANDS} ids" in FLAT_AGENT_DOC
    assert f"`{FIRMWARE}`" in FLAT_AGENT_DOC


# ----------------------------------------------------------------------------- the simulators


def _classes(fault: FaultType) -> str:
    classes = FAULT_CLASSES[fault]
    return "any" if classes == frozenset(DeviceClass) else ", ".join(sorted(classes))


def _duration(span: timedelta) -> str:
    days = span / timedelta(days=1)
    return f"{days:g} days" if days >= 2 else f"{span / timedelta(hours=1):g} h"


def test_every_fault_type_is_documented_with_its_classes() -> None:
    for fault in FaultType:
        _row(SIMULATORS_DOC, f"| `{fault}` | {_classes(fault)} |")


def test_random_fault_durations_are_the_codes() -> None:
    for fault, span in TYPICAL_DURATION.items():
        _row(SIMULATORS_DOC, f"| `{fault}` | {_duration(span)} |")
    _row(SIMULATORS_DOC, f"| every other fault (until repaired) | {_duration(UNTIL_REPAIRED)} |")
    horizon = f"the {RANDOM_FAULT_HORIZON.days} days after the start of a live run"
    assert horizon in FLAT_SIMULATORS_DOC


def test_the_fault_file_example_loads(tmp_path: Path) -> None:
    blocks = _yaml_blocks(_section(SIMULATORS_DOC, "### Fault file"))
    assert len(blocks) == 1
    path = tmp_path / "faults.yaml"
    path.write_text(blocks[0], encoding="utf-8")
    start = datetime(2026, 11, 28, 12, tzinfo=UTC)
    plan = load_fault_plan(path, load_site(SITE_FILE).devices, start)
    document = yaml.safe_load(blocks[0])
    assert len(plan.events) == len(document["faults"])
    assert plan.random_per_device_year == document["random"]["per_device_year"]


def test_the_documented_figures_are_the_codes() -> None:
    doc = FLAT_SIMULATORS_DOC
    assert f"one grid of {DEFAULT_STEP_S} s" in doc
    assert f"{DAYS_DRAWN:,} days" in doc
    assert f"starts {CATCH_UP_SPAN / timedelta(hours=1):g} hours ago" in doc
    assert f"more than {DEFAULT_WINDOW.max_ahead / timedelta(minutes=1):g} minutes ahead" in doc
    assert f"{SENSOR_DRIFT_K_PER_HOUR:g} K per hour" in doc
    assert f"up to {SENSOR_DRIFT_MAX_K:g} K" in doc
    assert f"{SOILED_SHARE * 100:g} % of the light reaches the cells" in doc
    assert f"{SHADED_SHARE * 100:g} % of the light" in doc
    assert f"below {SHADE_BELOW_ELEVATION:g} deg" in doc
    assert f"{FADED_CAPACITY * 100:g} % of its capacity left" in doc
    columns = ", ".join(f"`{column}`" for column in GROUND_TRUTH_COLUMNS)
    assert f"columns {columns}" in doc
    insert = re.search(r"INSERT INTO fault_ground_truth \(([^)]*)\)", inspect.getsource(faults_db))
    assert insert is not None
    table = ", ".join(f"`{column.strip()}`" for column in insert.group(1).split(","))
    assert f"columns {table}" in doc


# ----------------------------------------------------------------------------- README


def _readme_commands() -> list[list[str]]:
    """Each command of the README's table, as its words (options and arguments included)."""
    table = _section(README, "## The `smartcity` command")
    commands = []
    for line in table.splitlines():
        if line.startswith("| `smartcity"):
            first_cell = line.split("|")[1]
            commands += [cell.split() for cell in re.findall(r"`(smartcity [^`]*)`", first_cell)]
    return commands


def _offers(help_text: str, option: str) -> bool:
    """Whether ``help_text`` lists ``option`` itself (``--share`` is not ``--share-group``)."""
    return re.search(rf"{re.escape(option)}(?![a-z-])", help_text) is not None


def _help(words: list[str]) -> str:
    result = CliRunner().invoke(app, [*words, "--help"])
    assert result.exit_code == 0, f"smartcity {' '.join(words)} --help: {result.output}"
    return result.output


def test_every_command_of_the_readme_exists_with_its_options() -> None:
    commands = _readme_commands()
    assert len(commands) >= 12
    for words in commands:
        name = list(itertools.takewhile(lambda w: re.fullmatch(r"[a-z][a-z-]*", w), words[1:]))
        text = _help(name)
        for option in re.findall(r"--[a-z][a-z-]*", " ".join(words)):
            assert _offers(text, option), f"smartcity {' '.join(name)} has no {option}"


def test_the_readme_options_of_up_exist() -> None:
    options = re.search(r"Options: `\./scripts/up --help` \(([^)]*)\)", FLAT_README)
    assert options is not None
    named = re.findall(r"--[a-z][a-z-]*", options.group(1))
    assert len(named) >= 3
    text = _help(["up"])
    for option in named:
        assert _offers(text, option), option


def test_the_options_the_docs_name_exist() -> None:
    known = "".join(
        _help(words) for words in (["simulate"], ["history"], ["bench", "simulate"], ["up"])
    )
    for option in set(re.findall(r"`(--[a-z][a-z-]*)", SIMULATORS_DOC)):
        assert _offers(known, option), option
    assert _offers(_help(["agent"]), "--config")


def test_the_readme_describes_the_site_and_the_defaults_of_up() -> None:
    inventory = load_site(SITE_FILE)
    count = Counter(device.device_class for device in inventory.devices)
    buildings = {device.building for device in inventory.devices if device.building}
    assert f"the {len(inventory.devices):,} devices of `sites/sefrou.yaml`" in FLAT_README
    assert f"{count[DeviceClass.STREETLIGHT]:,} solar streetlights" in FLAT_README
    assert f"{count[DeviceClass.SIGNAGE]} signage panels" in FLAT_README
    assert (
        f"{count[DeviceClass.BUILDING]} building zones in {len(buildings)} municipal buildings"
        in FLAT_README
    )
    rate = inspect.signature(cli.up).parameters["random_faults"].default
    assert f"{rate:g} per device-year" in FLAT_README
    assert f"{rate:g} random faults per device-year" in FLAT_SIMULATORS_DOC
    lights = CATALOGUE[DeviceClass.STREETLIGHT].expected_interval_s // 60
    assert CATALOGUE[DeviceClass.SIGNAGE].expected_interval_s == 60
    assert CATALOGUE[DeviceClass.BUILDING].expected_interval_s == 60
    assert (
        f"streetlights report every {lights} minutes and signs and building zones every minute"
        in FLAT_README
    )
    assert "publish-demo" not in FLAT_README
