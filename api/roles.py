"""Who may do what (pure): four roles, a table of permissions, and a crew's places.

- **technician**: reads everything; acknowledges, assigns, comments on, silences and closes
  alerts, and marks them repaired.
- **crew**: the alerts of its own street groups and buildings only: reads them, acknowledges,
  comments, marks them repaired with a note. Nothing else.
- **energy manager**: reads everything; rules, energy strategies, backtests, what-ifs and
  commands to devices.
- **admin**: everything, including devices, users and tokens.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final


class Role(StrEnum):
    TECHNICIAN = "technician"
    CREW = "crew"
    ENERGY_MANAGER = "energy_manager"
    ADMIN = "admin"


class Permission(StrEnum):
    READ = "read"  # devices, telemetry, rules, strategies, commands, every alert
    READ_OWN_ALERTS = "read_own_alerts"  # the alerts of one's own places
    ACKNOWLEDGE = "acknowledge"
    COMMENT = "comment"
    REPAIR = "repair"  # mark an alert repaired (resolved, awaiting verification)
    ASSIGN = "assign"
    SILENCE = "silence"
    CLOSE = "close"
    MANAGE_RULES = "manage_rules"
    MANAGE_STRATEGIES = "manage_strategies"
    COMMAND = "command"
    MANAGE_DEVICES = "manage_devices"
    MANAGE_USERS = "manage_users"


_ALERT_WORK: Final = {Permission.ACKNOWLEDGE, Permission.COMMENT, Permission.REPAIR}

PERMISSIONS: Final[dict[Role, frozenset[Permission]]] = {
    Role.TECHNICIAN: frozenset(
        {Permission.READ, *_ALERT_WORK, Permission.ASSIGN, Permission.SILENCE, Permission.CLOSE}
    ),
    Role.CREW: frozenset({Permission.READ_OWN_ALERTS, *_ALERT_WORK}),
    Role.ENERGY_MANAGER: frozenset(
        {
            Permission.READ,
            Permission.MANAGE_RULES,
            Permission.MANAGE_STRATEGIES,
            Permission.COMMAND,
        }
    ),
    Role.ADMIN: frozenset(Permission),
}


@dataclass(frozen=True, slots=True)
class Places:
    """Street groups and buildings: where a crew works, or where an alert belongs."""

    street_groups: frozenset[str] = field(default_factory=frozenset)
    buildings: frozenset[str] = field(default_factory=frozenset)

    def overlaps(self, other: Places) -> bool:
        return bool(self.street_groups & other.street_groups or self.buildings & other.buildings)


@dataclass(frozen=True, slots=True)
class Principal:
    """The person or script behind a request."""

    username: str
    role: Role
    places: Places = Places()
    language: str = "fr"
    token_id: int | None = None

    def may(self, permission: Permission) -> bool:
        return permission in PERMISSIONS[self.role]

    @property
    def sees_every_alert(self) -> bool:
        return self.may(Permission.READ)

    def may_work_on(self, alert_places: Places) -> bool:
        """Whether this principal may see and act on an alert of ``alert_places``."""
        return self.sees_every_alert or self.places.overlaps(alert_places)


def role_names(roles: Iterable[Role]) -> str:
    return ", ".join(role.value.replace("_", " ") for role in roles)


def roles_with(permission: Permission) -> list[Role]:
    """The roles granted ``permission``: for error messages saying who may."""
    return [role for role, granted in PERMISSIONS.items() if permission in granted]
