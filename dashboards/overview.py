"""City overview: every device on a map by status, open alerts, energy used today."""

# SQL text for Grafana, built from fixed names and fragments of this package; it is never run
# with input spliced in (Grafana, or dashboards.macros, substitutes the variables).
# ruff: noqa: S608

from __future__ import annotations

from typing import Final

from dashboards.common import (
    OPEN_STATUSES,
    SITE,
    STATUS_CODE,
    alert_subjects,
    with_device_status,
)
from dashboards.energy import building_kwh, lamp_kwh, sign_kwh
from dashboards.model import Dashboard, Format, Panel, PanelKind, Query, Tier, nest, tiered

UID: Final = "smartcity-overview"
STATUS_COLOURS: Final = (("online", "green"), ("offline", "#8e8e8e"), ("open alert", "red"))
"""The status names in code order (0, 1, 2) and their colours on the map."""


def _status_map() -> Panel:
    return Panel(
        "Devices by status",
        "Every device in service at its place: green online, grey offline (its last will, or "
        "nothing heard for three reporting intervals), red when an alert is open on it or on "
        "its cabinet, street or site. Status at the end of the time range.",
        PanelKind.GEOMAP,
        (
            Query(
                with_device_status(
                    f"""
                    SELECT device_id, name, device_class, latitude, longitude, status,
                        {STATUS_CODE} AS status_code
                    FROM device_status WHERE latitude IS NOT NULL AND longitude IS NOT NULL
                    ORDER BY device_id"""
                ),
                (
                    "device_id",
                    "name",
                    "device_class",
                    "latitude",
                    "longitude",
                    "status",
                    "status_code",
                ),
                Format.TABLE,
            ),
        ),
        width=16,
        height=15,
        options={
            "basemap": {"config": {}, "name": "Basemap", "type": "default"},
            "controls": {"mouseWheelZoom": True, "showAttribution": True, "showZoom": True},
            "layers": [
                {
                    "config": {
                        "showLegend": True,
                        "style": {
                            "color": {"field": "status_code", "fixed": "green"},
                            "opacity": 0.8,
                            "size": {"fixed": 5, "max": 15, "min": 2},
                            "symbol": {"fixed": "img/icons/marker/circle.svg", "mode": "fixed"},
                        },
                    },
                    "location": {
                        "latitude": "latitude",
                        "longitude": "longitude",
                        "mode": "coords",
                    },
                    "name": "Devices",
                    "tooltip": True,
                    "type": "markers",
                }
            ],
            "tooltip": {"mode": "details"},
            "view": {"allLayers": True, "id": "fit", "lat": 0, "lon": 0, "zoom": 14},
        },
        field_defaults={
            "color": {"mode": "thresholds"},
            "mappings": [
                {
                    "options": {
                        str(code): {"color": colour, "index": code, "text": name}
                        for code, (name, colour) in enumerate(STATUS_COLOURS)
                    },
                    "type": "value",
                }
            ],
            "thresholds": {
                "mode": "absolute",
                "steps": [
                    {"color": colour, "value": None if code == 0 else code}
                    for code, (_, colour) in enumerate(STATUS_COLOURS)
                ],
            },
        },
    )


def _status_counts() -> Panel:
    counts = ",\n        ".join(
        f"count(*) FILTER (WHERE status = '{name}') AS {name.replace(' ', '_')}"
        for name, _ in STATUS_COLOURS
    )
    return Panel(
        "Devices online, offline, with an open alert",
        "How many devices are in each status of the map, at the end of the time range.",
        PanelKind.STAT,
        (
            Query(
                with_device_status(f"SELECT {counts}\nFROM device_status"),
                tuple(name.replace(" ", "_") for name, _ in STATUS_COLOURS),
                Format.TABLE,
            ),
        ),
        width=8,
        height=5,
        display_names={name.replace(" ", "_"): name.capitalize() for name, _ in STATUS_COLOURS},
        colours={name.replace(" ", "_"): colour for name, colour in STATUS_COLOURS},
    )


SEVERITY_COLOURS: Final = (("critical", "red"), ("warning", "orange"), ("info", "blue"))
SEVERITY_COUNTS: Final = ",\n".join(
    f"count(*) FILTER (WHERE a.severity = '{severity}') AS {severity}"
    for severity, _ in SEVERITY_COLOURS
)
OPEN_ALERT_COUNTS: Final = f"""
    SELECT {nest(SEVERITY_COUNTS, 8)}
    FROM alerts a
    WHERE a.status IN {OPEN_STATUSES} AND EXISTS (
        SELECT 1 FROM devices d
        WHERE d.site_id IN ($site) AND a.subject IN {alert_subjects()}
    )"""
"""Open alerts of each severity on the site's devices or on their cabinets, streets or site."""


def _open_alerts() -> Panel:
    return Panel(
        "Open alerts by severity",
        "Alerts firing or acknowledged now, on devices of the site or on its cabinets, streets "
        "or the site itself.",
        PanelKind.STAT,
        (
            Query(
                OPEN_ALERT_COUNTS,
                tuple(severity for severity, _ in SEVERITY_COLOURS),
                Format.TABLE,
            ),
        ),
        width=8,
        height=5,
        display_names={severity: severity.capitalize() for severity, _ in SEVERITY_COLOURS},
        colours=dict(SEVERITY_COLOURS),
    )


def energy_today(tier: Tier) -> str:
    """Energy [kWh] of the site's devices over the range, one column per use."""

    def of_site(device_class: str, expression: str) -> str:
        return (
            f"(SELECT {expression} FROM {tier.table(device_class)} t"
            f" WHERE $__timeFilter(t.{tier.time}) AND t.device_id IN"
            f" (SELECT device_id FROM devices WHERE site_id IN ($site)))"
        )

    heating, cooling = building_kwh(tier)
    return f"""
        SELECT {of_site("streetlight", lamp_kwh(tier))} AS streetlight_lamps_kwh,
            {of_site("signage", sign_kwh(tier))} AS signage_kwh,
            {of_site("building", heating)} AS building_heating_kwh,
            {of_site("building", cooling)} AS building_cooling_kwh"""


def _energy_today() -> Panel:
    return Panel(
        "Energy today",
        "Today so far, in the city's time: streetlight lamps and signs (their power over the "
        "samples), building heating and cooling (the zone meters, split by whether the zone "
        "was heating or cooling).",
        PanelKind.STAT,
        (
            Query(
                tiered(energy_today, order_by="1"),
                (
                    "streetlight_lamps_kwh",
                    "signage_kwh",
                    "building_heating_kwh",
                    "building_cooling_kwh",
                ),
                Format.TABLE,
            ),
        ),
        unit="kwatth",
        width=8,
        height=5,
        relative_time="now/d",
        display_names={
            "streetlight_lamps_kwh": "Streetlight lamps",
            "signage_kwh": "Signs",
            "building_heating_kwh": "Building heating",
            "building_cooling_kwh": "Building cooling",
        },
        field_defaults={"decimals": 1},
    )


def dashboard() -> Dashboard:
    return Dashboard(
        UID,
        "Smart city: overview",
        "Every device by status, the open alerts and the energy used today.",
        (_status_map(), _status_counts(), _open_alerts(), _energy_today()),
        (SITE,),
        default_range="now-6h",
    )
