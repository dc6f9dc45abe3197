"""Real MariaDB and PostgreSQL servers for the database tests (Debian mariadb-server, postgresql).

Each server runs on a free loopback port in its own temp dir and is stopped by the exact PID it
was started with. MariaDB: a primary with binlog replication to replicas (GTID, slave_pos).
PostgreSQL: a primary and streaming standbys made with ``pg_basebackup -R``. ``logs()`` returns
the servers' logs for failing tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg2
import pymysql

from tests.helpers import free_port, wait_until

USER = "app"
PASSWORD = "app-secret"
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


# --- MariaDB ------------------------------------------------------------------------------------


class MariaDB:
    """One mariadbd. ``server_id`` 1 is the primary by convention; replicas start read-only."""

    def __init__(self, base: Path, name: str, server_id: int, template: Path, *, replica: bool) -> None:
        self.name = name
        self.dir = base / name
        self.server_id = server_id
        self.port = free_port()
        self.replica = replica
        self.proc: subprocess.Popen[bytes] | None = None
        shutil.copytree(template, self.dir / "data", symlinks=True)

    @property
    def socket(self) -> str:
        return str(self.dir / "mysqld.sock")

    @property
    def log_path(self) -> Path:
        return self.dir / "error.log"

    def start(self) -> None:
        args = [
            "mariadbd", "--no-defaults", "--user=root",
            f"--datadir={self.dir / 'data'}", f"--port={self.port}", "--bind-address=127.0.0.1",
            f"--socket={self.socket}", f"--pid-file={self.dir / 'mysqld.pid'}",
            f"--log-error={self.log_path}", f"--server-id={self.server_id}",
            f"--log-bin={self.dir / 'data' / 'binlog'}", "--binlog-format=ROW", "--log-slave-updates",
            "--skip-name-resolve", "--innodb-buffer-pool-size=16M", "--innodb-log-buffer-size=1M",
            "--performance-schema=OFF", "--skip-log-bin-trust-function-creators",
            "--max-connections=200", "--innodb-flush-log-at-trx-commit=2", "--sync-binlog=0",
        ]  # fmt: skip
        if self.replica:
            args.append("--read-only=1")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._ready, timeout=60, interval=0.1, what=f"mariadb {self.name}")

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"mariadbd {self.name} exited:\n{self.logs()}")
        try:
            self.root().close()
            return True
        except pymysql.MySQLError:
            return False

    def root(self) -> Any:
        return pymysql.connect(unix_socket=self.socket, user="root", autocommit=True)

    def sql(self, *statements: str) -> list[Any]:
        conn = self.root()
        try:
            out: list[Any] = []
            with conn.cursor(pymysql.cursors.DictCursor) as cursor:
                for statement in statements:
                    cursor.execute(statement)
                    out = list(cursor.fetchall())
            return out
        finally:
            conn.close()

    def jdbc(self, database: str) -> str:
        return f"jdbc:mysql://127.0.0.1:{self.port}/{database}?useSSL=false&characterEncoding=utf8"

    def stop(self) -> None:
        _stop(self.proc)

    def kill(self) -> None:
        _stop(self.proc, signal.SIGKILL)

    def logs(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- mariadb {self.name} (port {self.port}) ---\n{text[-4000:]}"


_TEMPLATE: Path | None = None


def mariadb_template() -> Path:
    """An initialised data dir, made once per test process and copied for every server."""
    global _TEMPLATE
    if _TEMPLATE is None or not _TEMPLATE.exists():
        path = Path(tempfile.mkdtemp(prefix="opensergo-mariadb-template-")) / "data"
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", "--user=root", f"--datadir={path}",
             "--auth-root-authentication-method=socket", "--skip-test-db"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        _TEMPLATE = path
    return _TEMPLATE


class MariaDBCluster:
    """A primary and ``replicas`` replicas replicating every database (GTID, slave_pos)."""

    def __init__(self, base: Path, replicas: int = 1) -> None:
        template = mariadb_template()
        self.primary = MariaDB(base, "primary", 1, template, replica=False)
        self.replicas = [MariaDB(base, f"replica{i}", 2 + i, template, replica=True) for i in range(replicas)]

    @property
    def servers(self) -> list[MariaDB]:
        return [self.primary, *self.replicas]

    def start(self) -> None:
        try:
            for server in self.servers:
                server.start()
                server.sql(
                    "SET sql_log_bin=0",
                    f"CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}'",
                    f"GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'%' WITH GRANT OPTION",
                    "CREATE USER 'repl'@'%' IDENTIFIED BY 'repl'",
                    "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'repl'@'%'",
                )
            for replica in self.replicas:
                self.replicate(replica, self.primary)
        except BaseException:
            print(self.logs())
            self.stop()
            raise

    @staticmethod
    def replicate(replica: MariaDB, source: MariaDB) -> None:
        replica.sql(
            "STOP SLAVE",
            f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={source.port}, MASTER_USER='repl', "
            "MASTER_PASSWORD='repl', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1",
            "START SLAVE",
        )
        wait_until(
            lambda: replica.sql("SHOW SLAVE STATUS")[0]["Slave_IO_Running"] == "Yes",
            timeout=30,
            what=f"{replica.name} replicating",
        )

    def wait_replicated(self, timeout: float = 20) -> None:
        """Every replica has applied the primary's current binlog position."""
        [row] = self.primary.sql("SELECT @@gtid_binlog_pos AS pos")
        pos = row["pos"]
        for replica in self.replicas:
            if replica.proc is None or replica.proc.poll() is not None:
                continue
            replica.sql(f"SELECT MASTER_GTID_WAIT('{pos}', {timeout})")

    @staticmethod
    def promote(replica: MariaDB) -> None:
        replica.sql("STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL read_only=0")

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()

    def logs(self) -> str:
        return "\n".join(s.logs() for s in self.servers)


# --- PostgreSQL ---------------------------------------------------------------------------------


def _pg_dir(prefix: str) -> Path:
    # The postgres user needs its own dirs; pytest's tmp_path (mode 0700, root) is not reachable.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    shutil.chown(path, "postgres", "postgres")
    return path


class PostgreSQL:
    def __init__(self, base: Path, name: str) -> None:
        self.name = name
        self.base = base
        self.data = base / name
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.base / f"{self.name}.log"

    def start(self) -> None:
        log = self.log_path.open("ab")
        shutil.chown(self.log_path, "postgres", "postgres")
        self.proc = subprocess.Popen(
            [str(PG_BIN / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.base),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "shared_buffers=16MB", "-c", "max_connections=100",
             "-c", "wal_level=replica", "-c", "max_wal_senders=10", "-c", "hot_standby=on",
             "-c", "wal_receiver_status_interval=1s", "-c", "max_prepared_transactions=10"],
            stdout=log, stderr=subprocess.STDOUT, user="postgres", group="postgres",
        )  # fmt: skip
        wait_until(self._ready, timeout=60, interval=0.1, what=f"postgres {self.name}")

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"postgres {self.name} exited:\n{self.logs()}")
        try:
            self.connect().close()
            return True
        except psycopg2.OperationalError:
            return False

    def connect(self, database: str = "postgres", user: str = "postgres") -> Any:
        conn = psycopg2.connect(
            host="127.0.0.1", port=self.port, user=user, dbname=database, connect_timeout=2
        )
        conn.autocommit = True
        return conn

    def sql(self, *statements: str, database: str = "postgres") -> list[Any]:
        conn = self.connect(database)
        try:
            out: list[Any] = []
            with conn.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
                    out = list(cursor.fetchall()) if cursor.description else []
            return out
        finally:
            conn.close()

    def jdbc(self, database: str) -> str:
        return f"jdbc:postgresql://127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        _stop(self.proc, signal.SIGINT)  # fast shutdown

    def kill(self) -> None:
        _stop(self.proc, signal.SIGKILL)

    def logs(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- postgres {self.name} (port {self.port}) ---\n{text[-4000:]}"


class PostgreSQLCluster:
    """A primary and ``standbys`` streaming standbys (pg_basebackup -R -X stream)."""

    def __init__(self, standbys: int = 1) -> None:
        self.base = _pg_dir("opensergo-pg-")
        self.primary = PostgreSQL(self.base, "primary")
        self.standbys = [PostgreSQL(self.base, f"standby{i}") for i in range(standbys)]

    @property
    def servers(self) -> list[PostgreSQL]:
        return [self.primary, *self.standbys]

    def start(self) -> None:
        as_postgres: dict[str, Any] = {"user": "postgres", "group": "postgres", "capture_output": True,
                                       "timeout": 120, "check": True}  # fmt: skip
        try:
            subprocess.run(
                [str(PG_BIN / "initdb"), "-D", str(self.primary.data), "-U", "postgres", "--auth=trust",
                 "--no-sync", "-E", "UTF8"],
                **as_postgres,
            )  # fmt: skip
            self.primary.start()
            self.primary.sql(f"CREATE USER {USER} SUPERUSER PASSWORD '{PASSWORD}'")
            for standby in self.standbys:
                subprocess.run(
                    [str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.primary.port),
                     "-U", "postgres", "-D", str(standby.data), "-R", "-X", "stream", "--no-sync"],
                    **as_postgres,
                )  # fmt: skip
                standby.start()
        except subprocess.CalledProcessError as e:
            print(e.stdout, e.stderr, self.logs())
            self.stop()
            raise
        except BaseException:
            print(self.logs())
            self.stop()
            raise

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()

    def cleanup(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)

    def logs(self) -> str:
        return "\n".join(s.logs() for s in self.servers)


def env_without_pg() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def wait_for(condition: Any, timeout: float = 20, what: str = "") -> Any:
    return wait_until(condition, timeout=timeout, interval=0.05, what=what)


def monotonic() -> float:
    return time.monotonic()
