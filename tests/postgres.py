"""Throwaway Postgres servers (and PgBouncer) for tests that must hold on both databases, or that
restart and squeeze the server itself (skipped where the binaries are absent)."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

PGBOUNCER = shutil.which("pgbouncer") or (
    "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _bin_dir() -> str | None:
    """Where initdb and pg_ctl are: on the PATH, or Debian's newest /usr/lib/postgresql/*/bin."""
    if found := shutil.which("initdb"):
        return os.path.dirname(found)
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]))
    return dirs[-1] if dirs and os.path.exists(f"{dirs[-1]}/pg_ctl") else None


class PostgresServer:
    """A server of the test's own (the steps of .ci/postgres.sh): it can be restarted mid-test and
    started with settings such as max_connections; the server log is kept for the test to read."""

    def __init__(self, **settings: str | int) -> None:
        bin_dir = _bin_dir()
        if bin_dir is None:
            pytest.skip("no Postgres server binaries on this machine")
        pytest.importorskip("asyncpg")
        self.bin = bin_dir
        # Postgres refuses to run as root: run it as the `postgres` user then.
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.root = tempfile.mkdtemp(prefix="switchboard-pg-")
        if self.prefix:
            shutil.chown(self.root, "postgres")
        self.data, self.port = os.path.join(self.root, "data"), _free_port()
        self.log = Path(self.root) / "server.log"
        self.settings = {"fsync": "off", "synchronous_commit": "off", **settings}
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", "sb", "-E", "UTF8", "--no-sync")

    @property
    def url(self) -> str:
        """An asyncpg URL of the server's `postgres` database."""
        return f"postgresql+asyncpg://sb@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        out = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        subprocess.run([*self.prefix, f"{self.bin}/{tool}", *args], check=True, **out)  # type: ignore[call-overload]

    def _pg_ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 " + " ".join(
            f"-c {key}={value}" for key, value in self.settings.items()
        )
        self._run("pg_ctl", "-D", self.data, "-l", str(self.log), "-o", options, "-w", "-s", *args)

    def start(self) -> None:
        self._pg_ctl("start")

    def restart(self, mode: str = "fast") -> None:
        """`pg_ctl restart -m fast`: every session is ended, the server is away, then back."""
        self._pg_ctl("-m", mode, "restart")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-s", "stop")

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextlib.contextmanager
def postgres_server(**settings: str | int) -> Iterator[PostgresServer]:
    server = PostgresServer(**settings)
    try:
        server.start()
        yield server
    finally:
        server.remove()


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """initdb + pg_ctl in a temporary directory on a loopback port; yields an asyncpg URL."""
    with postgres_server() as server:
        yield server.url


async def fresh_database(server_url: str) -> str:
    """A new, empty database on the throwaway server (one per test); returns its URL."""
    import uuid

    import asyncpg

    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(server_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return server_url.rsplit("/", 1)[0] + f"/{name}"


def _pgbouncer_command(server_url: str, root: Path, port: int) -> list[str]:
    server = make_url(server_url)
    (root / "users.txt").write_text(f'"{server.username or "postgres"}" ""\n')
    (root / "pgbouncer.ini").write_text(
        f"[databases]\n* = host={server.host} port={server.port}\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nauth_type = trust\n"
        f"auth_file = {root}/users.txt\npool_mode = transaction\ndefault_pool_size = 3\n"
        f"max_client_conn = 500\nunix_socket_dir =\nlogfile = {root}/pgbouncer.log\n"
        "ignore_startup_parameters = extra_float_digits\n"
    )
    as_user = ["-u", "postgres"] if os.geteuid() == 0 else []  # it refuses to run as root
    if as_user:
        for path in (root, *root.iterdir()):
            shutil.chown(path, "postgres")
    return [str(PGBOUNCER), *as_user, str(root / "pgbouncer.ini")]


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.2):
            return True
    except OSError:
        return False


@contextlib.asynccontextmanager
async def pgbouncer(server_url: str) -> AsyncIterator[int]:
    """PgBouncer in transaction pooling mode with few server connections, as hosts run it."""
    if PGBOUNCER is None:
        pytest.skip("pgbouncer is not installed")
    root = Path(tempfile.mkdtemp(prefix="switchboard-pgbouncer-"))
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        *_pgbouncer_command(server_url, root, port), stdout=-3, stderr=-3
    )
    try:
        async with asyncio.timeout(60):
            while not _accepts(port):
                assert proc.returncode is None, "pgbouncer exited at start"
                await asyncio.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        await proc.wait()
        shutil.rmtree(root, ignore_errors=True)
