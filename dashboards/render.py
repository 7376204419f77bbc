"""Grafana's JSON model of a :class:`dashboards.model.Dashboard`, deterministic to the byte.

Everything that Grafana would otherwise fill in with something changing (ids, versions, panel
positions) is set here from the dashboard's content alone, and the text is written with sorted
keys, two-space indentation and a final newline: building twice gives the same bytes, and a
diff of the committed JSON shows exactly what a change of the code changed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from dashboards.model import (
    DATASOURCE_TYPE,
    DATASOURCE_UID,
    Dashboard,
    Panel,
    PanelKind,
    Query,
    Variable,
    VariableKind,
)

GRID_COLUMNS: Final = 24
SCHEMA_VERSION: Final = 39
"""Grafana 10.4 / 11; newer versions migrate it on load."""
TAG: Final = "smartcity"
DATASOURCE: Final = {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}

_KIND_OPTIONS: Final[Mapping[PanelKind, Mapping[str, Any]]] = {
    PanelKind.TIMESERIES: {
        "legend": {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "desc"},
    },
    PanelKind.STAT: {
        "colorMode": "value",
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": True},
        "textMode": "value_and_name",
    },
    PanelKind.TABLE: {"cellHeight": "sm", "footer": {"show": False}, "showHeader": True},
    PanelKind.BARGAUGE: {
        "displayMode": "gradient",
        "orientation": "horizontal",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": True},
        "showUnfilled": True,
    },
    PanelKind.GEOMAP: {},
}
_KIND_FIELD_DEFAULTS: Final[Mapping[PanelKind, Mapping[str, Any]]] = {
    PanelKind.TIMESERIES: {
        "color": {"mode": "palette-classic"},
        "custom": {
            "drawStyle": "line",
            "fillOpacity": 10,
            "lineWidth": 1,
            "showPoints": "never",
            "spanNulls": True,
        },
    },
}


def dashboard_model(dashboard: Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana stores it (``id`` null: Grafana gives one on import)."""
    return {
        "annotations": {"list": [_builtin_annotations()]},
        "description": dashboard.description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [
            {
                "asDropdown": True,
                "icon": "external link",
                "includeVars": False,
                "keepTime": True,
                "tags": [TAG],
                "title": "Smart city dashboards",
                "type": "dashboards",
            }
        ],
        "panels": [
            _panel(panel, index + 1, position)
            for index, (panel, position) in enumerate(
                zip(dashboard.panels, layout(dashboard.panels), strict=True)
            )
        ],
        "refresh": "1m",
        "schemaVersion": SCHEMA_VERSION,
        "tags": [TAG],
        "templating": {"list": [_variable(variable) for variable in dashboard.variables]},
        "time": {"from": dashboard.default_range, "to": "now"},
        "timepicker": {},
        "timezone": dashboard.timezone,
        "title": dashboard.title,
        "uid": dashboard.uid,
        "version": 1,
        "weekStart": "monday",
    }


def dashboard_text(dashboard: Dashboard) -> str:
    """The committed file's text: sorted keys, two-space indentation, a final newline."""
    return (
        json.dumps(dashboard_model(dashboard), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    )


def layout(panels: Sequence[Panel]) -> list[dict[str, int]]:
    """Grid positions, in panel order: each panel goes as high as it fits, then as far left
    (a skyline), so narrow panels stack beside a tall one instead of leaving a hole."""
    skyline = [0] * GRID_COLUMNS
    positions = []
    for panel in panels:
        y, x = min(
            (max(skyline[x : x + panel.width]), x) for x in range(GRID_COLUMNS - panel.width + 1)
        )
        positions.append({"h": panel.height, "w": panel.width, "x": x, "y": y})
        skyline[x : x + panel.width] = [y + panel.height] * panel.width
    return positions


def _panel(panel: Panel, panel_id: int, position: Mapping[str, int]) -> dict[str, Any]:
    model: dict[str, Any] = {
        "datasource": DATASOURCE,
        "description": panel.description,
        "fieldConfig": {
            "defaults": merged(
                {
                    "thresholds": {
                        "mode": "absolute",
                        "steps": [{"color": "green", "value": None}],
                    },
                    "unit": panel.unit,
                    **_KIND_FIELD_DEFAULTS.get(panel.kind, {}),
                },
                panel.field_defaults,
            ),
            "overrides": _overrides(panel),
        },
        "gridPos": dict(position),
        "id": panel_id,
        "options": merged(_KIND_OPTIONS[panel.kind], panel.options),
        "targets": [_target(query) for query in panel.queries],
        "title": panel.title,
        "type": panel.kind.value,
    }
    if panel.min_interval is not None:
        model["interval"] = panel.min_interval
    if panel.relative_time is not None:
        model["timeFrom"] = panel.relative_time
    return model


def _overrides(panel: Panel) -> list[dict[str, Any]]:
    """A column's shown name and fixed colour, column by column."""
    columns = sorted(set(panel.display_names) | set(panel.colours))
    overrides = []
    for column in columns:
        properties: list[dict[str, Any]] = []
        if column in panel.display_names:
            properties.append({"id": "displayName", "value": panel.display_names[column]})
        if column in panel.colours:
            colour = {"fixedColor": panel.colours[column], "mode": "fixed"}
            properties.append({"id": "color", "value": colour})
        overrides.append({"matcher": {"id": "byName", "options": column}, "properties": properties})
    return overrides


def _target(query: Query) -> dict[str, Any]:
    return {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "format": query.format.value,
        "rawQuery": True,
        "rawSql": query.text,
        "refId": query.ref_id,
    }


def _variable(variable: Variable) -> dict[str, Any]:
    model: dict[str, Any] = {
        "description": variable.description,
        "hide": 0,
        "label": variable.label,
        "name": variable.name,
        "query": variable.query,
        "skipUrlSync": False,
        "type": variable.kind.value,
    }
    if variable.kind is VariableKind.TEXTBOX:
        value = {"selected": True, "text": variable.query, "value": variable.query}
        return {**model, "current": value, "options": [value]}
    model.update(
        {
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "includeAll": True,
            "multi": True,
            "options": [],
        }
    )
    if variable.kind is VariableKind.QUERY:
        model.update(
            {"datasource": DATASOURCE, "definition": variable.query, "refresh": 1, "sort": 0}
        )
    return model


def _builtin_annotations() -> dict[str, Any]:
    return {
        "builtIn": 1,
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "name": "Annotations & Alerts",
        "type": "dashboard",
    }


def merged(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` laid over it, nested mappings merged key by key."""
    result = dict(base)
    for key, value in extra.items():
        current = result.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            result[key] = merged(current, value)
        else:
            result[key] = value
    return result
