"""``smartcity dashboards build|push``: push against a small Grafana stand-in over real HTTP.

The stand-in is an ``http.server`` in a thread that answers the three calls the push makes
(list folders, create a folder, save a dashboard) and records every request as grafana-client
sent it: path, headers and JSON body.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from dashboards.build import rendered
from dashboards.push import folder_uid_for
from smartcity.dashboards_cli import dashboards_app

TOKEN = "glsa_test_token_0123456789"  # noqa: S105 - what the stand-in expects


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeGrafana:
    """Answers like Grafana 11 does; ``refuse`` makes every answer that status instead."""

    folders: list[dict[str, Any]] = field(default_factory=list)
    refuse: int | None = None
    requests: list[Request] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self, request: Request) -> tuple[int, Any]:
        if self.refuse is not None:
            return self.refuse, {"message": "invalid API key"}
        if request.method == "GET" and request.path == "/api/folders":
            return 200, self.folders
        if request.method == "POST" and request.path == "/api/folders":
            folder = {"id": 7, "uid": request.body["uid"], "title": request.body["title"]}
            self.folders.append(folder)
            return 200, folder
        if request.method == "POST" and request.path == "/api/dashboards/db":
            uid = request.body["dashboard"]["uid"]
            return 200, {"id": 1, "uid": uid, "status": "success", "version": 2, "url": f"/d/{uid}"}
        return 404, {"message": "Not found"}


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    fake = FakeGrafana()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            request = Request(
                self.command,
                self.path.split("?")[0],
                {k.lower(): v for k, v in self.headers.items()},
                json.loads(raw) if raw else None,
            )
            fake.requests.append(request)
            status, body = fake.answer(request)
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _serve  # noqa: N815 - the names http.server calls

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the test reads the recorded requests instead."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _cli() -> typer.Typer:
    app = typer.Typer(rich_markup_mode=None)
    app.add_typer(dashboards_app, name="dashboards")
    return app


def _push(*arguments: str) -> Any:
    return CliRunner().invoke(_cli(), ["dashboards", "push", *arguments], env={})


def test_push_creates_the_folder_and_posts_every_dashboard_with_the_token(
    grafana: FakeGrafana,
) -> None:
    result = _push("--url", grafana.url, "--token", TOKEN)
    assert result.exit_code == 0, result.output
    assert "6 dashboards pushed to folder 'Smart city' (created)" in result.output
    assert [(r.method, r.path) for r in grafana.requests] == [
        ("GET", "/api/folders"),
        ("POST", "/api/folders"),
        *[("POST", "/api/dashboards/db")] * 6,
    ]
    assert {r.headers["authorization"] for r in grafana.requests} == {f"Bearer {TOKEN}"}
    assert grafana.requests[1].body == {"title": "Smart city", "uid": "smart-city"}
    posted = [r.body for r in grafana.requests[2:]]
    expected = {json.loads(text)["uid"]: json.loads(text) for text in rendered().values()}
    assert sorted(body["dashboard"]["uid"] for body in posted) == sorted(expected)
    for body in posted:
        assert body["folderUid"] == "smart-city"
        assert body["overwrite"] is True
        assert body["dashboard"] == expected[body["dashboard"]["uid"]]
        assert body["dashboard"]["id"] is None, "Grafana matches an existing one by uid"


def test_push_into_an_existing_folder_creates_none(grafana: FakeGrafana) -> None:
    grafana.folders.append({"id": 3, "uid": "abc123", "title": "Sefrou"})
    result = _push("--url", grafana.url + "/", "--token", TOKEN, "--folder", "Sefrou")
    assert result.exit_code == 0, result.output
    assert "(created)" not in result.output
    assert [r.method for r in grafana.requests].count("POST") == 6
    assert {r.body["folderUid"] for r in grafana.requests if r.method == "POST"} == {"abc123"}


def test_a_refused_token_is_a_clear_error_without_a_trace(grafana: FakeGrafana) -> None:
    grafana.refuse = 401
    result = _push("--url", grafana.url, "--token", "wrong")
    assert result.exit_code == 1
    assert "refused the token (401 Unauthorized)" in result.output
    assert "Traceback" not in result.output
    assert grafana.requests[0].headers["authorization"] == "Bearer wrong"


def test_a_token_without_the_right_is_told_which_role_it_needs(grafana: FakeGrafana) -> None:
    grafana.refuse = 403
    result = _push("--url", grafana.url, "--token", TOKEN)
    assert result.exit_code == 1
    assert "Editor role" in result.output


def test_an_unreachable_grafana_is_a_clear_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the push runs: nobody listens
    result = _push("--url", f"http://127.0.0.1:{port}", "--token", TOKEN)
    assert result.exit_code == 1
    assert f"cannot reach Grafana at http://127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--url", "grafana.example:3000", "--token", TOKEN], "is not a Grafana URL"),
        (["--url", "http://127.0.0.1:3000", "--token", " "], "the token is empty"),
        (["--url", "http://127.0.0.1:3000", "--token", TOKEN, "--folder", "!!"], "no letter"),
    ],
)
def test_bad_input_exits_2_before_any_request(arguments: list[str], message: str) -> None:
    result = _push(*arguments)
    assert result.exit_code == 2
    assert message in result.output


def test_folder_uids_come_from_titles() -> None:
    assert folder_uid_for("Smart city") == "smart-city"
    assert folder_uid_for("Sefrou: éclairage & signalisation") == "sefrou-clairage-signalisation"
    assert len(folder_uid_for("x" * 80)) == 40


def test_build_writes_and_check_tells_which_files_differ(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "json"
    written = runner.invoke(_cli(), ["dashboards", "build", "--output", str(out)])
    assert written.exit_code == 0, written.output
    assert "6 dashboards written" in written.output
    checked = runner.invoke(_cli(), ["dashboards", "build", "--check", "--output", str(out)])
    assert checked.exit_code == 0, checked.output
    (out / "smartcity-platform.json").write_text("{}\n", encoding="utf-8")
    stale = runner.invoke(_cli(), ["dashboards", "build", "--check", "--output", str(out)])
    assert stale.exit_code == 1
    assert "smartcity-platform.json: differs" in stale.output
    assert "smartcity-overview.json" not in stale.output


def test_each_command_has_an_example_in_its_help() -> None:
    for command, example in (
        ("build", "smartcity dashboards build --check"),
        ("push", "smartcity dashboards push --url http://127.0.0.1:3000"),
    ):
        result = CliRunner().invoke(_cli(), ["dashboards", command, "--help"])
        assert result.exit_code == 0
        assert example in result.output
