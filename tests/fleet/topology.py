"""A fleet on loopback: a three-server NATS hub cluster, one leaf node per site, each site's stream
sourced into the hub's fleet stream. Used by the topology test and by bench/bench_fleet.py.

Every leaf reaches the hub through its own relay (socat), so a test can cut one site's link, and only
that one, without touching the servers: stopping the relay's process group drops the established
connections and refuses new ones, as a cut line would.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import nats
from nats.js.api import ExternalStream, RetentionPolicy, StorageType, StreamConfig, StreamSource

from tests.support.servers import NatsServer, free_ports, nats_config
from tests.support.wait import wait_until, wait_until_async

HUB_DOMAIN = "hub"
FLEET = "FLEET"


def site_stream(site: str) -> str:
    return f"SITE_{site}"


@dataclass
class Relay:
    """socat from a local port to a hub server's leafnode port; cut() and restore() it."""

    listen: int
    target: int
    process: subprocess.Popen[bytes] | None = None

    def restore(self) -> None:
        binary = shutil.which("socat") or "/usr/bin/socat"
        self.process = subprocess.Popen(
            [binary, f"TCP-LISTEN:{self.listen},bind=127.0.0.1,reuseaddr,fork", f"TCP:127.0.0.1:{self.target}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: cut() ends the forked connections too
        )

    def cut(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@dataclass
class Site:
    name: str
    server: NatsServer
    relays: list[Relay]

    @property
    def domain(self) -> str:
        return self.name

    def cut(self) -> None:
        for relay in self.relays:
            relay.cut()

    def restore(self) -> None:
        for relay in self.relays:
            relay.restore()


@dataclass
class Fleet:
    workdir: Path
    hub: list[NatsServer]
    sites: dict[str, Site] = field(default_factory=dict)

    @property
    def hub_urls(self) -> list[str]:
        return [server.url for server in self.hub]

    def stop(self) -> None:
        for site in self.sites.values():
            site.cut()
            site.server.stop()
        for server in self.hub:
            server.stop()


def _hub(workdir: Path, size: int) -> list[NatsServer]:
    ports = free_ports(3 * size)  # each server's clients, routes and leaf nodes: all different
    client_ports, cluster_ports, leaf_ports = ports[:size], ports[size : 2 * size], ports[2 * size :]
    servers = []
    for index in range(size):
        routes = ", ".join(f'"nats-route://127.0.0.1:{p}"' for i, p in enumerate(cluster_ports) if i != index)
        body = (
            f'jetstream {{ store_dir: "{workdir / f"hub{index + 1}"}", domain: {HUB_DOMAIN} }}\n'
            f'cluster {{ name: hub, listen: "127.0.0.1:{cluster_ports[index]}", routes: [{routes}] }}\n'
            f'leafnodes {{ listen: "127.0.0.1:{leaf_ports[index]}" }}\n'
        )
        server = nats_config(workdir, f"hub{index + 1}", body, client_ports[index])
        server.leaf_port = leaf_ports[index]  # type: ignore[attr-defined]
        servers.append(server)
    return servers


@contextmanager
def fleet(site_names: list[str], hub_size: int = 3) -> Iterator[Fleet]:
    """Start the hub cluster and one leaf node per site (streams are made by :func:`make_streams`)."""
    workdir = Path(tempfile.mkdtemp(prefix="seam-fleet-"))
    running = Fleet(workdir, _hub(workdir, hub_size))
    try:
        for server in running.hub:
            server.start()
        for name in site_names:
            leaf_ports = [server.leaf_port for server in running.hub]  # type: ignore[attr-defined]
            relays = [Relay(listen, port) for listen, port in zip(free_ports(len(leaf_ports)), leaf_ports, strict=True)]
            remotes = ", ".join(f'"nats-leaf://127.0.0.1:{relay.listen}"' for relay in relays)
            body = (
                f'jetstream {{ store_dir: "{workdir / name}", domain: {name} }}\n'
                f"leafnodes {{ reconnect: 1, remotes: [ {{ urls: [{remotes}] }} ] }}\n"
            )
            site = Site(name, nats_config(workdir, f"leaf-{name}", body), relays)
            site.restore()
            site.server.start()
            running.sites[name] = site
        yield running
    finally:
        running.stop()
        shutil.rmtree(workdir, ignore_errors=True)


async def make_streams(running: Fleet, subject_prefix: str, enterprise: str, replicas: int = 3) -> None:
    """Each site's stream on its leaf (its own domain) and the hub's fleet stream sourcing them all."""
    for site in running.sites.values():
        client = await nats.connect(site.server.url)
        js = client.jetstream()
        await js.add_stream(
            StreamConfig(
                name=site_stream(site.name),
                subjects=[f"{subject_prefix}.{enterprise}.{site.name}.>"],
                storage=StorageType.FILE,
                duplicate_window=120.0,
            )
        )
        await client.close()
    sources = [
        StreamSource(name=site_stream(site.name), external=ExternalStream(api=f"$JS.{site.domain}.API"))
        for site in running.sites.values()
    ]
    client = await nats.connect(running.hub_urls)
    js = client.jetstream()
    config = StreamConfig(
        name=FLEET,
        sources=sources,
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        num_replicas=replicas,
        duplicate_window=120.0,
    )

    async def created() -> bool:
        # Right after start the cluster is still electing its JetStream meta leader.
        await js.add_stream(config)
        return True

    await wait_until_async(created, "the hub's JetStream cluster to accept the fleet stream", 60,
                           interval=0.5, ignore=(Exception,))  # fmt: skip
    await client.close()


def all_listening(running: Fleet) -> None:
    wait_until(lambda: all(s.process is not None and s.process.poll() is None for s in running.hub), "the hub")
