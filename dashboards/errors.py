"""The one exception base of the dashboards package."""

from __future__ import annotations


class DashboardError(Exception):
    """Something about the dashboards could not be done; the message says what to change."""


class MacroError(DashboardError):
    """A query uses a macro or variable that cannot be expanded (unknown, or bad arguments)."""


class PushError(DashboardError):
    """Grafana could not be reached, refused the token, or refused a dashboard."""
