"""`smartcity agent --config FILE` as a process: it comes online, and says goodbye on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from protocol.payloads import StatePayload
from runtime.local_services import LocalMosquitto
from tests.simulation_helpers import SMALL_SITE, Recorder

pytestmark = pytest.mark.integration


def test_the_agent_command_runs_one_device_until_terminated(
    tmp_path: Path, broker: LocalMosquitto
) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(SMALL_SITE)
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"""
site: simtown
device_id: sign-a
device_class: signage
latitude: 33.827
longitude: -4.823
timezone: Africa/Casablanca
broker: {{host: 127.0.0.1, port: {broker.port}}}
spool: {{path: {tmp_path / "spool.sqlite"}}}
driver: {{kind: simulated, site_file: {site}, seed: 4}}
"""
    )
    recorder = Recorder(broker.port)
    log = (tmp_path / "agent.log").open("wb")
    agent = subprocess.Popen(
        [sys.executable, "-m", "smartcity.cli", "agent", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        recorder.wait_for(lambda: bool(recorder.of("sign-a", "state")), timeout_s=30)
        birth = msgspec.json.decode(recorder.of("sign-a", "state")[0], type=StatePayload)
        assert birth.status == "online"
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(30) == 0
        recorder.wait_for(lambda: len(recorder.of("sign-a", "state")) >= 2)
        goodbye = msgspec.json.decode(recorder.of("sign-a", "state")[-1], type=StatePayload)
        assert (goodbye.status, goodbye.reason) == ("offline", "shutdown")
        assert goodbye.boot_id == birth.boot_id
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        log.close()
        recorder.close()


def test_a_bad_agent_configuration_is_named(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("site: simtown\ndevice_id: Sign A\n")
    result = subprocess.run(
        [sys.executable, "-m", "smartcity.cli", "agent", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "device_id" in result.stderr
    assert "spool: Field required" in result.stderr
