"""`seam host`: run the Sparkplug host application until interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys

from otseam.host.app import HostApp
from otseam.host.store import open_store
from otseam.runtime import sdnotify
from otseam.sinks.mqtt_common import MqttConfigError, MqttSettings, parse_mqtt_options


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
    except MqttConfigError as exc:
        print(f"seam host: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_main(settings, host_id, db, dsn, share_group, session_expiry))
    except KeyboardInterrupt:
        return 0


async def _main(
    settings: MqttSettings, host_id: str, db: str | None, dsn: str | None, share_group: str | None, session_expiry: int
) -> int:
    try:
        store = await open_store(db, dsn)
    except Exception as exc:  # a wrong path or an unreachable database: say which, no traceback
        print(f"seam host: cannot open the historian: {exc}", file=sys.stderr)
        return 2
    app = HostApp(settings, host_id, store, share_group=share_group, session_expiry=session_expiry)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, app.stop)

    async def announce() -> None:
        await app.online.wait()
        print(f"seam host {host_id}: online", flush=True)
        await sdnotify.started(f"seam host {host_id}")  # systemd: ready, and the watchdog fed until cancelled

    announcer = asyncio.create_task(announce())
    try:
        await app.run()
    finally:
        announcer.cancel()
        await store.close()
        print(f"seam host {host_id}: stopped {json.dumps(app.summary())}", flush=True)
    return 0
