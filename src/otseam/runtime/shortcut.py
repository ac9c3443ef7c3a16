"""Shortcut commands (``seam diode receive``, ``seam host``, ``seam watch``) run the same plugins under
the same runtime as ``seam run``: they build a one-node contract in memory from their flags.

There is one wiring, not two: a shortcut gets supervision, restart with backoff, draining on stop,
/health and /metrics exactly as a node of a contract does. The contract a shortcut builds places the
devices of a contract it was given (for point metadata: a replica's register map, a historian's
point names) on a node of their own, so that nothing is ever polled from the shortcut's node.
"""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from otseam.contract.loader import LoadedContract, SourceMap
from otseam.contract.models import Contract, Journal, Node, SinkSpec, Site, SourceSpec
from otseam.runtime import sdnotify
from otseam.runtime.supervisor import Supervisor

#: The node a shortcut runs, and the one the given contract's devices are parked on (never run).
SHORTCUT_NODE = "shortcut"
PARKED_NODE = "elsewhere"


def shortcut_contract(
    name: str,
    journal: Path,
    *,
    base: Contract | None = None,
    sources: list[SourceSpec] | None = None,
    sinks: list[SinkSpec] | None = None,
) -> LoadedContract:
    """A contract whose node ``shortcut`` runs ``sources`` and ``sinks`` on the journal at ``journal``,
    keeping its data beside it (the journal's parent directory)."""
    journal = journal.resolve()
    site = base.site if base is not None else Site(enterprise="seam", site=name.replace(" ", "-"))
    devices = [d.model_copy(update={"node": PARKED_NODE}) for d in base.devices] if base is not None else []
    contract = Contract(
        site=site,
        people=base.people if base is not None else [],
        zones=base.zones if base is not None else [],
        nodes=[
            Node(id=SHORTCUT_NODE, zone="shortcut", data_dir=str(journal.parent)),
            Node(id=PARKED_NODE, zone="shortcut", description="where the given contract's devices are polled"),
        ],
        devices=devices,
        sources=[s.model_copy(update={"node": SHORTCUT_NODE}) for s in sources or []],
        sinks=[s.model_copy(update={"node": SHORTCUT_NODE}) for s in sinks or []],
        journal=Journal(path=str(journal)),
    )
    label = f"<seam {name}>"
    return LoadedContract(contract, SourceMap(label), Path(label), None)


async def run_shortcut(
    name: str,
    node: LoadedContract,
    *,
    drain_timeout: float = 30.0,
    http: tuple[str, int] | None = None,
    token: str | None = None,
    duration: float | None = None,
    started: Callable[[Supervisor], Coroutine[Any, Any, None]] | None = None,
) -> Supervisor | None:
    """Run ``node`` under the runtime until SIGTERM/SIGINT (or ``duration``), as ``seam run`` would run
    a node: supervised, drained on stop, /health and /metrics on ``http`` when given. ``started`` is
    awaited once everything runs (a shortcut's own announcement). Returns the stopped supervisor, or
    None when the node could not start (the reason was printed)."""
    from prometheus_client import CollectorRegistry

    from otseam.runtime.http import HttpServer
    from otseam.runtime.metrics import build_registry
    from otseam.runtime.supervisor import Settings, StartupError

    registry = CollectorRegistry(auto_describe=False)
    settings = Settings(watch=False, drain_timeout=drain_timeout)
    supervisor = Supervisor(node.path, settings, node=SHORTCUT_NODE, registry=registry, fixed=node)
    server = None
    try:
        supervisor.install_signal_handlers()
        try:
            await supervisor.start()
        except StartupError as exc:
            print(f"seam {name}: {exc}", file=sys.stderr)
            return None
        if http is not None:
            server = HttpServer(supervisor.health, build_registry(supervisor, registry), *http, token)
            bound = await server.start()
            print(f"seam {name}: /health and /metrics on http://{http[0]}:{bound}/", file=sys.stderr)
        # Everything built so far lives as long as the process: out of the collector's full passes.
        gc.freeze()
        if duration is not None:
            asyncio.get_running_loop().call_later(duration, supervisor.request_stop)
        announce = asyncio.create_task(started(supervisor)) if started is not None else None
        ready = sdnotify.started(name)  # systemd: started, and its watchdog fed from here on
        try:
            await supervisor.run()
        finally:
            ready.cancel()
            if announce is not None:
                announce.cancel()
    finally:
        if server is not None:
            await server.stop()
    return supervisor
