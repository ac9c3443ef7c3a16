"""The DMZ end of the command conduit as a source: it emits nothing itself (its audit records reach
the journal through the authority's audit log) and serves approved requests until cancelled."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from otseam.contract.models import Direction
from otseam.control.authority.link import Outbox
from otseam.control.authority.pki import server_context
from otseam.control.authority.service import AuthorityService
from otseam.core.plugins import beside_contract
from otseam.sources.command_outbox.options import Options, parse_address

if TYPE_CHECKING:
    from otseam.contract.models import SourceSpec
    from otseam.core.plugins import Emit, PluginContext


class CommandOutboxSource:
    def __init__(self, spec: SourceSpec, context: PluginContext) -> None:
        self.spec = spec
        self.context = context
        # Files named in the options are found beside the contract, as `seam check` finds them.
        base = str(Path(context.contract_path).parent) if context.contract_path else ""
        self.options = Options.model_validate(spec.options, context={"base": base})
        conduit = context.contract.conduit(spec.conduit)
        if conduit is None or conduit.direction is not Direction.TWO_WAY:
            raise ValueError(f"source {spec.id}: 'conduit' must name the declared two-way command conduit")
        self.host, self.port = parse_address(self.options.listen)
        if conduit.ports and self.port not in conduit.ports:
            raise ValueError(f"source {spec.id}: port {self.port} is not a port of conduit '{conduit.id}'")
        files = (self.options.cert, self.options.key, self.options.ca)
        self.cert, self.key, self.ca = (beside_contract(f, context.contract_path) for f in files)
        # Load now: a missing certificate is refused by `seam check`, not found by a restart loop.
        try:
            self.context_ssl = server_context(self.cert, self.key, self.ca)
        except (OSError, ssl.SSLError) as exc:  # a wrong file is the settings' fault, said as such
            raise ValueError(f"source {spec.id}: cannot use cert, key and ca: {exc.strerror or exc}") from None
        self.outbox: Outbox | None = None

    async def run(self, emit: Emit) -> None:
        service = AuthorityService(
            self.context.contract_path,
            self.context.data_dir,
            node=self.context.node,
            clock=self.context.clock,
            journal=self.context.journal,
        )
        outbox = Outbox(service, self.context_ssl, self.host, self.port, set(self.options.allowed_peers))
        await outbox.start()
        self.outbox = outbox
        try:
            await asyncio.Event().wait()
        finally:
            await outbox.close()

    def health(self) -> dict[str, object]:
        return {"listening": self.outbox is not None, "listen": self.options.listen}

    @property
    def healthy(self) -> bool:
        return self.outbox is not None
