"""The IT end of a one-way conduit as a source: datagrams in, records into the node's journal."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from otseam.contract import plugin_options
from otseam.diode.config import DiodeSettings, load_key
from otseam.diode.metrics import ReceiverCollector
from otseam.diode.receiver import DiodeReceiver
from otseam.sources.diode_receive.options import Options, parse_listen

log = logging.getLogger("otseam.diode")

if TYPE_CHECKING:
    from otseam.contract.models import SourceSpec
    from otseam.core.plugins import Emit, PluginContext


class DiodeReceiveSource:
    def __init__(self, spec: SourceSpec, context: PluginContext) -> None:
        self.spec = spec
        self.context = context
        self.options = plugin_options.parse(
            Options, spec.options, f"source {spec.id}", ValueError, contract_path=context.contract_path
        )
        self.settings = DiodeSettings.from_options(self.options.settings_options())
        self.listen = parse_listen(self.options.listen)
        # Read now so that a missing or short key file is refused by `seam check` and at reload,
        # not discovered by a restart loop.
        self.key = load_key(self.options.key_file)
        self.receiver: DiodeReceiver | None = None

    def _state_path(self) -> Path:
        if self.options.state:
            path = Path(self.options.state)
            return path if path.is_absolute() else Path(self.context.data_dir) / path
        return Path(self.context.data_dir) / "diode" / f"{self.spec.id}.state.json"

    async def run(self, emit: Emit) -> None:
        journal = self.context.journal
        if journal is None:
            raise RuntimeError("diode_receive runs only inside a node with a journal")
        state_path = self._state_path()
        state_path.parent.mkdir(parents=True, exist_ok=True)
        receiver = DiodeReceiver(self.listen, self.key, self.settings, journal, state_path=state_path)
        await receiver.start()
        self.receiver = receiver
        log.info("diode receive: listening on %s:%d", *receiver.listen)
        collector = None
        if self.context.metrics is not None:
            collector = ReceiverCollector(receiver.stats)
            self.context.metrics.register(collector)
        try:
            await asyncio.Event().wait()  # runs until the supervisor cancels it
        finally:
            if collector is not None and self.context.metrics is not None:
                self.context.metrics.unregister(collector)
            await receiver.close()

    def health(self) -> dict[str, object]:
        """The link as /health shows it (the receiver's own report); down until a fresh beacon arrives."""
        if self.receiver is None:
            return {"status": "starting", "link_up": False}
        return self.receiver.health()

    @property
    def healthy(self) -> bool:
        return self.receiver is not None and self.receiver.health()["status"] == "ok"
