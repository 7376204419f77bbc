"""Command validation: the same words on the platform and on the device."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from protocol.commands import HvacMode, Refusal, SetDimming, SetHvac, ValidCommand, check_command
from protocol.payloads import PROTOCOL_VERSION, CommandPayload
from protocol.topics import DeviceClass

NOW = datetime(2026, 1, 12, 20, tzinfo=UTC)


def command(
    action: str, expires_in: timedelta = timedelta(minutes=5), **params: object
) -> CommandPayload:
    return CommandPayload(
        v=PROTOCOL_VERSION,
        id="c-1",
        issued_at=NOW - timedelta(seconds=1),
        expires_at=NOW + expires_in,
        action=action,
        params=dict(params),
    )


def test_a_valid_command_is_parsed_into_its_parameters() -> None:
    checked = check_command(DeviceClass.STREETLIGHT, command("set_dimming", level=35), NOW)
    assert isinstance(checked, ValidCommand)
    assert checked.params == SetDimming(level=35)


def test_an_expired_command_is_refused_as_expired() -> None:
    checked = check_command(
        DeviceClass.STREETLIGHT, command("set_dimming", timedelta(seconds=-1), level=35), NOW
    )
    assert checked == Refusal("expired", checked.reason) if isinstance(checked, Refusal) else False


def test_an_action_of_another_class_is_refused_naming_the_known_ones() -> None:
    checked = check_command(DeviceClass.SIGNAGE, command("set_hvac", mode="heat"), NOW)
    assert isinstance(checked, Refusal)
    assert checked.outcome == "rejected"
    assert "set_brightness, set_message" in checked.reason


def test_bad_parameters_are_refused_naming_the_field() -> None:
    for params in ({"level": 140}, {"level": "full"}, {"level": 50, "colour": "red"}, {}):
        checked = check_command(DeviceClass.STREETLIGHT, command("set_dimming", **params), NOW)
        assert isinstance(checked, Refusal), params
        assert checked.outcome == "rejected"
        assert "set_dimming" in checked.reason


def test_contradictory_hvac_setpoints_are_refused() -> None:
    checked = check_command(
        DeviceClass.BUILDING,
        command("set_hvac", mode="auto", heating_setpoint=25, cooling_setpoint=21),
        NOW,
    )
    assert isinstance(checked, Refusal)
    assert "never heated and cooled at once" in checked.reason


def test_night_ventilation_and_blinds_are_sent_only_when_used() -> None:
    """An agent that predates them refuses unknown fields: a setting that leaves them alone
    does not carry them."""
    plain = msgspec.json.decode(msgspec.json.encode(SetHvac(mode=HvacMode.COOL)))
    assert "ventilate_to" not in plain
    assert "shade" not in plain
    used = msgspec.json.decode(
        msgspec.json.encode(SetHvac(mode=HvacMode.COOL, ventilate_to=22.0, shade=True))
    )
    assert used["ventilate_to"] == 22.0
    assert used["shade"] is True


def test_bad_night_ventilation_and_blinds_are_refused_naming_the_field() -> None:
    for params, field in (
        ({"ventilate_to": 40}, "ventilate_to"),
        ({"ventilate_to": "cool"}, "ventilate_to"),
        ({"shade": "down"}, "shade"),
    ):
        checked = check_command(
            DeviceClass.BUILDING, command("set_hvac", mode="cool", **params), NOW
        )
        assert isinstance(checked, Refusal), params
        assert checked.outcome == "rejected"
        assert field in checked.reason
