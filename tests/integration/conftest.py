"""Fixtures shared by the integration tests beyond those of tests/conftest.py."""

from tests.integration.receivers import smtp_server, webhook

__all__ = ["smtp_server", "webhook"]
