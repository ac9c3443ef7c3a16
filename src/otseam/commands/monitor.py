"""`seam watch` (passive monitoring: alerts) and `seam inventory` (assets), registered by otseam.cli."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from otseam.core.records import Record
from otseam.monitor.allowlist import PolicyError
from otseam.monitor.capture import (
    CaptureError,
    CaptureStats,
)
from otseam.monitor.engine import Monitor, Observations
from otseam.monitor.inventory import Inventory
from otseam.monitor.rules import Alert

if TYPE_CHECKING:
    from otseam.sources.capture.source import CaptureSource, Observer

EXIT_OK = 0
EXIT_UNUSABLE = 2


def _err(message: str) -> None:
    Console(stderr=True, soft_wrap=True, highlight=False).print(f"[red]error:[/red] {_safe(message)}")


def _fail(message: str) -> typer.Exit:
    _err(message)
    return typer.Exit(EXIT_UNUSABLE)


def ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 4, 5, 6, 15, 16] → "1-6,15-16": what a function-code or unit-id list reads as."""
    parts: list[str] = []
    ordered = sorted(set(numbers))
    start = 0
    for index in range(1, len(ordered) + 1):
        if index == len(ordered) or ordered[index] != ordered[index - 1] + 1:
            first, last = ordered[start], ordered[index - 1]
            parts.append(str(first) if first == last else f"{first}-{last}")
            start = index
    return ",".join(parts)


def _ports(values: list[int] | None, default: frozenset[int], flag: str) -> frozenset[int]:
    if not values:
        return default
    for port in values:
        if not 1 <= port <= 65535:
            raise _fail(f"{flag} {port} is not a TCP port (1 to 65535)")
    return frozenset(values)


def _source(
    pcap: Path | None,
    iface: str | None,
    contract: Path | None,
    allow_master: list[str] | None,
    baseline: Path | None,
    modbus_port: list[int] | None,
    opcua_port: list[int] | None,
    keep_records: bool,
    observer: Observer | None,
) -> CaptureSource:
    """The capture source both commands run, built from the flags: the plugin ``seam run`` runs."""
    from otseam.sources.capture.options import Options
    from otseam.sources.capture.source import CaptureSource, build_policy

    modbus_ports = _ports(modbus_port, frozenset({502, 802}), "--modbus-port")
    opcua_ports = _ports(opcua_port, frozenset({4840}), "--opcua-port")
    loaded = None
    if contract is not None:
        from otseam.contract.loader import ContractError, load

        try:
            loaded = load(contract).contract
        except ContractError as exc:
            raise _fail(f"the contract cannot be used:\n{exc}") from None
    try:
        policy = build_policy(loaded, allow_master or [], baseline, modbus_ports, opcua_ports)
    except PolicyError as exc:
        raise _fail(str(exc)) from None
    except CaptureError as exc:
        raise _fail(f"baseline: {exc}") from None
    options = Options.model_construct(
        interface=iface,
        file=str(pcap) if pcap is not None else None,
        modbus_ports=sorted(modbus_ports),
        opcua_ports=sorted(opcua_ports),
        allow_masters=[],
        allow_from_contract=contract is not None,
        baseline=str(baseline) if baseline is not None else None,
        receive_buffer=None,
    )
    return CaptureSource("watch", options, policy, file=pcap, keep_records=keep_records, observer=observer)


class _Outputs:
    """Where observations go: stdout (jsonl or a table at the end) and the journal."""

    def __init__(self, fmt: str, transactions: bool, journal_path: Path | None) -> None:
        self.fmt = fmt
        self.transactions = transactions
        self.all_alerts: list[Alert] = []
        self.journal: Any = None
        self.console = Console(soft_wrap=True, highlight=False)
        if journal_path is not None:
            from otseam.journal import Journal, JournalError

            try:
                self.journal = Journal.open(journal_path)
            except JournalError as exc:
                raise _fail(f"journal: {exc}") from None

    def take(self, obs: Observations, live: bool) -> None:
        out = sys.stdout
        if self.fmt == "jsonl":
            lines: list[str] = []
            if self.transactions:
                lines.extend(json.dumps(t.as_dict(), separators=(",", ":")) for t in obs.transactions)
                for ends, msg in obs.ua_messages:
                    record = {
                        "type": "opcua",
                        "ts": round(msg.ts, 6),
                        "src": ends.client,
                        "sport": ends.cport,
                        "dst": ends.server,
                        "dport": ends.sport,
                        **msg.as_dict(),
                    }
                    lines.append(json.dumps(record, separators=(",", ":")))
            lines.extend(json.dumps({"type": "alert", **a.as_dict()}, separators=(",", ":")) for a in obs.alerts)
            if lines:
                out.write("\n".join(lines) + "\n")
                if live:
                    out.flush()
        elif live:
            for alert in obs.alerts:
                self.console.print(_alert_line(alert))
        self.all_alerts.extend(obs.alerts)

    async def emit(self, records: Sequence[Record]) -> None:
        """Where the source's events go: the journal named with --journal, if any."""
        if self.journal is not None and records:
            self.journal.append(records)

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()


def _safe(text: object) -> str:
    """Text from the wire made safe for a terminal: no control characters, no rich markup."""
    raw = str(text)
    if not raw.isprintable():
        raw = "".join(c if c.isprintable() or c == "\n" else f"\\x{ord(c):02x}" for c in raw)
    return escape(raw)


def _alert_line(alert: Alert) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(alert.ts))
    return _safe(
        f"{when} frame {alert.frame} {alert.rule.id} {alert.rule.severity.label} {alert.rule.attack or '-'} "
        f"{alert.src} -> {alert.dst}:{alert.dport} {alert.message}"
    )


def _summary(console: Console, alerts: list[Alert], monitor: Monitor, source: str) -> None:
    stats = monitor.stats
    console.print(
        f"{_safe(source)}: {stats.frames} frames, {stats.modbus_messages} Modbus messages, "
        f"{stats.transactions} transactions, {stats.opcua_messages} OPC UA chunks, {stats.flows} connections"
    )
    if not alerts:
        console.print("No alerts.")
        return
    table = Table(title=f"{len(alerts)} alerts ({monitor.detector.folded} repeats folded)")
    table.add_column("frame", no_wrap=True, justify="right")
    table.add_column("rule", no_wrap=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("flow", overflow="fold", max_width=24)
    table.add_column("what", overflow="fold", min_width=30)
    for a in alerts:
        unit = "" if a.unit is None else f" unit {a.unit}"
        table.add_row(
            str(a.frame),
            f"{a.rule.id}\n{a.rule.attack or ''}",
            a.rule.severity.label,
            f"{a.src}\n-> {a.dst}:{a.dport}{unit}",
            _safe(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(a.ts))} {a.message}")
            + (f" (+{a.folded} more)" if a.folded else ""),
        )
    console.print(table)


def _report_capture_problems(stats: CaptureStats, monitor: Monitor, warnings: Sequence[str] = ()) -> None:
    for problem in [*stats.problems, *warnings]:
        Console(stderr=True, soft_wrap=True, highlight=False).print(f"[yellow]warning:[/yellow] {_safe(problem)}")
    if monitor.stats.internal_errors:
        _err(
            f"{monitor.stats.internal_errors} frames could not be analysed (a bug, please report): "
            + "; ".join(monitor.stats.errors[:3])
        )


def _run_file(source: CaptureSource, outputs: _Outputs) -> None:
    try:
        asyncio.run(source.capture(outputs.emit))
    except CaptureError as exc:
        raise _fail(str(exc)) from None
    _report_capture_problems(source.capture_stats, source.monitor, source.warnings)


async def _run_live(source: CaptureSource, outputs: _Outputs, duration: float | None, count: int | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if duration is not None:
        loop.call_later(duration, stop.set)
    # Ctrl-C and SIGTERM (systemd) end the watch cleanly, with the last alerts and the summary, as
    # `seam run` and `seam diode` do; this also holds when the shell started it with SIGINT ignored.
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    source.max_frames = count
    source.on_start = lambda: Console(stderr=True, highlight=False).print(
        f"capturing on {_safe(source.options.interface)}"
    )
    await source.capture(outputs.emit, stop)
    received, dropped = source.kernel_counters()
    message = f"kernel: {received} TCP packets passed the capture filter, {dropped} dropped"
    if dropped:
        message = f"[yellow]warning:[/yellow] {message} (the socket buffer was full: the analysis missed them)"
    Console(stderr=True, highlight=False).print(message)


def _inventory_table(console: Console, inventory: Inventory) -> None:
    table = Table(title=f"{len(inventory.assets)} assets")
    table.add_column("host", no_wrap=True)
    table.add_column("role", no_wrap=True)
    table.add_column("serves", overflow="fold", max_width=26)
    table.add_column("identity", overflow="fold", min_width=20)
    table.add_column("seen (UTC)", no_wrap=True)
    for asset in sorted(inventory.assets.values(), key=lambda a: a.ip):
        d = asset.as_dict()
        serves = " ".join(f"{p}/{'+'.join(d['protocols'])}" for p in d["ports"])
        if d["unit_ids"]:
            serves += f" units {ranges(d['unit_ids'])}"
        if d["function_codes"]:
            serves += f" fc {ranges(d['function_codes'])}"
        identity = " ".join(x for x in (d["vendor"], d["product"], d["revision"]) if x)
        if inventory.declared is not None:
            identity += f" [{d['declared_as'] or 'undeclared'}]"
        table.add_row(
            d["ip"],
            d["role"],
            serves.strip(),
            _safe(identity.strip()),
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(d['first_seen']))}\n{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(d['last_seen']))}",
        )
    console.print(table)


PcapOpt = Annotated[Path | None, typer.Option("--pcap", help="Read a pcap or pcapng capture file.")]
IfaceOpt = Annotated[
    str | None, typer.Option("--iface", help="Capture live on this interface (AF_PACKET; needs root).")
]
ContractOpt = Annotated[Path | None, typer.Option("--contract", help="Allow-list from the contract's devices.")]
MasterOpt = Annotated[list[str] | None, typer.Option("--allow-master", help="An allowed master address (repeatable).")]
BaselineOpt = Annotated[
    Path | None, typer.Option("--baseline", help="Learn allowed pairs and functions from a capture.")
]
ModbusPortOpt = Annotated[
    list[int] | None, typer.Option("--modbus-port", help="Modbus/TCP server port (default 502, 802).")
]
UaPortOpt = Annotated[list[int] | None, typer.Option("--opcua-port", help="OPC UA server port (default 4840).")]


def register(app: typer.Typer) -> None:
    @app.command()
    def watch(
        pcap: PcapOpt = None,
        iface: IfaceOpt = None,
        contract: ContractOpt = None,
        allow_master: MasterOpt = None,
        baseline: BaselineOpt = None,
        fmt: Annotated[str, typer.Option("--format", help="table (default) or jsonl.")] = "table",
        transactions: Annotated[
            bool, typer.Option("--transactions", help="With jsonl: also print transactions.")
        ] = False,
        journal: Annotated[
            Path | None, typer.Option("--journal", help="Append alerts and inventory changes to this journal.")
        ] = None,
        modbus_port: ModbusPortOpt = None,
        opcua_port: UaPortOpt = None,
        duration: Annotated[
            float | None, typer.Option("--duration", help="Live: stop after this many seconds.")
        ] = None,
        count: Annotated[int | None, typer.Option("--count", help="Live: stop after this many frames.")] = None,
    ) -> None:
        """Passive OT monitoring: decode Modbus/TCP and OPC UA from a capture or a span port, raise alerts."""
        if (pcap is None) == (iface is None):
            raise _fail("give exactly one of --pcap FILE or --iface INTERFACE")
        if fmt not in ("table", "jsonl"):
            raise _fail(f"--format {fmt!r}: use table or jsonl")
        outputs = _Outputs(fmt, transactions, journal)
        try:
            source = _source(
                pcap, iface, contract, allow_master, baseline, modbus_port, opcua_port, transactions, outputs.take
            )
            if pcap is not None:
                _run_file(source, outputs)
                name = str(pcap)
            else:
                from otseam.monitor.live import LiveCaptureError

                with contextlib.suppress(KeyboardInterrupt):
                    try:
                        asyncio.run(_run_live(source, outputs, duration, count))
                    except LiveCaptureError as exc:
                        raise _fail(str(exc)) from None
                name = f"interface {iface}"
        finally:
            outputs.close()
        if fmt == "table":
            _summary(outputs.console, outputs.all_alerts, source.monitor, name)

    @app.command()
    def inventory(
        pcap: Annotated[Path, typer.Option("--pcap", help="Read a pcap or pcapng capture file.")],
        contract: ContractOpt = None,
        fmt: Annotated[str, typer.Option("--format", help="table (default) or json.")] = "table",
        journal: Annotated[
            Path | None, typer.Option("--journal", help="Append inventory changes to this journal.")
        ] = None,
        modbus_port: ModbusPortOpt = None,
        opcua_port: UaPortOpt = None,
    ) -> None:
        """The assets a capture shows: role, unit ids, function codes, vendor/product/revision, first/last seen."""
        if fmt not in ("table", "json"):
            raise _fail(f"--format {fmt!r}: use table or json")
        outputs = _Outputs("none", False, journal)
        try:
            source = _source(pcap, None, contract, None, None, modbus_port, opcua_port, False, outputs.take)
            _run_file(source, outputs)
        finally:
            outputs.close()
        monitor = source.monitor
        assets = sorted(monitor.inventory.assets.values(), key=lambda a: a.ip)
        if fmt == "json":
            sys.stdout.write(json.dumps({"assets": [a.as_dict() for a in assets]}, indent=2) + "\n")
        else:
            _inventory_table(Console(soft_wrap=True, highlight=False), monitor.inventory)
