"""A real PostgreSQL for the tests, from the distribution's binaries (PostgreSQL 15 at
/usr/lib/postgresql/15/bin, Debian's ``postgresql-15``), in a temporary directory on a free
loopback port.

PostgreSQL refuses to run as root, so the cluster belongs to the ``postgres`` user (``runuser``):
trust authentication for the superuser ``fleet``, the socket in the same directory, no fsync.
`why_not()` says why it cannot be started here (not root, no binaries, no ``postgres`` user):
the PostgreSQL variants of the tests skip with that reason.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from tests.mqtt_broker import free_port


def _pg_bin() -> Path:
    """`CHAIR_TEST_PG_BIN`, else the newest of Debian's /usr/lib/postgresql/<version>/bin."""
    if "CHAIR_TEST_PG_BIN" in os.environ:
        return Path(os.environ["CHAIR_TEST_PG_BIN"])
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int("0" + p.parts[-3])
    )
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
USER = "fleet"
"""The cluster's superuser (trust authentication on 127.0.0.1)."""


def why_not() -> str | None:
    """Why a PostgreSQL cannot be started here; None when it can."""
    if not (PG_BIN / "initdb").is_file() or not (PG_BIN / "pg_ctl").is_file():
        return f"PostgreSQL is not installed ({PG_BIN}/initdb: apt-get install postgresql-15)"
    if os.geteuid() != 0:
        return "starting a PostgreSQL for the tests needs root (it runs as the postgres user)"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no postgres user to run PostgreSQL as"
    if shutil.which("runuser") is None:
        return "no runuser to start PostgreSQL as the postgres user"
    return None


class PostgresServer:
    """One PostgreSQL cluster on 127.0.0.1:`port`, in a temporary directory of its own."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="chair-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.host = "127.0.0.1"
        self.log = self.dir / "postgres.log"
        self._started = False

    def _as_postgres(self, *args: str, timeout: float = 60.0) -> None:
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{Path(args[0]).name} failed ({done.returncode}): "
                f"{(done.stderr or done.stdout).strip()[-2000:]}\n{self.log_tail()}"
            )

    def start(self) -> None:
        os.chown(self.dir, pwd.getpwnam("postgres").pw_uid, -1)
        self._as_postgres(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", USER, "--no-sync"
        )
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses={self.host} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        self._as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
            "-w", "-t", "60", "start",
        )  # fmt: skip
        self._started = True

    def stop(self) -> None:
        if self._started:
            self._started = False
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._as_postgres(
                    str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"
                )
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@{self.host}:{self.port}/{database}"

    async def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        import asyncpg

        name = f"t_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(self.url())
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.url(name)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
