"""`seam query`: what the local historian recorded for one point, raw or downsampled."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from otseam.sinks.historian.query import QueryError, Result, format_time, parse_bucket, parse_time, query


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


def _fail(message: str) -> typer.Exit:
    print(f"seam query: {message}", file=sys.stderr)
    return typer.Exit(2)


def _database_from_contract(
    contract_path: str, sink_id: str | None, node_id: str | None = None
) -> tuple[Path, list[str]]:
    """The historian database a contract's historian sink writes (on ``node_id``), and the point keys."""
    from otseam.contract.loader import ContractError, load
    from otseam.runtime.supervisor import StartupError, resolve_node

    try:
        loaded = load(contract_path)
    except ContractError as exc:
        raise _fail(f"the contract cannot be used:\n{exc}") from None
    contract = loaded.contract
    try:
        node = resolve_node(contract, node_id)
    except StartupError as exc:
        raise _fail(str(exc).replace("--node ID", "--node ID (the node whose historian to read)")) from None
    historians = [s for s in contract.placement(node).sinks if s.type == "historian"]
    if sink_id is not None:
        historians = [s for s in historians if s.id == sink_id]
    if not historians:
        which = f" with id {sink_id!r}" if sink_id else ""
        where = f" on node {node}" if contract.nodes else ""
        raise _fail(f"{contract_path} declares no historian sink{which}{where} (a sink with 'type: historian')")
    if len(historians) > 1:
        ids = ", ".join(s.id for s in historians)
        raise _fail(f"{contract_path} declares several historian sinks ({ids}): choose one with --sink")
    spec = historians[0]
    # The same rule as `seam run`: the node's data directory, relative to the contract.
    data_dir = Path(contract.data_dir(node))
    if not data_dir.is_absolute():
        data_dir = loaded.path.parent / data_dir
    option = spec.options.get("path")
    path = Path(option) if isinstance(option, str) and option else Path(f"{spec.id}.db")
    return (path if path.is_absolute() else data_dir / path), contract.point_keys()


def query_command(
    point: Annotated[str, typer.Argument(help="The point key, <device>/<point>, e.g. plc1/tank_level.")],
    start: Annotated[
        str, typer.Option("--from", help="Start (inclusive): ISO-8601 UTC, '-1h', 'now' or Unix seconds.")
    ] = "-1h",
    end: Annotated[str, typer.Option("--to", help="End (exclusive), same forms as --from.")] = "now",
    bucket: Annotated[
        str | None, typer.Option("--bucket", help="Downsample: min/max/avg/count per bucket, e.g. 1min, 15min, 1h.")
    ] = None,
    db: Annotated[str | None, typer.Option("--db", help="The historian database file.")] = None,
    contract: Annotated[
        str | None, typer.Option("--contract", help="Find the database from this contract's historian sink.")
    ] = None,
    sink: Annotated[
        str | None, typer.Option("--sink", help="Which historian sink, if the contract has several.")
    ] = None,
    node: Annotated[
        str | None, typer.Option("--node", help="Whose historian: a node of the contract (optional with one node).")
    ] = None,
    output: Annotated[OutputFormat, typer.Option("--format", help="table, or json for machines.")] = OutputFormat.TABLE,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many raw rows.")] = 10_000,
) -> None:
    """Show what the local historian recorded for POINT: raw rows, or min/max/avg per --bucket. Times in UTC."""
    if db and contract:
        raise _fail("give either --db or --contract, not both")
    known: list[str] | None = None
    if db:
        database = Path(db)
    elif contract:
        database, known = _database_from_contract(contract, sink, node)
    elif Path("seam.yaml").exists():
        database, known = _database_from_contract("seam.yaml", sink, node)
    else:
        raise _fail("say where the historian is: --db FILE, or --contract seam.yaml")
    try:
        begin = parse_time(start)
        finish = parse_time(end)
        seconds = parse_bucket(bucket) if bucket else None
        result = query(database, point, begin, finish, bucket=seconds, limit=limit, known_points=known)
    except QueryError as exc:
        raise _fail(str(exc)) from None
    if output == OutputFormat.JSON:
        print(json.dumps(_as_json(result), indent=1))
    else:
        _print_table(result)
    if result.truncated:
        print(
            f"seam query: {result.truncated} more rows in the range were not shown; narrow the range, raise "
            "--limit or use --bucket",
            file=sys.stderr,
        )


def _as_json(result: Result) -> dict[str, Any]:
    document: dict[str, Any] = {
        "point": result.point,
        "from": format_time(result.start),
        "to": format_time(result.end),
    }
    if result.bucket_seconds is None:
        document["rows"] = [
            {"time": format_time(r.ts), "ts": r.ts, "value": r.value, "quality": r.quality.label} for r in result.rows
        ]
        document["truncated"] = result.truncated
    else:
        document["bucket_seconds"] = result.bucket_seconds
        document["buckets"] = [
            {
                "time": format_time(b.start),
                "ts": b.start,
                "min": b.min,
                "max": b.max,
                "avg": b.avg,
                "count": b.count,
                "bad": b.bad,
            }
            for b in result.buckets
        ]
    return document


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _print_table(result: Result) -> None:
    if result.bucket_seconds is None:
        print(f"{'time (UTC)':<25} {'value':>16}  quality")
        for row in result.rows:
            # Raw values exactly as stored (shortest round-trip form), never rounded for display.
            value = "-" if row.value is None else str(row.value)
            print(f"{format_time(row.ts):<25} {value:>16}  {row.quality.label}")
        return
    print(f"{'bucket start (UTC)':<25} {'min':>12} {'max':>12} {'avg':>12} {'count':>7} {'bad':>5}")
    for b in result.buckets:
        print(
            f"{format_time(b.start):<25} {_number(b.min):>12} {_number(b.max):>12} {_number(b.avg):>12} "
            f"{b.count:>7} {b.bad:>5}"
        )


def register(app: typer.Typer) -> None:
    app.command("query")(query_command)
