"""Start the real Mosquitto and PostgreSQL on this machine, in folders of our own.

Used by ``smartcity up`` and ``smartcity broker`` and by the test fixtures: each instance has
its own port and data folder, so the platform never depends on (or disturbs) a system service.
PostgreSQL refuses to run as root; as root, its commands run as the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from broker_config import DEFAULT_AUTOSAVE, Autosave, BrokerLayout, BrokerSecurity, write_config
from runtime.limits import raise_open_file_limit


class LocalServiceError(RuntimeError):
    """A local broker or database could not be started or stopped."""


_started: dict[int, LocalMosquitto | LocalPostgres] = {}
"""The brokers and databases this process started and has not stopped yet."""


def stop_everything_started() -> None:
    """Kill every broker and crash every database this process started: for a forced exit,
    which must not leave them running (they run in sessions of their own, so a Ctrl-C
    does not reach them)."""
    for service in list(_started.values()):
        try:
            if isinstance(service, LocalMosquitto):
                service.kill_now()
            else:
                service.stop("immediate")
        except (LocalServiceError, OSError, subprocess.SubprocessError):
            continue


PRIVATE_PORTS: Final = range(20_000, 32_000)
"""Where :func:`free_port` looks: below Linux's ephemeral range (32768-60999), which the kernel
hands to every outgoing connection. A broker restarted on its port (a test of a crash) would
otherwise find it taken by some client's connection meanwhile ("Address already in use")."""


def free_port() -> int:
    """A port nobody listens on now, outside the range outgoing connections are given."""
    for _ in range(200):
        port = random.choice(PRIVATE_PORTS)  # noqa: S311 - a port, not a secret
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as probe:  # the range is crowded: any port the kernel gives
        probe.bind(("127.0.0.1", 0))
        found: int = probe.getsockname()[1]
        return found


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(port: int, timeout_s: float, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise LocalServiceError(f"nothing listens on {host}:{port} after {timeout_s:.0f} s")


@dataclass
class LocalMosquitto:
    data_dir: Path
    port: int
    bind_address: str = "127.0.0.1"
    security: BrokerSecurity | None = None
    """None: an open broker (anonymous, loopback only), for tests not about the broker."""
    autosave: Autosave = DEFAULT_AUTOSAVE
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def layout(self) -> BrokerLayout:
        return BrokerLayout(
            self.port, self.data_dir, self.bind_address, self.security, self.autosave
        )

    def start(self, timeout_s: float = 10.0) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise LocalServiceError(
                "mosquitto is not installed: run scripts/bootstrap (or apt-get install mosquitto)"
            )
        for port in self.layout.ports:
            if _listening(self.bind_address, port):
                raise LocalServiceError(
                    f"port {port} is already in use (another broker, or one left running?)"
                )
        config = write_config(self.layout)
        self._process = subprocess.Popen(
            [binary, "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=raise_open_file_limit,  # noqa: PLW1509 - only sets a resource limit
        )
        _started[id(self)] = self
        try:
            for port in self.layout.ports:
                wait_for_port(port, timeout_s)
        except LocalServiceError:
            self.kill()
            log_tail = self._log_tail()
            raise LocalServiceError(f"mosquitto did not start; its log ends:\n{log_tail}") from None
        if not self.running:  # something else answered on our port
            self._process = None
            raise LocalServiceError(f"mosquitto exited at start; its log ends:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.layout.log_file.read_text().splitlines()[-10:])
        except OSError:
            return "(no log)"

    @property
    def pid(self) -> int | None:
        """The broker's process id while this object runs it."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def reload(self) -> None:
        """Make the broker read its password files, ACL and revocation list again (SIGHUP)."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGHUP)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop cleanly: mosquitto saves its persistence file on SIGTERM."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        _started.pop(id(self), None)

    def kill(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
        self._process = None
        _started.pop(id(self), None)

    def kill_now(self) -> None:
        """SIGKILL, without waiting: from a signal handler, which may have interrupted a
        ``wait()`` on this very process (Popen's wait lock is not reentrant); the caller
        exits right after, and init reaps the broker."""
        process = self._process
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
        _started.pop(id(self), None)


def postgres_bindir(chosen: Path | None = None) -> Path:
    """``chosen`` if given (checked), else the newest installed PostgreSQL >= 15 server
    binaries."""
    if chosen is not None:
        if not (chosen / "pg_ctl").is_file():
            raise LocalServiceError(
                f"{chosen} holds no PostgreSQL server binaries (no pg_ctl there); name a folder"
                " such as /usr/lib/postgresql/15/bin"
            )
        return chosen
    candidates = []
    for pg_ctl in Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"):
        try:
            version = int(pg_ctl.parent.parent.name)
        except ValueError:
            continue
        if version >= 15:
            candidates.append((version, pg_ctl.parent))
    if candidates:
        return max(candidates)[1]
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    raise LocalServiceError(
        "PostgreSQL >= 15 server is not installed: run scripts/bootstrap "
        "(or apt-get install postgresql), or set DATABASE_URL to an existing server"
    )


@dataclass
class LocalPostgres:
    """A private PostgreSQL cluster: ``initdb`` once, then start and stop with ``pg_ctl``."""

    data_dir: Path
    port: int
    durable: bool = True
    """False turns fsync off: for throwaway test clusters only."""
    settings: dict[str, str] = field(default_factory=dict)
    """Extra server settings, e.g. shared_preload_libraries."""
    bindir: Path | None = None
    """The server binaries to use; None: the newest installed (:func:`postgres_bindir`)."""

    def _as_owner(self, command: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *command]
        return command

    def _run(self, command: list[str], timeout_s: float = 120) -> None:
        result = subprocess.run(
            self._as_owner(command), capture_output=True, text=True, timeout=timeout_s, check=False
        )
        if result.returncode != 0:
            raise LocalServiceError(
                f"{Path(command[0]).name} failed ({result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-2000:]}"
            )

    def initialize(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.data_dir, "postgres", "postgres")
        self.data_dir.chmod(0o700)
        self._run(
            [
                str(postgres_bindir(self.bindir) / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
            ]
        )

    def start(self, timeout_s: float = 60) -> None:
        self.initialize()
        options = {
            "port": str(self.port),
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.data_dir),
            "max_connections": "200",
            "timescaledb.telemetry_level": "off",
            **(
                {}
                if self.durable
                else {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
            ),
            **self.settings,
        }
        if "timescaledb" not in options.get("shared_preload_libraries", ""):
            del options["timescaledb.telemetry_level"]
        flags = " ".join(f"-c {key}={value}" for key, value in options.items())
        self._run(
            [
                str(postgres_bindir(self.bindir) / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.data_dir / "server.log"),
                "-o",
                flags,
                "-w",
                "-t",
                str(int(timeout_s)),
                "start",
            ],
            timeout_s=timeout_s + 10,
        )
        _started[id(self)] = self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; ``mode`` is pg_ctl's: smart, fast or immediate (a crash)."""
        if not (self.data_dir / "postmaster.pid").exists():
            _started.pop(id(self), None)
            return
        self._run(
            [
                str(postgres_bindir(self.bindir) / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-m",
                mode,
                "-w",
                "stop",
            ]
        )
        _started.pop(id(self), None)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


@contextlib.contextmanager
def scratch_database(
    server_url: str | None,
    workdir: Path,
    name: str,
    progress: Callable[[str], None],
    settings: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """The URL of an empty database ``name`` on ``server_url``, or on a private PostgreSQL
    (fsync on, in ``workdir``, with ``settings``) when None; dropped (and the private server
    stopped) afterwards, so that a benchmark or a scoring run never touches the city's data."""
    import psycopg

    postgres: LocalPostgres | None = None
    created = False
    try:
        if server_url is None:
            postgres = LocalPostgres(
                workdir / "postgres", free_port(), durable=True, settings=dict(settings or {})
            )
            progress(f"starting a private PostgreSQL (fsync on) in {postgres.data_dir}")
            postgres.start()
            server_url = postgres.url()
        with psycopg.connect(server_url, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        created = True
        yield urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    finally:
        if created and server_url is not None:
            with psycopg.connect(server_url, autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if postgres is not None:
            postgres.stop("immediate")
