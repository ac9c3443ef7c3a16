"""`seam fleet ingest`: run the fleet_ingest source on its own until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import tempfile
from collections.abc import Sequence

from otseam.core.extras import MissingExtra
from otseam.core.records import Record


def run_ingest(options: dict[str, object]) -> int:
    """Returns the exit code: 0 after a clean stop, 2 for options that cannot work (one line on stderr)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    from otseam.contract.models import Contract, Site, SourceSpec
    from otseam.core.plugins import PluginContext, create_source

    context = PluginContext(
        contract=Contract(site=Site(enterprise="fleet", site="ingest")), data_dir=tempfile.gettempdir()
    )
    try:
        source = create_source(SourceSpec(id="fleet-ingest", type="fleet_ingest", options=options), context)
    except (ValueError, MissingExtra) as exc:
        print(f"seam fleet ingest: {exc}", file=sys.stderr)
        return 2
    from otseam.sources.fleet_ingest.source import FleetIngestSource

    assert isinstance(source, FleetIngestSource)

    async def emit(records: Sequence[Record]) -> None:
        for record in records:
            logging.getLogger("otseam.fleet").error("%s", record)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, source.stop)
        print("seam fleet ingest: running", flush=True)
        await source.run(emit)

    asyncio.run(main())
    return 0
