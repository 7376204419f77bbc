"""The books of a chaos run: figures per phase, the checks, and the report printed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from bench.chaos.config import COOL_DOWN, WARM_UP


@dataclass(slots=True)
class PhaseFigures:
    name: str
    samples_sent: int = 0
    """Telemetry messages the agents produced in the phase (one sample each)."""
    stored: int = 0
    """Of those, stored (each (device, ts) found, with the values sent)."""
    duplicated: int = 0
    """Rows beyond the first per (device, metric, ts), and rows no agent sent."""
    lost: int = 0
    """Samples sent and not stored (or stored with other values)."""
    recovery_s: float | None = None
    """From the end of the fault until every sample taken before it was stored [wall s]."""
    absorbed: int | None = None
    """Duplicate rows ingest received and absorbed (redeliveries the fault caused)."""
    commands: int = 0
    detail: str = ""


@dataclass(frozen=True, slots=True)
class IncidentCheck:
    rule_id: str
    subject: str
    alerts: int
    history: str
    """The single alert's transitions, e.g. ``firing -> resolved``."""

    @property
    def ok(self) -> bool:
        return self.alerts == 1


@dataclass(slots=True)
class AlertsCheck:
    raised: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)
    incidents: list[IncidentCheck] = field(default_factory=list)
    duplicate_transitions: int = 0
    broken_histories: list[str] = field(default_factory=list)
    """Alerts whose transitions do not chain (a step applied twice, or skipped)."""
    overlapping: list[str] = field(default_factory=list)
    """Rule and device pairs with two alerts open at once."""

    @property
    def ok(self) -> bool:
        return (
            all(incident.ok for incident in self.incidents)
            and self.duplicate_transitions == 0
            and not self.broken_histories
            and not self.overlapping
        )


@dataclass(slots=True)
class CommandsCheck:
    sent: int = 0
    publishes: int = 0
    applied: int = 0
    """Distinct commands answered ``applied``."""
    agent_applications: int = 0
    """What the agents' own counters say they applied."""
    applied_twice: int = 0
    unanswered: list[str] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.applied_twice == 0 and not self.unanswered


@dataclass(slots=True)
class ChaosReport:
    devices: dict[str, int]
    speed: float
    wall_s: float
    device_span_s: float
    phases: list[PhaseFigures]
    alerts: AlertsCheck
    commands: CommandsCheck
    dead_letters: dict[str, int] = field(default_factory=dict)
    spool_drops: int = 0
    unexpected_rows: int = 0
    """Stored rows with a (device, ts) no agent sampled."""

    @property
    def total(self) -> PhaseFigures:
        total = PhaseFigures("total")
        for phase in self.phases:
            total.samples_sent += phase.samples_sent
            total.stored += phase.stored
            total.duplicated += phase.duplicated
            total.lost += phase.lost
            total.commands += phase.commands
            if phase.absorbed is not None:
                total.absorbed = (total.absorbed or 0) + phase.absorbed
        return total

    @property
    def ok(self) -> bool:
        total = self.total
        return (
            total.lost == 0
            and total.duplicated == 0
            and self.unexpected_rows == 0
            and self.alerts.ok
            and self.commands.ok
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "devices": self.devices,
            "speed": self.speed,
            "wall_s": round(self.wall_s, 1),
            "device_span_s": round(self.device_span_s),
            "phases": [asdict(phase) for phase in self.phases],
            "total": asdict(self.total),
            "alerts": {**asdict(self.alerts), "ok": self.alerts.ok},
            "commands": {**asdict(self.commands), "ok": self.commands.ok},
            "dead_letters": self.dead_letters,
            "spool_drops": self.spool_drops,
            "unexpected_rows": self.unexpected_rows,
            "ok": self.ok,
        }


def report(result: ChaosReport) -> str:
    devices = ", ".join(f"{count} {kind}" for kind, count in result.devices.items())
    faults = [p for p in result.phases if p.name not in (WARM_UP, COOL_DOWN)]
    lines = [
        f"chaos: {sum(result.devices.values())} devices ({devices}) at {result.speed:g}x,"
        f" {len(faults)} faults, {result.wall_s:.0f} s wall,"
        f" {result.device_span_s / 3600:.1f} h of device time",
        f"  {'phase':<25}{'sent':>8}{'stored':>8}{'dupl.':>7}{'lost':>6}"
        f"{'recovered':>11}{'absorbed':>10}{'cmds':>6}  detail",
    ]
    for phase in [*result.phases, result.total]:
        recovered = "-" if phase.recovery_s is None else f"{phase.recovery_s:.1f} s"
        absorbed = "-" if phase.absorbed is None else str(phase.absorbed)
        row = (
            f"  {phase.name:<25}{phase.samples_sent:>8}{phase.stored:>8}{phase.duplicated:>7}"
            f"{phase.lost:>6}{recovered:>11}{absorbed:>10}{phase.commands:>6}  {phase.detail}"
        )
        lines.append(row.rstrip())
    alerts = result.alerts
    rules = ", ".join(f"{rule} {count}" for rule, count in sorted(alerts.by_rule.items()))
    lines.append(f"  alerts: {alerts.raised} raised ({rules or 'none'})")
    for incident in alerts.incidents:
        verdict = "once" if incident.ok else f"{incident.alerts} ALERTS"
        lines.append(
            f"    {incident.rule_id}@{incident.subject}: {verdict} ({incident.history or '-'})"
        )
    lines.append(
        f"    repeated transitions {alerts.duplicate_transitions},"
        f" broken histories {len(alerts.broken_histories)}, overlapping {len(alerts.overlapping)}"
        + "".join(f"\n    ! {line}" for line in [*alerts.broken_histories, *alerts.overlapping])
    )
    commands = result.commands
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(commands.outcomes.items()))
    lines.append(
        f"  commands: {commands.sent} sent ({commands.publishes} publishes), answered:"
        f" {outcomes or 'none'}; applied by the agents {commands.agent_applications} times,"
        f" {commands.applied_twice} applied twice, {len(commands.unanswered)} unanswered"
        + (f" ({', '.join(commands.unanswered[:5])})" if commands.unanswered else "")
    )
    letters = ", ".join(f"{k} {v}" for k, v in sorted(result.dead_letters.items()))
    lines.append(
        f"  refused (dead letters): {letters or 'none'}; dropped by agent spools:"
        f" {result.spool_drops}; stored rows no agent sent: {result.unexpected_rows}"
    )
    lines.append(
        "  verdict: "
        + (
            "nothing lost, nothing doubled, every alert once, no command applied twice"
            if result.ok
            else "FAILED (see above)"
        )
    )
    return "\n".join(lines)
