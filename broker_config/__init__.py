"""Mosquitto configuration for the platform's broker, rendered for a port and a data folder."""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from pathlib import Path
from string import Template

TEMPLATE = Path(__file__).with_name("mosquitto.conf")


@dataclass(frozen=True, slots=True)
class BrokerLayout:
    port: int
    data_dir: Path
    bind_address: str = "127.0.0.1"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "mosquitto.conf"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "mosquitto.log"


def render(layout: BrokerLayout) -> str:
    """The configuration text for ``layout``.

    The broker runs as the user who starts it (mosquitto would otherwise switch from root to
    the ``mosquitto`` user, which may not be able to reach a private data folder).
    """
    return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        port=layout.port,
        bind_address=layout.bind_address,
        persistence_location=f"{layout.data_dir}/",
        log_file=layout.log_file,
        user=getpass.getuser(),
    )


def write_config(layout: BrokerLayout) -> Path:
    layout.data_dir.mkdir(parents=True, exist_ok=True)
    layout.config_file.write_text(render(layout), encoding="utf-8")
    return layout.config_file
