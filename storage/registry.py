"""The device registry: sites and devices, loaded from site files, read by ingest, and
followed by the services that watch or command devices (:class:`RegistryWatch`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

import psycopg
from psycopg.types.json import Jsonb

from protocol.sites import Device, SignageModel, SiteHeader, SiteInventory, StreetlightModel
from protocol.topics import DeviceClass

Fingerprint = tuple[int, int]
SOONEST_LOOK_S: Final = 0.0
"""A look asked for early (an unknown device spoke) comes at most this often [s]: at once by
default. Only provisioned devices get past the broker, so an unknown speaker is one added a
moment ago (whose first readings must not be ignored) or one decommissioned and not yet shut
out (for the broker's next access sync, 10 s at most): one cheap query per message then."""


@dataclass(frozen=True, slots=True)
class Registration:
    site_id: str
    device_class: DeviceClass


def load_registry(connection: psycopg.Connection) -> dict[str, Registration]:
    """Every device in service, by id."""
    rows = connection.execute(
        "SELECT device_id, site_id, device_class FROM devices WHERE decommissioned_at IS NULL"
    ).fetchall()
    return {device_id: Registration(site, DeviceClass(cls)) for device_id, site, cls in rows}


def upsert_site(connection: psycopg.Connection, inventory: SiteInventory) -> int:
    """Create or update a site and its devices; return how many devices were written."""
    site = inventory.site
    with connection.transaction():
        connection.execute(
            """
            INSERT INTO sites (site_id, name, timezone, latitude, longitude, metadata)
            VALUES (%s, %s, %s, %s, %s, %s)
            ON CONFLICT (site_id) DO UPDATE SET name = EXCLUDED.name,
                timezone = EXCLUDED.timezone, latitude = EXCLUDED.latitude,
                longitude = EXCLUDED.longitude, metadata = EXCLUDED.metadata
            """,
            (site.id, site.name, site.timezone, site.latitude, site.longitude, Jsonb({})),
        )
        with connection.cursor() as cursor:
            cursor.executemany(
                """
                INSERT INTO devices (device_id, site_id, device_class, name, model, latitude,
                    longitude, street_group, cabinet, building, zone, metadata)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (device_id) DO UPDATE SET site_id = EXCLUDED.site_id,
                    device_class = EXCLUDED.device_class, name = EXCLUDED.name,
                    model = EXCLUDED.model, latitude = EXCLUDED.latitude,
                    longitude = EXCLUDED.longitude, street_group = EXCLUDED.street_group,
                    cabinet = EXCLUDED.cabinet, building = EXCLUDED.building,
                    zone = EXCLUDED.zone, metadata = EXCLUDED.metadata, updated_at = now(),
                    decommissioned_at = NULL
                """,
                [
                    (
                        device.id,
                        site.id,
                        device.device_class.value,
                        device.name,
                        device.model,
                        device.latitude,
                        device.longitude,
                        device.street_group,
                        device.cabinet,
                        device.building,
                        device.zone,
                        Jsonb(dict(device.metadata)),
                    )
                    for device in map(as_registered, inventory.devices)
                ],
            )
    return len(inventory.devices)


def as_registered(device: Device) -> Device:
    """A device as the registry holds it: its model's ratings inside ``metadata``
    (:func:`ratings_of`), which is where every reader of the registry finds them."""
    return replace(device, metadata={**device.metadata, "ratings": ratings_of(device)})


def ratings_of(device: Device) -> dict[str, float]:
    """The figures of a device's model rules compare with (lamp_w, battery_wh, pixels...)."""
    rating = device.rating
    if isinstance(rating, StreetlightModel):
        return {
            "lamp_w": rating.lamp_w,
            "panel_wp": rating.panel_wp,
            "battery_wh": rating.battery_wh,
        }
    if isinstance(rating, SignageModel):
        return {"pixels": float(rating.pixels), "max_power_w": rating.max_power_w}
    return {}


def store_credentials(
    connection: psycopg.Connection,
    device_id: str,
    password_hash: str,
    created_by: str,
    at: datetime,
) -> None:
    """Set a device's MQTT credentials (user name: its id), replacing any it had."""
    connection.execute(
        """
        INSERT INTO device_credentials (device_id, username, password_hash, created_at, created_by)
        VALUES (%s, %s, %s, %s, %s)
        ON CONFLICT (device_id) DO UPDATE SET username = EXCLUDED.username,
            password_hash = EXCLUDED.password_hash, created_at = EXCLUDED.created_at,
            created_by = EXCLUDED.created_by
        """,
        (device_id, device_id, password_hash, at, created_by),
    )


def store_many_credentials(
    connection: psycopg.Connection,
    hashes_by_device: Mapping[str, str],
    created_by: str,
    at: datetime,
) -> None:
    """:func:`store_credentials` for many devices in one statement."""
    with connection.cursor() as cursor:
        cursor.executemany(
            """
            INSERT INTO device_credentials
                (device_id, username, password_hash, created_at, created_by)
            VALUES (%s, %s, %s, %s, %s)
            ON CONFLICT (device_id) DO UPDATE SET username = EXCLUDED.username,
                password_hash = EXCLUDED.password_hash, created_at = EXCLUDED.created_at,
                created_by = EXCLUDED.created_by
            """,
            [
                (device_id, device_id, password_hash, at, created_by)
                for device_id, password_hash in hashes_by_device.items()
            ],
        )


def device_password_hashes(connection: psycopg.Connection) -> list[tuple[str, str]]:
    """(user name, password hash) of every device in service that has credentials: what the
    broker's password file holds for devices."""
    rows = connection.execute(
        """
        SELECT c.username, c.password_hash
        FROM device_credentials c JOIN devices d USING (device_id)
        WHERE d.decommissioned_at IS NULL
        ORDER BY c.username
        """
    ).fetchall()
    return [(username, password_hash) for username, password_hash in rows]


# ----------------------------------------------------------------------------- following


def registry_fingerprint(connection: psycopg.Connection) -> Fingerprint:
    """A value that changes whenever a device is added, changed or decommissioned (every
    writer of the registry sets ``updated_at``): read in a few milliseconds for thousands of
    devices, so a service can look often."""
    row = connection.execute(
        "SELECT count(*), coalesce(sum(hashtextextended("
        " device_id || updated_at::text || coalesce(decommissioned_at::text, ''), 0)), 0)"
        " FROM devices"
    ).fetchone()
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


class RegistryWatch:
    """When a service should load its devices from the registry again: it looks at the
    registry's fingerprint every ``every_s`` seconds, or sooner when asked (a device it does
    not know spoke; at most every :data:`SOONEST_LOOK_S`), and says whether it changed since
    the service last loaded.

    The one mechanism by which the rules engine and the control services take up devices
    added, changed (street group, building, ratings...) or decommissioned while they run.
    Call :meth:`loaded` just *before* loading: a change made while loading then shows at the
    next look, never goes unseen.
    """

    def __init__(
        self,
        every_s: float,
        *,
        soonest_s: float = SOONEST_LOOK_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if every_s <= 0 or soonest_s < 0:
            raise ValueError("every_s must be positive and soonest_s not negative")
        self.every_s = every_s
        self.soonest_s = soonest_s
        self._clock = clock
        self._seen: Fingerprint | None = None
        self._looked = clock()

    def loaded(self, connection: psycopg.Connection) -> None:
        """The service is about to load the registry as it is now."""
        self._seen = registry_fingerprint(connection)
        self._looked = self._clock()

    def forget(self) -> None:
        """Loading failed: the next look says the registry changed."""
        self._seen = None

    def changed(self, connection: psycopg.Connection, *, asked: bool = False) -> bool:
        """Whether the registry changed since :meth:`loaded`, if it is time to look (every
        ``every_s``; with ``asked``, ``soonest_s`` after the last look); False otherwise."""
        wait_s = self.soonest_s if asked else self.every_s
        now = self._clock()
        if now - self._looked < wait_s:
            return False
        self._looked = now
        return registry_fingerprint(connection) != self._seen


def registered_site(connection: psycopg.Connection, site_id: str) -> SiteHeader | None:
    """A site of the registry (its height is not stored: 0 m), or None."""
    row = connection.execute(
        "SELECT site_id, name, timezone, latitude, longitude FROM sites WHERE site_id = %s",
        (site_id,),
    ).fetchone()
    if row is None:
        return None
    found, name, timezone, latitude, longitude = row
    return SiteHeader(
        id=found, name=name, timezone=timezone, latitude=latitude, longitude=longitude
    )


def registered_devices(
    connection: psycopg.Connection, site_id: str, device_class: DeviceClass
) -> tuple[Device, ...]:
    """The devices of a class of a site in service, by id, as :func:`as_registered` makes
    them (their ratings in ``metadata``; ``rating`` is None: the registry keeps the figures,
    not the model)."""
    rows = connection.execute(
        "SELECT device_id, name, model, latitude, longitude, street_group, cabinet, building,"
        " zone, metadata FROM devices"
        " WHERE site_id = %s AND device_class = %s AND decommissioned_at IS NULL"
        " ORDER BY device_id",
        (site_id, device_class.value),
    ).fetchall()
    return tuple(
        Device(
            device_id,
            device_class,
            name,
            model,
            latitude,
            longitude,
            street_group=street_group,
            cabinet=cabinet,
            building=building,
            zone=zone,
            metadata=dict(metadata or {}),
        )
        for (
            device_id,
            name,
            model,
            latitude,
            longitude,
            street_group,
            cabinet,
            building,
            zone,
            metadata,
        ) in rows
    )
