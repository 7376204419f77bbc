"""The chaos run's settings and the faults it injects, in order."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

from protocol.sites import SiteInventory
from rules import PACKAGED_RULES

ROOT: Final = Path(__file__).resolve().parents[2]
DEFAULT_SITE: Final = ROOT / "sites" / "sefrou.yaml"
FAULTS: Final = (
    "broker-kill",
    "database-restart",
    "ingest-kill",
    "broker-kill-ingest-away",
    "rules-kill",
    "agent-offline",
    "broker-link-blackhole",
    "database-link-blackhole",
)
WARM_UP: Final = "warm-up"
COOL_DOWN: Final = "cool-down"
COMMAND_SOURCE: Final = "chaos"
COMMANDER_ID: Final = "smartcity-chaos-commander"
KNOCK_SETTLE_S: Final = 0.5
"""Wall seconds between knocking a pole down and killing the rules engine: its readings are
in the engine, its alert's 10-minute timer is running."""

Progress = Callable[[str], None]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ChaosConfig:
    inventory: SiteInventory
    """The site; a subset of it runs (see the three counts below)."""
    streetlights: int = 12
    signs: int = 2
    zones: int = 2
    speed: float = 600.0
    """Device seconds per wall second."""
    lead_s: float = 2.0
    """Steady traffic before each fault [wall s]."""
    outage_s: float = 2.0
    """How long the broker, the database, ingest and the rules engine stay down [wall s]."""
    blackhole_s: float = 3.0
    """How long a link stays blackholed [wall s]."""
    blackhole_reset: bool = True
    """End a blackhole with a reset of its connections; off: wait until ingest gives up the
    dead connection by itself (the broker link: its MQTT keepalive, up to about a minute; the
    database link: its storing process's watchdog, 5 minutes)."""
    offline_device_s: float = 3_600.0
    """How long the agent of ``agent-offline`` is cut off [device s]."""
    commands_per_fault: int = 3
    resend_after_s: float = 2.0
    """An unanswered command is published again (same id) after this [wall s]."""
    recover_timeout_s: float = 60.0
    drain_timeout_s: float = 60.0
    faults: tuple[str, ...] = FAULTS
    seed: int = 1
    durable: bool = True
    """fsync on in the private PostgreSQL. Off (throwaway clusters) it still writes each
    commit before acknowledging it (synchronous_commit on): with it off, a crash of the
    server loses the commits of its last few hundred milliseconds, which ingest has already
    acknowledged to the broker."""
    rules_file: Path = PACKAGED_RULES
    keep_workdir: bool = False

    def __post_init__(self) -> None:
        unknown = [name for name in self.faults if name not in FAULTS]
        if unknown:
            raise ValueError(f"unknown fault {', '.join(unknown)}; known: {', '.join(FAULTS)}")
        if self.speed < 1:
            raise ValueError("speed must be at least 1")
        needed = 2 if {"rules-kill", "agent-offline"} <= set(self.faults) else 1
        if self.streetlights < needed:
            raise ValueError(f"at least {needed} streetlights are needed for these faults")
