"""Errors raised by the control package."""

from __future__ import annotations


class ControlError(ValueError):
    """Base of every error about an energy strategy or a control setting."""
