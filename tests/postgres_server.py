"""A real, throwaway PostgreSQL server for the tests: `initdb` into a fresh folder, `postgres` on a free local port
(and a unix socket in the same folder), a fresh database per test, everything removed at the end.

PostgreSQL refuses to run as root, so as root (here and in CI) the server runs as the `postgres` system user, which
owns the folder. The binaries come from Debian's `postgresql` package (`scripts/bootstrap.sh` installs it) or from
PATH; without them the tests that need a server are skipped, saying why.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

SUPERUSER = "llmrec"
START_TIMEOUT_S = 60


def find_binaries() -> Path | None:
    """The folder holding `initdb` and `pg_ctl` (the newest Debian install first), None when there is none."""
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda f: int(Path(f).parent.name), reverse=True)
    on_path = shutil.which("initdb")
    for folder in [*folders, *([str(Path(on_path).parent)] if on_path else [])]:
        if all(Path(folder, name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    return None


def unavailable_reason() -> str | None:
    """Why no server can be started here (None when one can)."""
    if find_binaries() is None:
        return "PostgreSQL binaries (initdb, pg_ctl) not found: install Debian's postgresql (scripts/bootstrap.sh)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` system user to run PostgreSQL as"
    return None


class PostgresServer:
    """One running server; `url(database)` for clients, `new_database()` for a test's own database."""

    def __init__(self) -> None:
        self.bin = find_binaries()
        assert self.bin is not None, unavailable_reason()
        self.root = Path(tempfile.mkdtemp(prefix="llmrec-postgres-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._as_owner: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL will not run as root
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._as_owner = ["runuser", "-u", "postgres", "--"]
        self._numbers = itertools.count(1)
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c full_page_writes=off")
        try:
            self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8",
                      "--locale=C", "--no-sync")
            self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options,
                      "-w", "-t", str(START_TIMEOUT_S), "start")
        except RuntimeError:
            self.stop()
            raise

    def url(self, database: str = "postgres") -> str:
        """A client URL of one database on this server (TCP on 127.0.0.1; the server trusts local users)."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """Create an empty database; returns its URL."""
        name = f"test_{next(self._numbers)}"
        self.sql(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by `new_database`, closing the connections still open to it."""
        self.sql(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")

    def sql(self, statement: str) -> None:
        """Run one statement outside a transaction (as CREATE DATABASE needs)."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(statement)

    def stop(self) -> None:
        """Stop the server (immediately: its data is thrown away) and remove its folder."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, program: str, *args: str, check: bool = True) -> None:
        done = subprocess.run([*self._as_owner, str(self.bin / program), *args], capture_output=True, text=True,
                              cwd=self.root, timeout=START_TIMEOUT_S * 2)
        if check and done.returncode:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr.strip()}\n{tail}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
