"""The PostgreSQL historian's tables, and turning a batch into COPY input.

Samples reach the server as one COPY (text format) into a session-local temporary table, then one
``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` moves them into the real table. COPY is the fastest
way into PostgreSQL, and the INSERT makes the whole batch idempotent on ``(source, offset)``: a batch
delivered twice, or overlapping one already stored, adds only the rows that are new. The COPY text is
built in one string (``str.translate`` escapes in C) rather than row by row through the driver.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

from psycopg import sql

from otseam.core.records import Batch, Event, Sample

#: Integers beyond this are not exact as double precision; they also go to value_text, exactly.
_EXACT_INT = 2**53

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NULL = "\\N"


class Tables:
    """The names of the tables, quoted safely once (the prefix and schema come from the contract)."""

    def __init__(self, schema: str | None, prefix: str) -> None:
        def name(base: str) -> sql.Composable:
            table = f"{prefix}{base}"
            return sql.Identifier(schema, table) if schema else sql.Identifier(table)

        self.samples = name("samples")
        self.events = name("events")
        self.samples_index = sql.Identifier(f"{prefix}samples_by_point_time")
        self.events_index = sql.Identifier(f"{prefix}events_by_time")
        self.samples_in = sql.Identifier(f"{prefix}samples_in")
        self.events_in = sql.Identifier(f"{prefix}events_in")
        self.schema = sql.Identifier(schema) if schema else None

    def create(self) -> list[sql.Composed]:
        statements = []
        if self.schema is not None:
            statements.append(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(self.schema))
        statements += [
            sql.SQL(
                """CREATE TABLE IF NOT EXISTS {} (
                    source text NOT NULL,
                    "offset" bigint NOT NULL,
                    point text NOT NULL,
                    ts timestamptz NOT NULL,
                    value double precision,
                    value_text text,
                    quality smallint NOT NULL,
                    gateway_ts timestamptz NOT NULL,
                    PRIMARY KEY (source, "offset"))"""
            ).format(self.samples),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (point, ts)").format(self.samples_index, self.samples),
            sql.SQL(
                """CREATE TABLE IF NOT EXISTS {} (
                    source text NOT NULL,
                    "offset" bigint NOT NULL,
                    ts timestamptz NOT NULL,
                    kind text NOT NULL,
                    origin text NOT NULL,
                    severity smallint NOT NULL,
                    message text NOT NULL,
                    data jsonb NOT NULL,
                    PRIMARY KEY (source, "offset"))"""
            ).format(self.events),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (ts)").format(self.events_index, self.events),
        ]
        return statements

    def create_staging(self) -> list[sql.Composed]:
        """Per-connection staging tables, emptied by every commit."""
        return [
            sql.SQL(
                """CREATE TEMP TABLE IF NOT EXISTS {} (
                    source text, "offset" bigint, point text, ts double precision, value double precision,
                    value_text text, quality smallint, gateway_ts double precision) ON COMMIT DELETE ROWS"""
            ).format(self.samples_in),
            sql.SQL(
                """CREATE TEMP TABLE IF NOT EXISTS {} (
                    source text, "offset" bigint, ts double precision, kind text, origin text,
                    severity smallint, message text, data text) ON COMMIT DELETE ROWS"""
            ).format(self.events_in),
        ]

    def copy_samples(self) -> sql.Composed:
        return sql.SQL("COPY {} FROM STDIN").format(self.samples_in)

    def copy_events(self) -> sql.Composed:
        return sql.SQL("COPY {} FROM STDIN").format(self.events_in)

    def move_samples(self) -> sql.Composed:
        return sql.SQL(
            """INSERT INTO {} (source, "offset", point, ts, value, value_text, quality, gateway_ts)
               SELECT source, "offset", point, to_timestamp(ts), value, value_text, quality, to_timestamp(gateway_ts)
               FROM {} ON CONFLICT (source, "offset") DO NOTHING"""
        ).format(self.samples, self.samples_in)

    def move_events(self) -> sql.Composed:
        return sql.SQL(
            """INSERT INTO {} (source, "offset", ts, kind, origin, severity, message, data)
               SELECT source, "offset", to_timestamp(ts), kind, origin, severity, message, data::jsonb
               FROM {} ON CONFLICT (source, "offset") DO NOTHING"""
        ).format(self.events, self.events_in)


#: Timestamps PostgreSQL can store comfortably (years 1 to 5138); anything else is a device's garbage.
_TS_RANGE = 1e11


def _text(value: str) -> str:
    """COPY text escaping. NUL and unpaired surrogates cannot be stored in PostgreSQL text at all: they are
    replaced (U+FFFD) here, because a batch the server refuses would be retried forever and stall the sink."""
    if not value.isascii():
        value = value.encode("utf-8", "replace").decode("utf-8")
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    return value.translate(_ESCAPES)


def _ts(value: float) -> str:
    """A timestamp for to_timestamp(); an impossible one (NaN, year 10000) becomes 0 rather than a refused batch."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "0"
    return repr(number) if -_TS_RANGE < number < _TS_RANGE else "0"


def _json(data: object) -> str:
    # ensure_ascii=False lets _text replace unpaired surrogates, which jsonb refuses as \\u escapes.
    try:
        text = json.dumps(data, default=str, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    except ValueError:
        # NaN or infinity somewhere: JSON (and jsonb) cannot hold them; keep the rest readable.
        plain = json.loads(json.dumps(data, default=str), parse_constant=str)
        text = json.dumps(plain, separators=(",", ":"), ensure_ascii=False)
    # jsonb refuses the NUL character even escaped.
    return _text(text.replace("\\u0000", "\\ufffd"))


def _float(value: float) -> str:
    if math.isfinite(value):
        return repr(value)
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _value_columns(value: object) -> tuple[str, str]:
    """(value, value_text) in COPY text form: numbers in value, text (and exact huge integers) in value_text."""
    if value is None:
        return _NULL, _NULL
    if isinstance(value, bool):
        return ("1" if value else "0"), _NULL
    if isinstance(value, int):
        if -_EXACT_INT <= value <= _EXACT_INT:
            return str(value), _NULL
        return _float(float(value)), str(value)
    if isinstance(value, float):
        return _float(value), _NULL
    return _NULL, _text(str(value))


def sample_lines(batch: Batch) -> Iterator[str]:
    source = _text(batch.source)
    for offset, record in zip(batch.offsets, batch.records, strict=True):
        if type(record) is not Sample:
            continue
        value, value_text = _value_columns(record.value)
        yield (
            f"{source}\t{offset}\t{_text(record.point)}\t{_ts(record.source_ts)}\t{value}\t{value_text}\t"
            f"{int(record.quality)}\t{_ts(record.gateway_ts)}\n"
        )


def event_lines(batch: Batch) -> Iterator[str]:
    source = _text(batch.source)
    for offset, record in zip(batch.offsets, batch.records, strict=True):
        if not isinstance(record, Event):
            continue
        yield (
            f"{source}\t{offset}\t{_ts(record.ts)}\t{_text(record.kind)}\t{_text(record.source)}\t"
            f"{int(record.severity)}\t{_text(record.message)}\t{_json(record.data)}\n"
        )
