"""Commands through the API, end to end: sent over the real broker to a real edge agent (on a
simulated device), answered on its acknowledgement topic, stored by the real ingest, and
followed with GET; refused by the API, refused by the agent, unanswered, and the broker down.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.command_queries import group_of, member_ids, new_group_id
from api.config import ApiConfig
from api.state import ApiState
from edge_agents.agent import Agent, AgentIdentity, AgentSettings
from edge_agents.network import NetworkLoop
from edge_agents.spool import Spool
from runtime.local_services import LocalMosquitto
from simulators.city import SimulatedCity
from tests.integration.api_fixtures import ApiSession, sefrou
from tests.integration.helpers import running_ingest, wait_until
from tests.simulation_helpers import Recorder

pytestmark = pytest.mark.integration

COMMANDS = "/api/v1/commands"
GROUP_COMMANDS = "/api/v1/groups/commands"
DIM = {"action": "set_dimming", "params": {"level": 40, "hold_s": 3600}, "reason": "test dim"}


class Rig:
    """A real edge agent on a simulated Sefrou device, run by a thread of its own (its spool
    is SQLite, which stays in the thread that opened it)."""

    def __init__(self, spool_path: Path, port: int, device_id: str, start: datetime) -> None:
        self.device_id = device_id
        self._made = threading.Event()
        self._stop = threading.Event()
        self._args = (spool_path, port, start)
        self.agent: Agent | None = None
        self._thread = threading.Thread(target=self._run, name=f"agent-{device_id}", daemon=True)
        self._thread.start()
        assert self._made.wait(30), "the agent was not made"

    def _run(self) -> None:
        spool_path, port, start = self._args
        inventory = sefrou().only(self.device_id)
        city = SimulatedCity(inventory, start=start, seed=3)
        device = inventory.devices[0]
        identity = AgentIdentity(
            inventory.site.id,
            device.device_class,
            device.id,
            device.latitude or inventory.site.latitude,
            device.longitude or inventory.site.longitude,
            inventory.site.timezone,
        )
        spool = Spool(spool_path, 4 * 1024 * 1024, timedelta(days=7))
        agent = Agent(
            identity,
            AgentSettings(broker_port=port, reconnect_min_s=0.2, reconnect_max_s=0.5),
            city.driver(self.device_id),
            spool,
        )
        network = NetworkLoop()
        network.attach(agent.client)
        agent.tick(start)
        self.agent = agent
        self._made.set()
        try:
            while not self._stop.is_set():
                agent.maintain_connection()
                network.poll(0.02)
        finally:
            network.close()
            spool.close()

    @property
    def connected(self) -> bool:
        return self.agent is not None and self.agent.connected

    @property
    def applied(self) -> int:
        return 0 if self.agent is None else self.agent.counters.commands_applied

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture
def agent_rig(tmp_path: Path, broker: LocalMosquitto) -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(device_id: str, clock_ahead: timedelta = timedelta(0)) -> Rig:
        start = datetime.now(UTC) + clock_ahead
        rig = Rig(tmp_path / f"{device_id}.sqlite", broker.port, device_id, start)
        made.append(rig)
        wait_until(lambda: rig.connected, 10, "the agent to connect")
        return rig

    yield make
    for rig in made:
        rig.stop()


def _connected(api: ApiSession) -> None:
    state: ApiState = api.client.app.state.api  # type: ignore[attr-defined]
    assert state.publisher is not None
    assert state.publisher.wait_connected(10), "the API did not connect to the broker"


def _send(api: ApiSession, device_id: str, who: str = "energy", **body: Any) -> Any:
    return api.client.post(
        f"/api/v1/devices/{device_id}/commands", headers=api.headers(who), json={**DIM, **body}
    )


def _problem(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    detail: str = response.json()["detail"]
    return detail


def _follow(api: ApiSession, command_id: str, wait: float = 15) -> dict[str, Any]:
    response = api.client.get(
        f"{COMMANDS}/{command_id}", headers=api.headers("technician"), params={"wait": wait}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _commands_in_table(url: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(url) as connection:
        return [
            (row[0], row[1], row[2])
            for row in connection.execute("SELECT id, device_id, source FROM commands ORDER BY id")
        ]


def test_a_command_is_applied_by_the_agent_and_its_answer_followed(
    api: ApiSession, broker: LocalMosquitto, agent_rig: Callable[..., Rig]
) -> None:
    rig = agent_rig("sl-menzel-n-001")
    _connected(api)
    recorder = Recorder(broker.port, client_id="command-recorder")
    with running_ingest(api.database_url, broker.port):
        sent = _send(api, "sl-menzel-n-001")
        assert sent.status_code == 201, sent.text
        command = sent.json()
        assert command["kind"] == "device"
        assert command["outcome"] == "pending"
        assert command["source"] == "api:energy"
        assert command["reason"] == "test dim"
        assert command["params"] == {"level": 40.0, "hold_s": 3600}
        issued = datetime.fromisoformat(command["issued_at"])
        assert datetime.fromisoformat(command["expires_at"]) - issued == timedelta(minutes=2)
        followed = _follow(api, command["id"])
    recorder.wait_for(lambda: bool(recorder.of("sl-menzel-n-001", "cmd_ack")))
    recorder.close()
    assert followed["outcome"] == "applied", followed
    assert followed["acknowledged_at"] is not None
    assert [a["outcome"] for a in followed["acks"]] == ["applied"]
    assert rig.applied == 1
    listed = api.client.get(
        COMMANDS,
        headers=api.headers("technician"),
        params={"device_id": "sl-menzel-n-001", "outcome": "applied"},
    ).json()
    assert [c["id"] for c in listed["items"]] == [command["id"]]
    with psycopg.connect(api.database_url) as connection:
        audit = connection.execute(
            "SELECT actor, target, detail FROM audit_log WHERE action = 'command.send'"
        ).fetchall()
    assert audit == [
        (
            "energy",
            "sl-menzel-n-001",
            {"command_id": command["id"], "command_action": "set_dimming"},
        )
    ]


def test_a_command_the_agent_receives_too_late_is_expired(
    api: ApiSession, broker: LocalMosquitto, agent_rig: Callable[..., Rig]
) -> None:
    # The device's clock runs three minutes ahead: a one-minute command arrives expired.
    agent_rig("sl-menzel-n-002", clock_ahead=timedelta(minutes=3))
    _connected(api)
    with running_ingest(api.database_url, broker.port):
        sent = _send(api, "sl-menzel-n-002", who="admin", expires_in_s=60)
        assert sent.status_code == 201, sent.text
        followed = _follow(api, sent.json()["id"])
    assert followed["outcome"] == "expired", followed
    assert "expired" in followed["outcome_reason"]


def test_params_the_protocol_refuses_are_refused_before_sending(api: ApiSession) -> None:
    _connected(api)
    too_bright = _send(api, "sl-menzel-n-001", params={"level": 140})
    assert "invalid params for set_dimming" in _problem(too_bright, 422)
    assert "level" in _problem(too_bright, 422)
    unknown = _send(api, "sl-menzel-n-001", action="set_hvac", params={"mode": "heat"})
    assert "knows no action 'set_hvac'" in _problem(unknown, 422)
    assert "set_dimming, set_schedule" in _problem(unknown, 422)
    close = _send(
        api, "town-hall-archives", action="set_hvac",
        params={"mode": "auto", "heating_setpoint": 22, "cooling_setpoint": 22.5},
    )  # fmt: skip
    assert "twice the deadband" in _problem(close, 422)
    extra = _send(api, "sl-menzel-n-001", params={"level": 10, "colour": "red"})
    assert "colour" in _problem(extra, 422)
    _problem(_send(api, "sl-menzel-n-001", expires_in_s=5), 422)
    _problem(_send(api, "sl-menzel-n-001", expires_in_s=3601), 422)
    _problem(_send(api, "sl-menzel-n-001", action="Set Dimming"), 422)
    _problem(_send(api, "SL_1"), 422)
    assert "no device 'sl-nowhere'" in _problem(_send(api, "sl-nowhere"), 404)
    # Valid for the protocol, refused by the database (NUL): nothing of it is kept.
    nul = _send(api, "sign-menzel-entry", action="set_message",
                params={"message_id": 3, "text": "a\u0000b"})  # fmt: skip
    assert "database refused" in _problem(nul, 422)
    assert _commands_in_table(api.database_url) == []
    with psycopg.connect(api.database_url) as connection:
        assert connection.execute("SELECT count(*) FROM audit_log").fetchone() == (0,)


def test_only_energy_managers_and_admins_send_and_crews_do_not_read(api: ApiSession) -> None:
    _connected(api)
    for who in ("technician", "crew-north"):
        assert "needs the role energy manager, admin" in _problem(
            _send(api, "sl-menzel-n-001", who=who), 403
        )
        group = api.client.post(
            GROUP_COMMANDS,
            headers=api.headers(who),
            json={**DIM, "cabinet": "menzel-n-c1"},
        )
        _problem(group, 403)
    _problem(api.client.get(COMMANDS, headers=api.headers("crew-north")), 403)
    _problem(
        api.client.get(f"{COMMANDS}/cmd-0000000000000000", headers=api.headers("crew-south")), 403
    )
    assert api.client.get(COMMANDS).status_code == 401
    assert _commands_in_table(api.database_url) == []


def test_a_decommissioned_device_takes_no_commands(api: ApiSession) -> None:
    _connected(api)
    api.client.delete("/api/v1/devices/sl-menzel-n-009", headers=api.headers("admin"))
    assert "decommissioned" in _problem(_send(api, "sl-menzel-n-009"), 409)


def test_a_group_command_reaches_each_device_and_sums_up_the_answers(
    api: ApiSession, broker: LocalMosquitto, agent_rig: Callable[..., Rig]
) -> None:
    agent_rig("sl-menzel-n-001")
    _connected(api)
    url = GROUP_COMMANDS
    mixed = api.client.post(
        url, headers=api.headers("energy"), json={**DIM, "street_group": "route-el-menzel-north"}
    )
    assert "several classes" in _problem(mixed, 422)
    assert "name a group" in _problem(
        api.client.post(url, headers=api.headers("energy"), json=DIM), 422
    )
    assert "no device in service" in _problem(
        api.client.post(url, headers=api.headers("energy"), json={**DIM, "cabinet": "nowhere"}),
        404,
    )
    recorder = Recorder(broker.port, client_id="group-recorder")
    with running_ingest(api.database_url, broker.port):
        sent = api.client.post(
            url, headers=api.headers("energy"), json={**DIM, "cabinet": "menzel-n-c1"}
        )
        assert sent.status_code == 201, sent.text
        group = sent.json()
        assert group["kind"] == "group"
        assert group["group"] == "cabinet=menzel-n-c1"
        assert group["devices"] == 33
        assert group["summary"]["pending"] == 33
        assert {c["group_id"] for c in group["commands"]} == {group["group_id"]}
        # Only one device of the cabinet runs an agent here: one answer, 32 pending.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            followed = _follow(api, group["group_id"], wait=0.5)
            if followed["summary"]["applied"]:
                break
    recorder.wait_for(lambda: len({t for t, _, _ in recorder.messages if t.endswith("/cmd")}) == 33)
    recorder.close()
    assert followed["summary"] == {
        "pending": 32, "applied": 1, "rejected": 0, "expired": 0, "failed": 0, "unanswered": 0,
    }  # fmt: skip
    assert followed["answered"] is False
    applied = [c for c in followed["commands"] if c["outcome"] == "applied"]
    assert [c["device_id"] for c in applied] == ["sl-menzel-n-001"]
    one = _follow(api, applied[0]["id"], wait=0)
    assert one["group_id"] == group["group_id"]
    in_cabinet = api.client.get(
        COMMANDS, headers=api.headers("technician"), params={"cabinet": "menzel-n-c1", "limit": 5}
    ).json()
    assert in_cabinet["total"] == 33
    assert len(in_cabinet["items"]) == 5
    elsewhere = api.client.get(
        COMMANDS, headers=api.headers("technician"), params={"cabinet": "menzel-n-c2"}
    ).json()
    assert elsewhere["total"] == 0
    with psycopg.connect(api.database_url) as connection:
        audit = connection.execute(
            "SELECT actor, target, detail FROM audit_log WHERE action = 'command.send_group'"
        ).fetchall()
    assert audit == [
        ("energy", group["group_id"],
         {"group": "cabinet=menzel-n-c1", "command_action": "set_dimming", "devices": 33}),
    ]  # fmt: skip


@pytest.fixture
def clocked(api: ApiSession, broker: LocalMosquitto) -> Iterator[tuple[TestClient, list[datetime]]]:
    """A second API on the same database and broker whose clock the test moves."""
    now = [datetime.now(UTC)]
    config = ApiConfig(
        database_url=api.database_url,
        mqtt_port=broker.port,
        pool_size=2,
        clock=lambda: now[0],
        mqtt_client_id="smartcity-api-clocked",
    )
    with TestClient(create_app(config), raise_server_exceptions=False) as client:
        state: ApiState = client.app.state.api  # type: ignore[attr-defined]
        assert state.publisher is not None
        assert state.publisher.wait_connected(10)
        yield client, now


def test_a_command_nobody_answers_is_unanswered_once_expired(
    api: ApiSession, clocked: tuple[TestClient, list[datetime]]
) -> None:
    client, now = clocked
    headers = api.headers("admin")
    sent = client.post(
        "/api/v1/devices/sl-menzel-n-010/commands", headers=headers,
        json={**DIM, "expires_in_s": 60},
    )  # fmt: skip
    assert sent.status_code == 201, sent.text
    command_id = sent.json()["id"]
    url = f"{COMMANDS}/{command_id}"
    started = time.monotonic()
    still = client.get(url, headers=headers, params={"wait": 0.6}).json()
    assert time.monotonic() - started >= 0.5, "wait holds the answer back while pending"
    assert still["outcome"] == "pending"
    now[0] += timedelta(seconds=61)
    gone = client.get(url, headers=headers).json()
    assert gone["outcome"] == "unanswered"
    assert gone["outcome_reason"] == "no acknowledgement before it expired"
    assert gone["outcome_at"] == gone["expires_at"]
    listed = client.get(COMMANDS, headers=headers, params={"outcome": "unanswered"}).json()
    assert [c["id"] for c in listed["items"]] == [command_id]
    pending = client.get(COMMANDS, headers=headers, params={"outcome": "pending"}).json()
    assert pending["total"] == 0
    since = client.get(
        COMMANDS, headers=headers, params={"since": (now[0] + timedelta(hours=1)).isoformat()}
    ).json()
    assert since["total"] == 0
    by_source = client.get(COMMANDS, headers=headers, params={"source": "api:admin"}).json()
    assert by_source["total"] == 1


def test_while_the_broker_is_down_nothing_is_sent_or_recorded(
    api: ApiSession, broker: LocalMosquitto
) -> None:
    _connected(api)
    broker.kill()
    state: ApiState = api.client.app.state.api  # type: ignore[attr-defined]
    assert state.publisher is not None
    wait_until(lambda: not state.publisher.connected, 10, "the API to notice")  # type: ignore[union-attr]
    down = _send(api, "sl-menzel-n-001")
    assert "no connection to the MQTT broker" in _problem(down, 503)
    group = api.client.post(
        GROUP_COMMANDS, headers=api.headers("energy"), json={**DIM, "cabinet": "menzel-n-c1"}
    )
    _problem(group, 503)
    assert _commands_in_table(api.database_url) == []


def test_reading_commands_refuses_bad_input(api: ApiSession) -> None:
    tech = api.headers("technician")
    assert "no command 'cmd-0000000000000000'" in _problem(
        api.client.get(f"{COMMANDS}/cmd-0000000000000000", headers=tech), 404
    )
    assert "no group command" in _problem(
        api.client.get(f"{COMMANDS}/{new_group_id(3)}", headers=tech), 404
    )
    _problem(api.client.get(f"{COMMANDS}/bad.id", headers=tech), 422)
    _problem(api.client.get(f"{COMMANDS}/{'x' * 65}", headers=tech), 422)
    _problem(api.client.get(f"{COMMANDS}/cmd-1", headers=tech, params={"wait": 31}), 422)
    _problem(api.client.get(COMMANDS, headers=tech, params={"outcome": "lost"}), 422)
    _problem(api.client.get(COMMANDS, headers=tech, params={"since": "2026-11-20T10:00:00"}), 422)
    _problem(api.client.get(COMMANDS, headers=tech, params={"limit": 0}), 422)
    empty = api.client.get(COMMANDS, headers=tech, params={"device_id": "sl-menzel-n-001"})
    assert empty.json() == {"items": [], "total": 0, "limit": 100, "offset": 0}


def test_group_command_ids_name_their_members() -> None:
    group_id = new_group_id(3)
    members = member_ids(group_id)
    assert members == [f"{group_id}-0", f"{group_id}-1", f"{group_id}-2"]
    assert all(group_of(m) == group_id for m in members)
    assert all(len(m) <= 64 for m in member_ids(new_group_id(5_000)) or [])
    assert member_ids("cmd-0123456789abcdef") is None
    assert group_of("cmd-0123456789abcdef") is None
    with pytest.raises(ValueError, match="1 to 5000"):
        new_group_id(0)
