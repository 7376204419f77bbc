"""Roles, tokens and passwords of the API (pure)."""

from __future__ import annotations

from api.problems import problems_as_problem_json
from api.roles import PERMISSIONS, Permission, Places, Principal, Role, roles_with
from api.secrets import (
    hash_password,
    new_token,
    password_matches,
    token_digest,
)


def test_a_crew_may_work_only_on_alerts() -> None:
    crew = PERMISSIONS[Role.CREW]
    assert crew == {
        Permission.READ_OWN_ALERTS,
        Permission.ACKNOWLEDGE,
        Permission.COMMENT,
        Permission.REPAIR,
    }
    for forbidden in (
        Permission.READ,
        Permission.MANAGE_RULES,
        Permission.MANAGE_STRATEGIES,
        Permission.COMMAND,
        Permission.MANAGE_DEVICES,
        Permission.MANAGE_USERS,
    ):
        assert forbidden not in crew


def test_only_the_energy_manager_and_the_admin_change_rules_and_send_commands() -> None:
    for permission in (Permission.MANAGE_RULES, Permission.MANAGE_STRATEGIES, Permission.COMMAND):
        assert roles_with(permission) == [Role.ENERGY_MANAGER, Role.ADMIN]
    assert roles_with(Permission.MANAGE_USERS) == [Role.ADMIN]
    assert roles_with(Permission.MANAGE_DEVICES) == [Role.ADMIN]


def test_the_admin_may_do_everything() -> None:
    assert PERMISSIONS[Role.ADMIN] == frozenset(Permission)


def test_a_crew_works_on_the_alerts_of_its_own_places_only() -> None:
    crew = Principal(
        "crew-north",
        Role.CREW,
        Places(frozenset({"route-el-menzel-north"}), frozenset({"town-hall"})),
    )
    assert crew.may_work_on(Places(street_groups=frozenset({"route-el-menzel-north"})))
    assert crew.may_work_on(Places(buildings=frozenset({"town-hall"})))
    assert not crew.may_work_on(Places(street_groups=frozenset({"route-el-menzel-south"})))
    assert not crew.may_work_on(Places())  # a site-wide alert belongs to no crew
    technician = Principal("tech", Role.TECHNICIAN)
    assert technician.may_work_on(Places(street_groups=frozenset({"route-el-menzel-south"})))


def test_tokens_are_long_random_and_kept_as_digests() -> None:
    first, second = new_token(), new_token()
    assert first != second
    assert first.startswith("sc_")
    assert len(first) >= 40
    assert token_digest(first) != first
    assert token_digest(first) == token_digest(first)
    assert len(token_digest(first)) == 64


def test_passwords_are_hashed_with_argon2() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert password_matches("correct horse battery", stored)
    assert not password_matches("wrong horse battery", stored)
    assert not password_matches("anything", "not a hash")


def test_error_responses_are_documented_as_problem_json() -> None:
    schema = {
        "paths": {
            "/a": {
                "get": {
                    "responses": {
                        "200": {"content": {"application/json": {"schema": {}}}},
                        "404": {"content": {"application/json": {"schema": {"$ref": "P"}}}},
                    }
                }
            }
        }
    }
    responses = problems_as_problem_json(schema)["paths"]["/a"]["get"]["responses"]
    assert responses["200"]["content"] == {"application/json": {"schema": {}}}
    assert responses["404"]["content"] == {"application/problem+json": {"schema": {"$ref": "P"}}}
