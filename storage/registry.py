"""The device registry: sites and devices, loaded from site files and read by ingest."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

from protocol.sites import Device, SignageModel, SiteInventory, StreetlightModel
from protocol.topics import DeviceClass


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
                        Jsonb({**device.metadata, "ratings": ratings_of(device)}),
                    )
                    for device in inventory.devices
                ],
            )
    return len(inventory.devices)


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
