"""Errors raised by the alerts package."""

from __future__ import annotations


class AlertError(ValueError):
    """Base of every error about an alert, a silence or a notification setting."""
