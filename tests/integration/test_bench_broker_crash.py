"""``smartcity bench broker-crash`` end to end, short: a real Mosquitto from broker_config/,
SIGKILLed under a QoS 1 publisher with its consumer away or behind, restarted on its
persistence file; the books balance and the autosave setting reaches the broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.broker_crash import Consumer, CrashBenchConfig, report, run, to_json
from broker_config import DEFAULT_AUTOSAVE, Autosave, BrokerLayout, render

pytestmark = pytest.mark.integration

EVERY_100: Autosave = Autosave(100, on_changes=True)


def test_a_crash_loses_what_was_acknowledged_since_the_last_save_and_nothing_else(
    tmp_path: Path,
) -> None:
    config = CrashBenchConfig(
        settings=(EVERY_100,),
        consumers=(Consumer.AWAY, Consumer.BEHIND, Consumer.CONNECTED),
        runs=1,
        rate=400,
        delay_min_s=0.8,
        delay_max_s=0.8,
        drain_quiet_s=0.3,
        behind_receive_maximum=20,
    )
    result = run(config, progress=lambda _line: None, workdir=tmp_path)

    assert [(crash.setting, crash.consumer) for crash in result.runs] == [
        ("interval=2", "away"),
        ("changes=100", "away"),
        ("interval=2", "behind"),
        ("changes=100", "behind"),
        ("interval=2", "connected"),
        ("changes=100", "connected"),
    ]
    for crash in result.runs:
        assert crash.session_present, crash
        assert crash.acknowledged > 0
        assert crash.acknowledged == crash.delivered + crash.lost
        assert crash.acknowledged <= crash.published
        assert crash.file_bytes > 0
        assert crash.written_bytes >= 0
        if crash.lost:
            # Everything lost was acknowledged after the last complete save began.
            assert crash.lost_span_s is not None
            if crash.since_save_s is not None:  # None where the file system keeps no birth time
                assert crash.lost_span_s <= crash.since_save_s
        if crash.consumer == "away":
            assert crash.duplicates == 0
    by_setting = {(crash.setting, crash.consumer): crash for crash in result.runs}
    for consumer in ("away", "behind"):
        every_100 = by_setting["changes=100", consumer]
        # autosave_on_changes 100: a save after every 100 messages queued, so at most what
        # was queued since the last of those saves is gone.
        assert every_100.saves >= every_100.acknowledged // 100 - 1
        if every_100.saves:
            assert every_100.lost < every_100.acknowledged

    text = report(result)
    assert "interval=2 *" in text
    assert "changes=100" in text
    data = json.loads(to_json(result))
    assert len(data["summaries"]) == 6
    assert data["config"]["settings"] == ["interval=2", "changes=100"]

    # The platform's own broker configuration is still the default one.
    platform = render(BrokerLayout(18830, tmp_path))
    assert "\nautosave_interval 2\nautosave_on_changes false\n" in platform
    assert platform == render(BrokerLayout(18830, tmp_path, autosave=DEFAULT_AUTOSAVE))
