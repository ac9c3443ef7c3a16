"""`seam host`: run the Sparkplug host application until interrupted."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from otseam.host.store import open_store
from otseam.sinks.mqtt_common import MqttConfigError, parse_mqtt_options

if TYPE_CHECKING:
    from otseam.runtime.supervisor import Supervisor


def run_host(
    *,
    brokers: list[str],
    host_id: str,
    db: str | None,
    dsn: str | None,
    share_group: str | None,
    mqtt_version: str,
    tls_ca: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    username: str | None,
    password_env: str | None,
    session_expiry: int = 0,
    reorder_timeout: float = 2.0,
) -> int:
    """Returns the process exit code; every mistake a user can make ends in one clear line."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    options: dict[str, object] = {"brokers": brokers, "mqtt_version": mqtt_version}
    if tls_ca or tls_cert or tls_key:
        tls: dict[str, str] = {}
        for key, value in (("ca", tls_ca), ("cert", tls_cert), ("key", tls_key)):
            if value:
                tls[key] = value
        options["tls"] = tls
    if username:
        options["username"] = username
    if password_env:
        options["password_env"] = password_env
    if not host_id or any(c in host_id for c in "/+#"):
        print(f"seam host: --host-id {host_id!r} must be non-empty without '/', '+' or '#'", file=sys.stderr)
        return 2
    try:
        settings = parse_mqtt_options(options, default_client_id=f"seam-host-{host_id}")
        if share_group and settings.version != 5:
            raise MqttConfigError("--share-group needs MQTT 5 (shared subscriptions); drop --mqtt-version 3.1.1")
        if share_group is not None and (not share_group or any(c in share_group for c in "/+#")):
            raise MqttConfigError(f"--share-group {share_group!r} must be non-empty without '/', '+' or '#'")
        if not 0 <= session_expiry <= 2**32 - 1:
            raise MqttConfigError("--session-expiry is a number of seconds from 0 (a clean session) to 4294967295")
        if not 0 <= reorder_timeout <= 60:
            raise MqttConfigError("--reorder-timeout is a number of seconds from 0 (ask at once) to 60")
    except MqttConfigError as exc:
        print(f"seam host: {exc}", file=sys.stderr)
        return 2
    # The database's path is fixed here, before the event loop: the node's data lives beside it.
    database = Path(db).resolve() if db is not None else None
    try:
        timing = {"session_expiry": session_expiry, "reorder_timeout": reorder_timeout}
        return asyncio.run(_main(options, host_id, database, dsn, share_group, timing))
    except KeyboardInterrupt:
        return 0


#: Where `seam host --dsn` puts the connection string for its source: in this process's environment,
#: never in a file or on another command line.
DSN_ENV = "SEAM_HOST_DSN"


async def _main(
    options: dict[str, object],
    host_id: str,
    database: Path | None,
    dsn: str | None,
    share_group: str | None,
    timing: dict[str, float],
) -> int:
    """The host application as the ``sparkplug_host`` source of a one-node contract, run by the runtime
    (supervised, restarted with backoff, drained on stop) like any source of a node."""
    from otseam.contract.models import SourceSpec
    from otseam.runtime.shortcut import run_shortcut, shortcut_contract

    try:  # a wrong path or an unreachable database is said at once, not retried for ever
        store = await open_store(str(database) if database is not None else None, dsn)
        await store.close()
    except Exception as exc:
        print(f"seam host: cannot open the historian: {exc}", file=sys.stderr)
        return 2
    source_options: dict[str, object] = {**options, "host_id": host_id, **timing}
    if share_group is not None:
        source_options["share_group"] = share_group
    if dsn is not None:
        os.environ[DSN_ENV] = dsn
        source_options["dsn_env"] = DSN_ENV
        journal = Path(f"seam-host-{host_id}") / "journal"
    else:
        assert database is not None  # open_store refused anything but exactly one of the two
        source_options["db"] = str(database)
        # The node's own events (the host's connection, its restarts) go into a journal beside the database.
        journal = database.with_name(database.stem + ".journal")
    node = shortcut_contract(
        "host", journal, sources=[SourceSpec(id="host", type="sparkplug_host", options=source_options)]
    )

    async def announce(supervisor: Supervisor) -> None:
        component = supervisor.components["source:host"]
        # The supervisor creates the source in a task of its own; this polls once, at start, for the
        # first connection to a broker (the host's own `online` event exists only once it runs).
        while not (component.plugin is not None and getattr(component.plugin, "healthy", False)):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        print(f"seam host {host_id}: online", flush=True)

    supervisor = await run_shortcut("host", node, started=announce)
    if supervisor is None:
        return 2
    plugin = supervisor.components["source:host"].plugin
    app = getattr(plugin, "app", None)
    print(f"seam host {host_id}: stopped {json.dumps(app.summary() if app is not None else {})}", flush=True)
    return 0
