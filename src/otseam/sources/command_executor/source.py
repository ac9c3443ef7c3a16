"""The OT end of the command conduit as a source: connects out, fetches approved requests, verifies
them against this node's contract and keyring, writes through the drivers, reports back. Its audit
records go into the node's journal (and so across the diode) as ``audit.*`` events."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from otseam.control.authority.executor import Executor
from otseam.control.authority.link import Fetcher, conduit_problem
from otseam.control.authority.pki import client_context
from otseam.core.plugins import beside_contract
from otseam.sources.command_executor.options import Options, parse_address

if TYPE_CHECKING:
    from otseam.contract.models import SourceSpec
    from otseam.core.plugins import Emit, PluginContext


class CommandExecutorSource:
    def __init__(self, spec: SourceSpec, context: PluginContext) -> None:
        self.spec = spec
        self.context = context
        # Files named in the options are found beside the contract, as `seam check` finds them.
        base = str(Path(context.contract_path).parent) if context.contract_path else ""
        self.options = Options.model_validate(spec.options, context={"base": base})
        self.host, self.port = parse_address(self.options.connect)
        if spec.conduit is None:
            raise ValueError(f"source {spec.id}: 'conduit' must name the declared two-way command conduit")
        problem = conduit_problem(context.contract, spec.conduit, self.port)
        if problem:
            raise ValueError(f"source {spec.id}: {problem}")
        try:
            self.tz = ZoneInfo(self.options.timezone) if self.options.timezone else None
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"source {spec.id}: unknown time zone {self.options.timezone!r}") from None
        files = (self.options.cert, self.options.key, self.options.ca)
        cert, key, ca = (beside_contract(f, context.contract_path) for f in files)
        try:
            self.ssl = client_context(cert, key, ca)
        except (OSError, ssl.SSLError) as exc:  # a wrong file is the settings' fault, said as such
            raise ValueError(f"source {spec.id}: cannot use cert, key and ca: {exc.strerror or exc}") from None
        self.fetcher: Fetcher | None = None

    async def run(self, emit: Emit) -> None:
        executor = Executor(
            self.context.contract_path,
            self.context.data_dir,
            node=self.context.node,
            clock=self.context.clock,
            tz=self.tz,
            journal=self.context.journal,
        )
        assert self.spec.conduit is not None
        self.fetcher = Fetcher(
            executor,
            self.spec.conduit,
            self.host,
            self.port,
            self.ssl,
            interval=self.options.interval,
        )
        if self.options.server_name:
            self.fetcher.server_name = self.options.server_name
        await self.fetcher.run()

    def health(self) -> dict[str, object]:
        fetcher = self.fetcher
        return {
            "connect": self.options.connect,
            "last_error": fetcher.last_error if fetcher is not None else "not started",
        }

    @property
    def healthy(self) -> bool:
        return self.fetcher is not None and not self.fetcher.last_error
