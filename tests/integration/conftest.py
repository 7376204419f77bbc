"""Fixtures shared by the integration tests beyond those of tests/conftest.py."""

from tests.integration.api_fixtures import api
from tests.integration.receivers import smtp_server, webhook

__all__ = ["api", "smtp_server", "webhook"]
