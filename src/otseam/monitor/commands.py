"""`seam watch` (passive monitoring: alerts) and `seam inventory` (assets), registered by otseam.cli."""

from __future__ import annotations

import asyncio
import contextlib
import json
import mmap
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from otseam.core.records import Event, Severity
from otseam.monitor.allowlist import Policy, PolicyError
from otseam.monitor.analyzers.modbus.fastpath import analyse_pcap
from otseam.monitor.capture import (
    LINKTYPE_NAMES,
    CaptureError,
    CaptureStats,
    Frame,
    check_capture_file,
    read_capture,
)
from otseam.monitor.engine import Monitor, Observations
from otseam.monitor.inventory import Inventory
from otseam.monitor.rules import Alert

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


def _frames(path: Path, stats: CaptureStats) -> Iterator[Frame]:
    return read_capture(path, stats)


def _learn_baseline(
    path: Path, modbus_ports: frozenset[int], opcua_ports: frozenset[int]
) -> dict[tuple[str, str], set[int]]:
    """Client/server pairs and the function codes each used, from a capture taken when all was well."""
    monitor = Monitor(None, modbus_ports=modbus_ports, opcua_ports=opcua_ports)
    pairs: dict[tuple[str, str], set[int]] = {}
    stats = CaptureStats()
    for frame in _frames(path, stats):
        monitor.process(frame)
        for ends, msg in monitor.modbus_messages:
            if msg.is_request:
                pairs.setdefault((ends.client, ends.server), set()).add(msg.function)
        monitor.modbus_messages.clear()
        for ends, _ua in monitor.ua_messages:
            pairs.setdefault((ends.client, ends.server), set())
        monitor.ua_messages.clear()
    monitor.finish()
    return pairs


def build_policy(
    contract: Path | None,
    allow_master: list[str] | None,
    baseline: Path | None,
    modbus_ports: frozenset[int],
    opcua_ports: frozenset[int],
) -> Policy | None:
    if contract is None and not allow_master and baseline is None:
        return None
    policy = Policy()
    if contract is not None:
        from otseam.contract.loader import ContractError, load

        try:
            loaded = load(contract)
        except ContractError as exc:
            raise _fail(f"the contract cannot be used:\n{exc}") from None
        policy.add_contract(loaded.contract)
    if allow_master:
        policy.add_masters(allow_master)
    if baseline is not None:
        try:
            policy.add_baseline(_learn_baseline(baseline, modbus_ports, opcua_ports))
        except CaptureError as exc:
            raise _fail(f"baseline: {exc}") from None
    return policy


def _monitor(
    contract: Path | None,
    allow_master: list[str] | None,
    baseline: Path | None,
    modbus_port: list[int] | None,
    opcua_port: list[int] | None,
    keep_records: bool,
) -> Monitor:
    """The monitor both commands run: the ports to decode and the allow-list, from the command line."""
    modbus_ports = _ports(modbus_port, frozenset({502, 802}), "--modbus-port")
    opcua_ports = _ports(opcua_port, frozenset({4840}), "--opcua-port")
    try:
        policy = build_policy(contract, allow_master, baseline, modbus_ports, opcua_ports)
    except PolicyError as exc:
        raise _fail(str(exc)) from None
    return Monitor(policy, keep_records=keep_records, modbus_ports=modbus_ports, opcua_ports=opcua_ports)


def alert_event(alert: Alert) -> Event:
    data = alert.as_dict()
    return Event(alert.ts, "alert", alert.rule.id, alert.rule.severity, alert.message, data)


def change_event(change: Any) -> Event:
    return Event(change.ts, change.kind, f"monitor/{change.ip}", Severity.INFO, change.message, change.data)


class _Outputs:
    """Where observations go: stdout (jsonl or a table at the end) and the journal."""

    def __init__(self, fmt: str, transactions: bool, journal_path: Path | None) -> None:
        self.fmt = fmt
        self.transactions = transactions
        self.all_alerts: list[Alert] = []
        self.journal: Any = None
        self.events: list[Event] = []
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
        if self.journal is not None:
            self.events.extend(alert_event(a) for a in obs.alerts)
            self.events.extend(change_event(c) for c in obs.changes)
            if live or len(self.events) >= 1000:
                self.flush_journal()

    def flush_journal(self) -> None:
        if self.journal is not None and self.events:
            self.journal.append(self.events)
            self.events = []

    def close(self) -> None:
        self.flush_journal()
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


def _report_capture_problems(stats: CaptureStats, monitor: Monitor) -> None:
    for problem in stats.problems:
        Console(stderr=True, soft_wrap=True, highlight=False).print(f"[yellow]warning:[/yellow] {_safe(problem)}")
    if monitor.stats.internal_errors:
        _err(
            f"{monitor.stats.internal_errors} frames could not be analysed (a bug, please report): "
            + "; ".join(monitor.stats.errors[:3])
        )


def _run_file(monitor: Monitor, path: Path, outputs: _Outputs) -> CaptureStats:
    stats = CaptureStats()
    try:
        check_capture_file(path)
    except CaptureError as exc:
        raise _fail(str(exc)) from None
    if not monitor.keep_records and _run_fast(monitor, path, stats):
        monitor.finish()
        outputs.take(monitor.drain(), live=False)
        return stats
    try:
        for frame in _frames(path, stats):
            monitor.process(frame)
            if frame.number % 1024 == 0:
                outputs.take(monitor.drain(), live=False)
    except CaptureError as exc:
        raise _fail(str(exc)) from None
    monitor.finish()
    outputs.take(monitor.drain(), live=False)
    _check_link_types(monitor, path)
    return stats


def _check_link_types(monitor: Monitor, path: Path) -> None:
    """Frames of a link type Seam does not decode: an error if that is all the file holds (saying "no
    alerts" would claim an analysis that never happened), a warning if it is only part of it."""
    unknown = monitor.stats.unknown_link
    if not unknown:
        return
    count = sum(unknown.values())
    types = ", ".join(f"{linktype} ({frames} frames)" for linktype, frames in sorted(unknown.items()))
    known = ", ".join(f"{name} ({number})" for number, name in sorted(LINKTYPE_NAMES.items()))
    if count == monitor.stats.frames:
        raise _fail(
            f"{path}: nothing was decoded: link type {types} is not one Seam reads ({known}); "
            "capture on an Ethernet interface or convert the file"
        )
    Console(stderr=True, soft_wrap=True, highlight=False).print(
        f"[yellow]warning:[/yellow] {_safe(str(path))}: {count} of {monitor.stats.frames} frames have a link type "
        f"Seam does not read ({types}) and were not analysed"
    )


#: The fast path holds column arrays for the whole file (about 400 bytes per frame, some 4 to 5 bytes of
#: memory per byte of a polling capture); larger files take the per-frame path, whose memory does not
#: grow with the file.
FAST_PATH_MAX_BYTES = 256 * 1024 * 1024


def _run_fast(monitor: Monitor, path: Path, stats: CaptureStats) -> bool:
    """The bulk path for Ethernet pcap and pcapng files (alerts and inventory only); False if it does not apply."""
    try:
        if path.stat().st_size > FAST_PATH_MAX_BYTES:
            return False
        with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
            return analyse_pcap(monitor, view, stats, name=str(path))
    except (OSError, ValueError):
        return False  # empty or unreadable: the per-frame reader gives the user the precise reason


async def _run_live(monitor: Monitor, iface: str, outputs: _Outputs, duration: float | None, count: int | None) -> None:
    from otseam.monitor.live import LiveCapture

    live = LiveCapture(iface)
    Console(stderr=True, highlight=False).print(f"capturing on {_safe(iface)}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if duration is not None:
        loop.call_later(duration, stop.set)
    # Ctrl-C and SIGTERM (systemd) end the watch cleanly, with the last alerts and the summary, as
    # `seam run` and `seam diode` do; this also holds when the shell started it with SIGINT ignored.
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        async for frame in live.frames(stop):
            monitor.process(frame)
            outputs.take(monitor.drain(), live=True)
            if count is not None and frame.number >= count:
                break
    finally:
        live.close()
    monitor.finish()
    outputs.take(monitor.drain(), live=True)
    counters = live.counters
    message = f"kernel: {counters.received} TCP packets passed the capture filter, {counters.dropped} dropped"
    if counters.dropped:
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
        monitor = _monitor(contract, allow_master, baseline, modbus_port, opcua_port, keep_records=transactions)
        outputs = _Outputs(fmt, transactions, journal)
        try:
            if pcap is not None:
                stats = _run_file(monitor, pcap, outputs)
                _report_capture_problems(stats, monitor)
                source = str(pcap)
            else:
                assert iface is not None
                from otseam.monitor.live import LiveCaptureError

                with contextlib.suppress(KeyboardInterrupt):
                    try:
                        asyncio.run(_run_live(monitor, iface, outputs, duration, count))
                    except LiveCaptureError as exc:
                        raise _fail(str(exc)) from None
                source = f"interface {iface}"
        finally:
            outputs.close()
        if fmt == "table":
            _summary(outputs.console, outputs.all_alerts, monitor, source)

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
        monitor = _monitor(contract, None, None, modbus_port, opcua_port, keep_records=False)
        outputs = _Outputs("none", False, journal)
        try:
            stats = _run_file(monitor, pcap, outputs)
        finally:
            outputs.close()
        _report_capture_problems(stats, monitor)
        assets = sorted(monitor.inventory.assets.values(), key=lambda a: a.ip)
        if fmt == "json":
            sys.stdout.write(json.dumps({"assets": [a.as_dict() for a in assets]}, indent=2) + "\n")
        else:
            _inventory_table(Console(soft_wrap=True, highlight=False), monitor.inventory)
