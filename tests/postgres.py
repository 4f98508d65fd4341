"""A throwaway Postgres server for tests that must hold on both databases (skipped where absent)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """initdb + pg_ctl in a temporary directory on a loopback port; yields an asyncpg URL."""
    if not (shutil.which("initdb") and shutil.which("pg_ctl")):
        pytest.skip("no Postgres server binaries on this machine")
    pytest.importorskip("asyncpg")
    # Postgres refuses to run as root: run it as the `postgres` user then.
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = tempfile.mkdtemp(prefix="switchboard-pg-")
    if prefix:
        shutil.chown(root, "postgres")
    data, port = os.path.join(root, "data"), _free_port()
    run = {"check": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    try:
        subprocess.run([*prefix, "initdb", "-D", data, "-A", "trust", "-U", "sb"], **run)
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run([*prefix, "pg_ctl", "-D", data, "-o", options, "-w", "start"], **run)
        try:
            yield f"postgresql+asyncpg://sb@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run([*prefix, "pg_ctl", "-D", data, "-m", "immediate", "stop"], **run)
    finally:
        shutil.rmtree(root, ignore_errors=True)


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
