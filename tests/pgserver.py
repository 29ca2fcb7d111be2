"""A throwaway PostgreSQL cluster for the tests: initdb into a temporary folder, a server on a
loopback port (and a unix socket in that folder), one database a test.

Debian's postgresql package provides the binaries (`make test` installs it). As root, initdb
and the server run as the `postgres` account, which initdb requires. The cluster trades
durability for speed (fsync off): it lives for one test session.
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

USER = "monitor"
PASSWORD = "pg-test-Secr3t"  # tests assert that it never appears in any output


class PostgresError(Exception):
    """The cluster could not be set up; the message says why."""


def server_bindir() -> Path:
    """The newest installed PostgreSQL's bin folder (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise PostgresError("PostgreSQL server binaries not found: `make test` installs Debian's postgresql package")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    """One server. `create_database()` gives a fresh database and its URL."""

    def __init__(self) -> None:
        self.bindir = server_bindir()
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="monitor-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as: dict = {}
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresError("running as root, but there is no postgres account to run the server as") from None
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self._as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        self._names = itertools.count(1)

    def _run(self, *args: str) -> str:
        done = subprocess.run(args, capture_output=True, text=True, cwd=self.root, **self._as)
        if done.returncode != 0:
            raise PostgresError(f"{' '.join(args[:2])} failed: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def start(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text("postgres-superuser\n")
        if self._as:
            os.chown(pwfile, self._as["user"], self._as["group"])
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--pwfile", str(pwfile),
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
        )
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self._run(str(self.bindir / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.log), "-o", options)
        self.psql(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}' CREATEDB")

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Runs SQL as the superuser over the unix socket; returns psql's unaligned output."""
        return self._run(
            str(self.bindir / "psql"), "-h", str(self.root), "-p", str(self.port), "-U", "postgres", "-d", database,
            "-v", "ON_ERROR_STOP=1", "-At", "-c", sql,
        )

    def create_database(self) -> str:
        name = f"t{next(self._names)}"
        self.psql(f"CREATE DATABASE {name} OWNER {USER}")
        return self.url(name)

    def url(self, database: str, password: str = PASSWORD) -> str:
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def refuse_connections(self, database: str) -> None:
        """The database becomes unreachable, as when its server is down: open sessions are ended
        and new ones are refused until `allow_connections()`."""
        self.psql(f"ALTER DATABASE {database} ALLOW_CONNECTIONS false")
        self.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'")

    def allow_connections(self, database: str) -> None:
        self.psql(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data), "-m", "immediate", "-w")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
