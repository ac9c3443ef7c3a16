"""The Sparkplug B host application as a source of a node: edge nodes' births, data and deaths stored."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from otseam.contract import plugin_options
from otseam.host.app import HostApp
from otseam.host.store import open_store
from otseam.sinks.mqtt_common import parse_mqtt_options
from otseam.sources.sparkplug_host.options import Options

if TYPE_CHECKING:
    from otseam.contract.models import SourceSpec
    from otseam.core.plugins import Emit, PluginContext


class SparkplugHostSource:
    def __init__(self, spec: SourceSpec, context: PluginContext) -> None:
        self.spec = spec
        self.context = context
        self.options = plugin_options.parse(
            Options, spec.options, f"source {spec.id}", ValueError, contract_path=context.contract_path
        )
        self.settings = parse_mqtt_options(
            self.options.mqtt_options(),
            default_client_id=f"seam-host-{self.options.host_id}",
            where=f"source {spec.id}",
            contract_path=context.contract_path,
        )
        if self.options.share_group and self.settings.version != 5:
            raise ValueError(f"source {spec.id}: share_group needs mqtt_version 5 (shared subscriptions)")
        self.app: HostApp | None = None

    def _database(self) -> tuple[str | None, str | None]:
        if self.options.dsn_env:
            dsn = os.environ.get(self.options.dsn_env, "")
            if not dsn:
                raise ValueError(f"source {self.spec.id}: the environment variable {self.options.dsn_env} is empty")
            return None, dsn
        if self.options.dsn_file:
            return None, Path(self.options.dsn_file).read_text(encoding="utf-8").strip()
        db = Path(self.options.db or f"{self.spec.id}.db")
        return str(db if db.is_absolute() else Path(self.context.data_dir) / db), None

    async def run(self, emit: Emit) -> None:
        db, dsn = self._database()
        store = await open_store(db, dsn)
        app = HostApp(
            self.settings,
            self.options.host_id,
            store,
            share_group=self.options.share_group,
            session_expiry=self.options.session_expiry,
            reorder_timeout=self.options.reorder_timeout,
        )
        self.app = app
        running = asyncio.ensure_future(app.run())
        try:
            await asyncio.shield(running)
        finally:
            # Stopped (or cancelled by the supervisor): the host says STATE offline and lets go of the
            # broker itself, within a bound, before the store closes.
            app.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(running, 10)
            with contextlib.suppress(Exception):
                await store.close()

    def health(self) -> dict[str, object]:
        if self.app is None:
            return {"online": False}
        return {"online": self.app.online.is_set(), **self.app.summary()}

    @property
    def healthy(self) -> bool:
        return self.app is not None and self.app.online.is_set()
