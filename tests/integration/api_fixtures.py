"""Fixtures for the API tests: the application on a fresh database with the Sefrou fleet, a
real Mosquitto, and one user of each role with a token."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.accounts import create_user, issue_token
from api.app import create_app
from api.config import ApiConfig
from api.roles import Role
from protocol.sites import SiteInventory, load_site
from runtime.local_services import LocalMosquitto
from storage.registry import upsert_site

SEFROU = Path(__file__).resolve().parents[2] / "sites" / "sefrou.yaml"
PASSWORD = "correct horse battery"  # noqa: S105 - the test users' password

# name: (role, street groups, buildings)
PEOPLE = {
    "admin": (Role.ADMIN, (), ()),
    "technician": (Role.TECHNICIAN, (), ()),
    "energy": (Role.ENERGY_MANAGER, (), ()),
    "crew-north": (Role.CREW, ("route-el-menzel-north",), ("town-hall",)),
    "crew-south": (Role.CREW, ("route-el-menzel-south",), ()),
}


@cache
def sefrou() -> SiteInventory:
    return load_site(SEFROU)


@dataclass
class ApiSession:
    """A running application and a token per person of :data:`PEOPLE`."""

    client: TestClient
    database_url: str
    tokens: dict[str, str]

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def get(self, who: str, url: str, **kwargs: object) -> object:
        return self.client.get(url, headers=self.headers(who), **kwargs)  # type: ignore[arg-type]


def add_people(database_url: str) -> dict[str, str]:
    tokens = {}
    with psycopg.connect(database_url) as connection:
        for name, (role, groups, buildings) in PEOPLE.items():
            create_user(
                connection, name, role, street_groups=groups, buildings=buildings,
                password=PASSWORD, display_name=name.replace("-", " ").title(),
            )  # fmt: skip
            tokens[name], _ = issue_token(connection, name, now=datetime.now(UTC))
    return tokens


@pytest.fixture
def api(database_url: str, broker: LocalMosquitto) -> Iterator[ApiSession]:
    """The API on a fresh database holding the Sefrou fleet, with a real broker."""
    with psycopg.connect(database_url) as connection:
        upsert_site(connection, sefrou())
    tokens = add_people(database_url)
    config = ApiConfig(database_url=database_url, mqtt_port=broker.port, pool_size=4)
    with TestClient(create_app(config), raise_server_exceptions=False) as client:
        yield ApiSession(client, database_url, tokens)
