"""The devices the engine watches, as the registry holds them (followed while it runs by
:class:`storage.registry.RegistryWatch`)."""

from __future__ import annotations

import psycopg

from alerts.lifecycle import Scope
from protocol.topics import DeviceClass
from rules.context import DevicePlace
from rules.evaluator import FleetDevice
from rules.names import peer_group


def load_fleet(connection: psycopg.Connection) -> dict[str, FleetDevice]:
    """Every device in service, with its place, ratings and scope."""
    rows = connection.execute(
        """
        SELECT d.device_id, d.device_class, coalesce(d.latitude, s.latitude),
               coalesce(d.longitude, s.longitude), s.timezone, d.name, d.street_group,
               d.cabinet, d.building, d.site_id, d.metadata
        FROM devices d JOIN sites s USING (site_id)
        WHERE d.decommissioned_at IS NULL
        """
    ).fetchall()
    fleet = {}
    for device_id, cls, lat, lon, tz, name, group, cabinet, building, site, stored in rows:
        meta = stored or {}
        ratings = {str(k): float(v) for k, v in meta.get("ratings", {}).items()}
        place = DevicePlace(device_id, DeviceClass(cls), lat, lon, tz, ratings)
        scope = Scope(device_id, group, cabinet, building, site)
        place_name = meta.get("building_name") or group or building or ""
        fleet[device_id] = FleetDevice(
            place, scope, name, str(place_name), peer_group(DeviceClass(cls), building, group, meta)
        )
    return fleet
