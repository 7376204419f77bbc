from pathlib import Path

from broker_config import BrokerLayout, render


def test_rendered_config_keeps_an_hour_of_outage_and_persists_often(tmp_path: Path) -> None:
    text = render(BrokerLayout(18830, tmp_path))
    settings = dict(
        line.split(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert settings["listener"] == "18830 127.0.0.1"
    assert settings["persistence"] == "true"
    assert settings["persistence_location"] == f"{tmp_path}/"
    assert int(settings["autosave_interval"]) <= 5
    assert int(settings["max_queued_messages"]) >= 600_000
    assert "$" not in text
