"""``seam discover modbus``: find what answers at a Modbus/TCP address and draft a contract section.

Polite by construction: one connection, one request at a time, never faster than ``rate`` requests per
second, short reads only, and only read function codes (1-4, 43/14). It finds the unit ids that answer,
reads their device identification, and optionally probes which address ranges of each table answer.
The draft it writes is deliberately incomplete: names, types, zones and owners are for a person who
knows the plant to fill in, and every such place says TODO.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from otseam.drivers.modbus.config import Endpoint
from otseam.drivers.modbus.framing import (
    FrameError,
    ModbusException,
    device_id_request,
    parse_device_id,
    parse_read_response,
    read_request,
)
from otseam.drivers.modbus.transport import Link, LinkClosed, RequestTimeout, open_link
from otseam.protocols.modbus.tables import GATEWAY_EXCEPTIONS, TABLE_FUNCTION

#: Names of the device identification objects (Modbus application protocol, 6.21).
OBJECT_NAMES = {
    0: "vendor",
    1: "product code",
    2: "revision",
    3: "vendor url",
    4: "product name",
    5: "model name",
    6: "application name",
}
TABLES = ("hr", "ir", "co", "di")
#: A refused chunk is halved until it is this small; the edges of what answers are then found to the
#: address by binary search. An island of fewer addresses inside a refused chunk can be missed: the
#: price of a probe that costs a few requests per table rather than one per address.
FINEST = 32


@dataclass(slots=True)
class FoundUnit:
    unit: int
    identity: dict[str, str] = field(default_factory=dict)
    #: Per table, the [start, stop) address ranges that answered.
    ranges: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    #: Register values seen at discovery (first registers of each holding/input range), for the draft.
    samples: dict[str, list[int]] = field(default_factory=dict)


class Prober:
    """Sends requests at most ``rate`` per second on one link."""

    def __init__(self, link: Link, rate: float, answer_within: float) -> None:
        self.link = link
        self.spacing = 1.0 / rate
        self.answer_within = answer_within
        self.requests = 0
        self._next = 0.0

    async def ask(self, unit: int, pdu: bytes) -> bytes | None:
        """The response PDU, or None if the unit did not answer (timeout)."""
        delay = self._next - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        self._next = time.monotonic() + self.spacing
        self.requests += 1
        try:
            return await self.link.request(unit, pdu, self.answer_within)
        except RequestTimeout:
            return None

    async def read(self, unit: int, table: str, address: int, count: int) -> bytes | int | None:
        """Data bytes, an exception code, or None for no answer."""
        function = TABLE_FUNCTION[table]
        pdu = await self.ask(unit, read_request(function, address, count))
        if pdu is None:
            return None
        try:
            return parse_read_response(function, count, pdu)
        except ModbusException as exc:
            return exc.code
        except FrameError:
            return None


async def _responds(prober: Prober, unit: int) -> bool:
    """A unit exists if any table answers at address 0 with data or with an exception other than the
    gateway's "no such target" (0A/0B) or "device failure" (04, what some servers say for any unit)."""
    for table in TABLES:
        answer = await prober.read(unit, table, 0, 1)
        if isinstance(answer, bytes):
            return True
        if isinstance(answer, int) and answer not in GATEWAY_EXCEPTIONS and answer != 0x04:
            return True
    return False


async def _identify(prober: Prober, unit: int) -> dict[str, str]:
    identity: dict[str, str] = {}
    for read_code in (2, 1):
        object_id = 0
        for _ in range(8):  # "more follows" is bounded: a device cannot keep us here
            pdu = await prober.ask(unit, device_id_request(read_code, object_id))
            if pdu is None:
                return identity
            try:
                objects, more, next_id = parse_device_id(pdu)
            except (ModbusException, FrameError):
                break
            for key, value in objects.items():
                identity[OBJECT_NAMES.get(key, f"object {key}")] = value.decode("utf-8", errors="replace").strip()
            if not more or next_id <= object_id:
                return identity
            object_id = next_id
        if identity:
            return identity
    return identity


async def _probe_table(prober: Prober, unit: int, table: str, max_address: int) -> list[tuple[int, int]]:
    chunk = 2000 if table in ("co", "di") else 125
    answered: list[tuple[int, int]] = []
    if await prober.read(unit, table, 0, 1) == 0x01:
        return []  # illegal function: the device has no such table

    async def probe(start: int, count: int) -> None:
        answer = await prober.read(unit, table, start, count)
        if isinstance(answer, bytes):
            answered.append((start, start + count))
        elif answer is not None and count > FINEST:
            half = count // 2
            await probe(start, half)
            await probe(start + half, count - half)
        elif answer is not None and count > 1 and isinstance(await prober.read(unit, table, start, 1), bytes):
            answered.append((start, start + 1))  # a small table at the start of a chunk; edges found below

    for start in range(0, max_address, chunk):
        await probe(start, min(chunk, max_address - start))
    merged = _merge(answered)
    # Halving stops at FINEST addresses; find each edge to the address with a binary search.
    refined = []
    for start, stop in merged:
        refined.append(
            (start - await _extent(prober, unit, table, start, -1), stop + await _extent(prober, unit, table, stop, 1))
        )
    return _merge(refined)


async def _extent(prober: Prober, unit: int, table: str, edge: int, direction: int) -> int:
    """How many more addresses (fewer than FINEST) answer beyond ``edge`` in ``direction``."""
    low, high = 0, FINEST - 1
    while low < high:
        n = (low + high + 1) // 2
        first = edge if direction > 0 else edge - n
        if first < 0 or first + n > 65536:
            high = n - 1
            continue
        if isinstance(await prober.read(unit, table, first, n), bytes):
            low = n
        else:
            high = n - 1
    return low


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, stop in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(stop, merged[-1][1]))
        else:
            merged.append((start, stop))
    return merged


async def discover(
    endpoint: Endpoint,
    units: list[int],
    *,
    ranges: bool = False,
    rate: float = 20.0,
    answer_within: float = 0.5,
    max_address: int = 1000,
    progress: Callable[[str], None] = lambda _: None,
    progress_every: float = 5.0,
) -> list[FoundUnit]:
    """Everything found at ``endpoint``; raises OSError or TimeoutError if it cannot be reached.

    ``progress`` gets a line for each unit that answers and, at most every ``progress_every`` seconds,
    how far the scan is: a scan of 247 unit ids at a polite rate takes minutes, and silence for that
    long reads as a hang."""
    link = await open_link(endpoint, max(answer_within, 2.0), 1)
    prober = Prober(link, rate, answer_within)
    found: list[FoundUnit] = []
    started = last_report = time.monotonic()
    try:
        for index, unit in enumerate(units, 1):
            now = time.monotonic()
            if now - last_report >= progress_every:
                last_report = now
                done = index - 1
                left = (now - started) / done * (len(units) - done) if done else 0.0
                progress(
                    f"tried {done} of {len(units)} unit ids ({len(found)} answered, {prober.requests} requests, "
                    f"{now - started:.0f}s so far, about {left:.0f}s to go)"
                )
            if not await _responds(prober, unit):
                continue
            item = FoundUnit(unit, await _identify(prober, unit))
            progress(f"unit {unit} answers" + (f": {describe(item.identity)}" if item.identity else ""))
            if ranges:
                for table in TABLES:
                    spans = await _probe_table(prober, unit, table, max_address)
                    if spans:
                        item.ranges[table] = spans
                        progress(f"unit {unit} {table}: " + ", ".join(f"{a}-{b - 1}" for a, b in spans))
                    if spans and table in ("hr", "ir"):
                        start = spans[0][0]
                        count = min(8, spans[0][1] - start)
                        data = await prober.read(unit, table, start, count)
                        if isinstance(data, bytes):
                            item.samples[table] = [
                                int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)
                            ]
            found.append(item)
    except LinkClosed as exc:
        raise OSError(f"the connection was closed during discovery ({exc})") from None
    finally:
        link.close()
    return found


def describe(identity: dict[str, str]) -> str:
    return ", ".join(f"{k} {v!r}" for k, v in identity.items())


def _q(text: str) -> str:
    """A YAML scalar that can hold anything: JSON strings are valid YAML."""
    return json.dumps(text, ensure_ascii=False)


#: The request rate a draft suggests when discovery itself was faster: a guess, for the owner to confirm.
DRAFT_RATE = 10.0


def rate_text(rate: float) -> str:
    """Requests per second as the contract writes a rate: '10/s', or per minute below one a second."""
    return f"{rate:g}/s" if rate >= 1 else f"{rate * 60:g}/min"


def suggested_rate(probed: float) -> float:
    """What a draft proposes as ``max_request_rate``: never more than discovery itself sent, since
    that is the only rate the device has been seen to bear."""
    return min(DRAFT_RATE, probed)


def render_draft(endpoint: Endpoint, found: list[FoundUnit], command: str, probed_rate: float = DRAFT_RATE) -> str:
    """A ``devices:`` section for a person to complete; every guess is marked TODO."""
    lines = [
        f"# Draft written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "# Nothing here is known to be right: complete every TODO with the people who own the equipment,",
        "# then run `seam check`. Addresses are zero-based protocol addresses.",
        "devices:",
    ]
    if not found:
        lines.append("  []  # nothing answered")
    for item in found:
        vendor = item.identity.get("vendor", "")
        model = (
            item.identity.get("model name")
            or item.identity.get("product code")
            or item.identity.get("product name", "")
        )
        lines += [
            f"  - id: unit{item.unit}  # TODO: a name the plant uses for this device",
            "    driver: modbus",
            f"    endpoint: {endpoint.key}",
            f"    unit: {item.unit}",
            "    zone: TODO  # TODO: the zone (Purdue level) this device sits in",
            "    owner: TODO  # TODO: the OT person responsible for it",
        ]
        if vendor:
            lines.append(f"    vendor: {_q(vendor)}")
        if model:
            lines.append(f"    model: {_q(model)}")
        if item.identity:
            lines.append(f"    description: {_q(describe(item.identity))}")
        lines += [
            "    poll: 1s  # TODO: how fresh the values need to be",
            "    constraints:",
            f"      max_request_rate: {rate_text(suggested_rate(probed_rate))}  # TODO: discovery asked at "
            f"{rate_text(probed_rate)}; ask the owner what the device tolerates",
            "      timeout: 1s",
        ]
        if not item.ranges:
            lines.append("    points: []  # TODO: add points (run with --ranges to see which addresses answer)")
            continue
        lines.append("    points:")
        for table, spans in item.ranges.items():
            for start, stop in spans:
                lines.append(f"      # {table} {start}-{stop - 1} answers ({stop - start} addresses)")
            start = spans[0][0]
            if table in ("co", "di"):
                lines += [
                    f"      - id: {table}_{start}  # TODO: name",
                    f"        address: {table}:{start}",
                    "        type: bool",
                ]
                continue
            seen = item.samples.get(table, [])
            hint = f"  # value at discovery: {seen[0]}" if seen else ""
            lines += [
                f"      - id: {table}_{start}  # TODO: name, type (int16, float32, ...), byte_order, unit",
                f"        address: {table}:{start}{hint}",
                "        type: uint16  # TODO",
            ]
    return "\n".join(lines) + "\n"
