"""Start real servers on free loopback ports for the tests: no mocks of brokers or databases."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.wait import DEFAULT_WITHIN, wait_until


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """``count`` different ports nobody listens on right now. Calls of free_port one after the other
    can return the same port twice (each is released before the next is picked): a server given one of
    them for two listeners then fails to start."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(count):
            sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def wait_for_port(
    port: int, host: str = "127.0.0.1", timeout: float = DEFAULT_WITHIN, process: subprocess.Popen[Any] | None = None
) -> None:
    """Wait until ``host:port`` accepts connections; give up at once if ``process`` (the one that is to
    listen there) has exited instead."""

    def listening() -> bool:
        socket.create_connection((host, port), timeout=0.5).close()
        return True

    def exited() -> str | None:
        return None if process is None or process.poll() is None else f"it exited ({process.returncode})"

    wait_until(listening, f"a listener on {host}:{port}", timeout, interval=0.05, ignore=(OSError,), abort=exited)


@dataclass
class Mosquitto:
    host: str
    port: int
    process: subprocess.Popen[bytes]
    config: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def start_again(self) -> None:
        """Restart on the same port (for broker-outage tests)."""
        self.stop()
        self.process = subprocess.Popen(
            ["mosquitto", "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port)


@contextlib.contextmanager
def mosquitto(extra_config: str = "", port: int | None = None) -> Iterator[Mosquitto]:
    """A real Mosquitto broker on a free loopback port, anonymous access, MQTT 3.1.1 and 5."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(binary):
        raise RuntimeError("mosquitto is not installed: run 'make test' once to install the test tools")
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="seam-mqtt-"))
    config = workdir / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"max_queued_messages 100000\nmax_inflight_messages 1000\n{extra_config}\n"
    )
    process = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    broker = Mosquitto("127.0.0.1", port, process, config)
    try:
        wait_for_port(port)
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class Postgres:
    dsn: str
    port: int


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path:
        return path
    raise RuntimeError(f"PostgreSQL's {name} is not installed: run 'make test' once to install the test tools")


@contextlib.contextmanager
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server for the tests.

    If ``SEAM_TEST_POSTGRES_DSN`` is set, that server is used. Otherwise a throw-away cluster is created
    in a temporary directory on a free port. PostgreSQL refuses to run as root, so as root the cluster
    runs as the ``postgres`` user.
    """
    dsn = os.environ.get("SEAM_TEST_POSTGRES_DSN")
    if dsn:
        yield Postgres(dsn, 0)
        return
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="seam-pg-"))
    data = workdir / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_user, _pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    options = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [
            *as_user,
            _pg_bin("pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(workdir / "log"),
            "-w",
            "start",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    try:
        yield Postgres(f"postgresql://postgres@127.0.0.1:{port}/postgres", port)
    finally:
        subprocess.run(
            [*as_user, _pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        shutil.rmtree(workdir, ignore_errors=True)


# --- NATS --------------------------------------------------------------------------------------------


def nats_binary() -> str:
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not os.path.exists(binary):
        raise RuntimeError("nats-server is not installed: run 'make test' once to install the test tools")
    return binary


@dataclass
class NatsServer:
    """One nats-server process with its configuration file; stop and start it again on the same ports."""

    name: str
    port: int
    config: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([nats_binary(), "-c", str(self.config)], stdout=log, stderr=log)
        wait_until(
            self._listening,
            f"nats-server {self.name} listening on {self.port}",
            detail=self.tail,
            abort=lambda: (
                f"nats-server {self.name} exited" if self.process and self.process.poll() is not None else None
            ),
            ignore=(OSError,),
        )

    def _listening(self) -> bool:
        socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
        return True

    def stop(self, kill: bool = False) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        if kill:
            process.kill()
        else:
            process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def nats_config(workdir: Path, name: str, body: str, port: int | None = None) -> NatsServer:
    """Write ``<name>.conf`` (listening on a free loopback port, with ``body`` appended) into ``workdir``."""
    port = port or free_port()
    config = workdir / f"{name}.conf"
    config.write_text(f'server_name: "{name}"\nlisten: "127.0.0.1:{port}"\n{body}\n')
    return NatsServer(name, port, config, workdir / f"{name}.log")


@contextlib.contextmanager
def nats_jetstream(extra_config: str = "") -> Iterator[NatsServer]:
    """A single nats-server with JetStream (files in a temporary directory) on a free loopback port."""
    workdir = Path(tempfile.mkdtemp(prefix="seam-nats-"))
    server = nats_config(workdir, "n1", f'jetstream {{ store_dir: "{workdir / "js"}" }}\n{extra_config}')
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
