"""`seam diode send`, `seam diode receive` and `seam diode keygen`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from otseam.contract.loader import ContractError, LoadedContract, load
from otseam.contract.models import Contract, SinkSpec, SourceSpec
from otseam.diode.config import DiodeConfigError, DiodeSettings, load_key, write_new_key
from otseam.runtime import sdnotify
from otseam.runtime.http import HttpAddressError, check_exposure, read_token
from otseam.runtime.shortcut import shortcut_contract

diode_app = typer.Typer(
    name="diode",
    help="A one-way link: send the journal through a data diode (OT side), receive it (IT side).",
    no_args_is_help=True,
)

log = logging.getLogger("otseam.diode")


class _Fail(Exception):
    """A mistake the user can fix: printed as one line, exit status 2, never a traceback."""


def _fail(message: str) -> typer.Exit:
    typer.echo(f"seam diode: {message}", err=True)
    return typer.Exit(2)


def _address(text: str, what: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise _Fail(f"{what} {text!r}: write it as host:port, e.g. 127.0.0.1:7400")
    return host.strip("[]"), int(port)


#: How long the IT sinks may take to drain after SIGTERM (the receiver's own close takes about a second).
SINK_DRAIN = 3.0


# Options both commands take. The FEC layout must be the same on both sides (the fingerprint in the
# beacons catches a difference); offload need not be (the datagrams on the link are the same).
_K = Annotated[int | None, typer.Option(help="Most data fragments per FEC block (default 64).")]
_Overhead = Annotated[float | None, typer.Option(help="Parity as a fraction of k (default 0.125).")]
_MinParity = Annotated[int | None, typer.Option(help="Parity fragments for the smallest blocks (default 3).")]
_DatagramSize = Annotated[int | None, typer.Option(help="UDP payload bytes (default 1472).")]
_Offload = Annotated[
    bool | None,
    typer.Option(
        "--offload/--no-offload", help="Let the kernel segment/coalesce runs of datagrams (UDP GSO/GRO; default on)."
    ),
]


def _options(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


def _load_contract(path: str | None) -> Contract | None:
    if path is None:
        return None
    try:
        return load(path).contract
    except ContractError as exc:
        raise _Fail(f"the contract cannot be used:\n{exc}") from None
    except OSError as exc:
        raise _Fail(f"cannot read contract {path}: {exc.strerror}") from None


def _diode_sink(contract: Contract, sink_id: str | None) -> SinkSpec:
    candidates = [s for s in contract.sinks if s.type == "diode_send" and (sink_id is None or s.id == sink_id)]
    if len(candidates) != 1:
        which = f"named {sink_id!r} " if sink_id else ""
        raise _Fail(
            f"the contract has {len(candidates)} diode_send sink(s) {which}: name one with --sink"
            if candidates
            else f"the contract has no diode_send sink {which}(type: diode_send)"
        )
    return candidates[0]


def _on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


async def _until_stopped(stop: asyncio.Event, duration: float | None) -> None:
    _on_signals(stop)
    if duration is None:
        await stop.wait()
    else:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), duration)


@diode_app.command("send")
def send(
    journal: Annotated[str | None, typer.Option(help="The OT journal directory to read.")] = None,
    target: Annotated[str | None, typer.Option(help="host:port of the receiver, across the diode.")] = None,
    key_file: Annotated[str | None, typer.Option("--key-file", help="The pre-shared key file.")] = None,
    contract: Annotated[str | None, typer.Option(help="Take settings from this contract's diode_send sink.")] = None,
    sink: Annotated[str | None, typer.Option(help="Which diode_send sink of the contract.")] = None,
    cursor: Annotated[str, typer.Option(help="Name of this sender's journal cursor.")] = "diode_send",
    bind: Annotated[str | None, typer.Option(help="Source address to send from.")] = None,
    rate: Annotated[str | None, typer.Option(help="Wire rate, below the link's, e.g. 800Mbit/s.")] = None,
    k: _K = None,
    overhead: _Overhead = None,
    min_parity: _MinParity = None,
    datagram_size: _DatagramSize = None,
    offload: _Offload = None,
    snapshot_interval: Annotated[str | None, typer.Option(help="How often all current values are sent.")] = None,
    drain: Annotated[bool, typer.Option(help="Exit once everything in the journal has been sent.")] = False,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
) -> None:
    """OT side: send the journal's records through the diode (never reads from the network)."""
    from otseam.journal import Journal, JournalError
    from otseam.runtime.sinkrunner import RecordFilter, SinkStats, run_sink
    from otseam.sinks.diode_send import sink_from_options

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        loaded = _load_contract(contract)
        options: dict[str, Any] = {}
        record_filter = RecordFilter()
        if loaded is not None:
            spec = _diode_sink(loaded, sink)
            options.update(spec.options)
            record_filter = RecordFilter(spec.points, spec.events)
            journal = journal or loaded.journal.path
        options.update(
            _options(
                target=target,
                # Given here, it is relative to where the command runs, not to the contract.
                key_file=os.path.abspath(key_file) if key_file else None,
                bind=bind,
                rate=rate,
                k=k,
                overhead=overhead,
                min_parity=min_parity,
                datagram_size=datagram_size,
                offload=offload,
                snapshot_interval=snapshot_interval,
            )
        )
        if journal is None:
            raise _Fail("say which journal to send: --journal PATH (or --contract seam.yaml)")
        diode_sink = sink_from_options(options, name=cursor, contract_path=contract or "")
        opened = Journal.open(journal)
    except (_Fail, DiodeConfigError, JournalError) as exc:
        raise _fail(str(exc)) from None

    async def main() -> None:
        stop = asyncio.Event()
        if drain:
            stop.set()
        stats = SinkStats(cursor)
        runner = asyncio.create_task(
            run_sink(diode_sink, opened.reader(cursor), stats=stats, record_filter=record_filter, stop=stop)
        )
        waiter = asyncio.create_task(_until_stopped(stop, duration))
        ready = sdnotify.started("diode send")
        await asyncio.wait({runner, waiter}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        stop.set()
        await runner
        waiter.cancel()
        sent = diode_sink.sender.stats
        log.info(
            "diode send: %d records in %d blocks, %d datagrams, %d bytes",
            sent.records,
            sent.blocks,
            sent.datagrams,
            sent.bytes,
        )

    try:
        asyncio.run(main())
    except OSError as exc:
        raise _fail(f"cannot send to {options.get('target')}: {exc.strerror or exc}") from None
    finally:
        opened.close()


@diode_app.command("receive")
def receive(
    journal: Annotated[str, typer.Option(help="The IT journal directory to write (created if absent).")],
    listen: Annotated[str, typer.Option(help="host:port to receive on.")],
    key_file: Annotated[str, typer.Option("--key-file", help="The pre-shared key file.")],
    state: Annotated[str | None, typer.Option(help="Deduplication state file (default: beside the journal).")] = None,
    k: _K = None,
    overhead: _Overhead = None,
    min_parity: _MinParity = None,
    datagram_size: _DatagramSize = None,
    offload: _Offload = None,
    block_timeout: Annotated[str | None, typer.Option(help="How long an incomplete block may wait.")] = None,
    reorder_window: Annotated[
        str | None,
        typer.Option(help="How long an incomplete block may wait once all of it is known to have been sent."),
    ] = None,
    metrics: Annotated[
        str | None, typer.Option(help="Serve /metrics (Prometheus) and /health on host:port; IT side only.")
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option("--token-file", help="Bearer token for /metrics (else $SEAM_API_TOKEN); required off loopback."),
    ] = None,
    modbus_replica: Annotated[
        str | None, typer.Option(help="Also serve a read-only Modbus/TCP replica on host:port (needs --contract).")
    ] = None,
    replica_config: Annotated[
        str | None,
        typer.Option(help="YAML file with a modbus_replica: mapping (listen, units, remap, quality_policy)."),
    ] = None,
    contract: Annotated[str | None, typer.Option(help="The contract (for the replica's register map).")] = None,
    it_sink: Annotated[
        list[str] | None,
        typer.Option(
            "--sink", help="Also run this contract sink (historian, MQTT, ...) from the IT journal; repeatable."
        ),
    ] = None,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    stats_file: Annotated[
        str | None, typer.Option("--stats-file", help="Write the receiver's counters here as JSON on exit.")
    ] = None,
) -> None:
    """IT side: receive from the diode into an IT journal (never sends anything back)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    link = _options(
        k=k,
        overhead=overhead,
        min_parity=min_parity,
        datagram_size=datagram_size,
        offload=offload,
        block_timeout=block_timeout,
        reorder_window=reorder_window,
    )
    try:
        DiodeSettings.from_options(link)  # the flags' mistakes, said in the flags' words
        load_key(key_file)
        _address(listen, "--listen")
        metrics_address = _address(metrics, "--metrics") if metrics else None
        token = read_token(token_file)
        if metrics_address:
            check_exposure(metrics_address[0], token)
        replica_options = _replica_options(replica_config) if replica_config else {}
        modbus_replica = modbus_replica or replica_options.pop("listen", None)
        replica_options.pop("listen", None)
        if modbus_replica:
            _address(modbus_replica, "--modbus-replica")
        loaded = _load_contract(contract)
        if modbus_replica and loaded is None:
            raise _Fail("--modbus-replica needs --contract, for the register map")
        sink_specs = _it_sinks(loaded, it_sink or [])
    except (_Fail, DiodeConfigError, HttpAddressError) as exc:
        raise _fail(str(exc)) from None
    state_path = Path(state) if state else Path(journal).with_name(Path(journal).name + ".diode-state.json")
    source = SourceSpec(
        id="diode",
        type="diode_receive",
        options={
            "listen": listen,
            "key_file": str(Path(key_file).resolve()),
            "state": str(state_path.resolve()),
            **link,
        },
    )
    if modbus_replica:
        sink_specs.append(
            SinkSpec(id="modbus_replica", type="modbus_replica", options={"listen": modbus_replica, **replica_options})
        )
    node = shortcut_contract("diode receive", Path(journal), base=loaded, sources=[source], sinks=sink_specs)
    try:
        code = asyncio.run(_run_shortcut(node, metrics_address, token, duration, stats_file))
    except KeyboardInterrupt:
        code = 130
    raise typer.Exit(code)


async def _run_shortcut(
    node: LoadedContract,
    metrics_address: tuple[str, int] | None,
    token: str | None,
    duration: float | None,
    stats_file: str | None,
) -> int:
    """`seam diode receive` as a node of its own: the diode_receive source and the IT-side sinks under
    the runtime's supervisor, /health and /metrics served the same way as by `seam run`."""
    from otseam.runtime.shortcut import run_shortcut

    # SIGTERM stops the receiver within seconds in every state; IT sinks resume from their cursors.
    supervisor = await run_shortcut(
        "diode receive", node, drain_timeout=SINK_DRAIN, http=metrics_address, token=token, duration=duration
    )
    if supervisor is None:
        return 2
    component = supervisor.components.get("source:diode")
    receiver = getattr(component.plugin, "receiver", None) if component is not None else None
    if receiver is not None:
        s = receiver.stats
        if stats_file:
            await asyncio.to_thread(Path(stats_file).write_text, json.dumps(s.as_dict(), indent=1))
        log.info(
            "diode receive: %d datagrams, %d records written, %d blocks recovered, %d lost, %d rejected",
            s.datagrams,
            s.records,
            s.recovered,
            s.lost,
            sum(s.rejected.values()),
        )
    return 0


def _it_sinks(contract: Contract | None, names: list[str]) -> list[SinkSpec]:
    if names and contract is None:
        raise _Fail("--sink needs --contract, where the sink is declared")
    specs = []
    for name in names:
        spec = next((s for s in contract.sinks if s.id == name), None) if contract else None
        if spec is None:
            raise _Fail(f"the contract declares no sink {name!r}")
        if spec.type == "diode_send":
            raise _Fail(f"sink {name!r} is a diode sender; it belongs on the OT side")
        specs.append(spec)
    return specs


def _replica_options(path: str) -> dict[str, Any]:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        document = YAML(typ="safe").load(Path(path).read_text())
    except OSError as exc:
        raise _Fail(f"cannot read {path}: {exc.strerror}") from None
    except YAMLError as exc:
        raise _Fail(f"{path} is not valid YAML: {exc}") from None
    section = document.get("modbus_replica") if isinstance(document, dict) else None
    if not isinstance(section, dict):
        raise _Fail(f"{path} has no 'modbus_replica:' mapping (see src/otseam/replica/modbus/sample.yaml)")
    unknown = set(section) - {"listen", "units", "remap", "quality_policy"}
    if unknown:
        raise _Fail(f"{path}: unknown modbus_replica option(s) {', '.join(sorted(unknown))}")
    return dict(section)


def _when(text: str | None, what: str) -> float | None:
    """Seconds since the epoch, from a number or an ISO 8601 time (UTC unless it says otherwise)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _Fail(f"{what} {text!r}: write a time as 2026-12-07T01:30:00Z or as seconds since the epoch") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@diode_app.command("replay")
def replay(
    contract: Annotated[str, typer.Option(help="The contract of the OT node that runs the diode_send sink.")],
    sink: Annotated[str | None, typer.Option(help="Which diode_send sink of the contract.")] = None,
    from_offset: Annotated[int | None, typer.Option("--from-offset", help="First journal offset to re-send.")] = None,
    to_offset: Annotated[int | None, typer.Option("--to-offset", help="Last journal offset to re-send.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Re-send records from this source time (ISO 8601 or epoch s).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="... up to this source time, inclusive.")] = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the running sink to answer.")] = 60.0,
) -> None:
    """OT side: re-send a range of the journal through the running diode sink (inside `seam run`).

    The IT side cannot ask (nothing crosses back): take the range from the gap it reports (the
    diode.gap event or its /health: journal offsets and source times). It stores only what it lacks.
    """
    from otseam.sinks.diode_send.replay import DONE_SUFFIX, REQUEST_SUFFIX, ReplayError, ReplayRequest, replay_dir

    try:
        loaded = _load_contract(contract)
        assert loaded is not None
        spec = _diode_sink(loaded, sink)
        request = ReplayRequest(from_offset, to_offset, _when(since, "--since"), _when(until, "--until"))
    except (_Fail, ReplayError) as exc:
        raise _fail(str(exc)) from None
    data_dir = Path(loaded.data_dir(loaded.node_of(spec)))
    if not data_dir.is_absolute():
        data_dir = Path(contract).resolve().parent / data_dir
    directory = replay_dir(data_dir, spec.id)
    if not directory.is_dir():
        raise _fail(
            f"{directory} does not exist: the diode_send sink {spec.id!r} has not run on this node "
            "(start `seam run` first; it serves replay requests while it runs)"
        )
    name = f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}"
    request_path = directory / (name + REQUEST_SUFFIX)
    done_path = directory / (name + DONE_SUFFIX)
    tmp = directory / f".{name}.tmp"
    tmp.write_text(request.to_json())
    os.replace(tmp, request_path)
    deadline = time.monotonic() + wait
    while not done_path.exists():
        if time.monotonic() > deadline:
            request_path.unlink(missing_ok=True)
            raise _fail(
                f"no running diode_send sink {spec.id!r} answered within {wait:g} s (is `seam run` running on "
                "this node?); the request was withdrawn"
            )
        time.sleep(0.1)
    result = json.loads(done_path.read_text())
    done_path.unlink(missing_ok=True)
    if "error" in result:
        raise _fail(f"the diode sink refused the replay: {result['error']}")
    typer.echo(
        f"re-sent {result['records']} record(s), journal offsets {result['first_offset']}..{result['last_offset']}, "
        f"through diode sink {spec.id!r}; the IT side stores those it lacks"
        if result["records"]
        else "nothing in that range to re-send"
    )


@diode_app.command("keygen")
def keygen(path: Annotated[str, typer.Argument(help="Where to write the new key (never overwritten).")]) -> None:
    """Write a new random pre-shared key (copy the same file to both sides, by hand)."""
    try:
        write_new_key(path)
    except FileExistsError:
        raise _fail(f"{path} exists; a key is never overwritten (remove it first if you mean to)") from None
    except OSError as exc:
        raise _fail(f"cannot write {path}: {exc.strerror}") from None
    typer.echo(f"wrote a new 256-bit key to {path} (mode 0600)")


def register(app: typer.Typer) -> None:
    app.add_typer(diode_app, name="diode")


if __name__ == "__main__":  # python -m otseam.commands.diode (used by the namespace tests)
    diode_app(sys.argv[1:])
