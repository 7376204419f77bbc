"""The API schema's examples name no real device: a fuzzer replaying them against a live
platform (schemathesis does) must not decommission or re-key one of Sefrou's lights."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from api.app import create_app
from api.config import ApiConfig
from protocol.sites import load_site
from smartcity.cli_support import SITES_DIR


def _examples(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "examples" and isinstance(value, list):
                yield from (str(example) for example in value)
            elif key == "example":
                yield str(value)
            else:
                yield from _examples(value)
    elif isinstance(node, list):
        for item in node:
            yield from _examples(item)


def test_no_example_of_the_schema_names_a_device_of_a_site() -> None:
    schema = create_app(ApiConfig(database_url="postgresql://unused/none")).openapi()
    examples = set(_examples(schema))
    assert "sl-example-001" in examples, "the examples were found"
    real = {device.id for site in SITES_DIR.glob("*.yaml") for device in load_site(site).devices}
    named = {e for e in examples if any(part in real for part in e.split("/"))}
    assert named == set()


def test_a_user_change_offers_null_only_where_null_is_taken() -> None:
    """A user always has a role, a name, places and a language: the API refuses null for them,
    so the schema must not offer it (a fuzzer would rightly call the refusal a bug)."""
    schema = create_app(ApiConfig(database_url="postgresql://unused/none")).openapi()
    fields = schema["components"]["schemas"]["UserChange"]["properties"]
    offers_null = {
        name
        for name, field in fields.items()
        if field.get("type") == "null"
        or any(option.get("type") == "null" for option in field.get("anyOf", []))
    }
    assert offers_null.isdisjoint(
        {"role", "display_name", "street_groups", "buildings", "language"}
    )
    assert "password" in fields
    assert "disabled" in fields
