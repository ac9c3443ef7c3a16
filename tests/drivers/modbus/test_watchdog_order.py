"""The watchdog against a poll cycle still under way: a reading reaches the journal once, in order.

A poll cycle keeps what it read until its last block has answered, then hands it all on at once. The
watchdog marks a silent device's points STALE meanwhile. If it re-stated a block the cycle had already
read but not handed on, the journal got STALE(t) before GOOD(t): the point then looked fresh while
the device was silent, and marking it stale at stop wrote the same STALE(t) a second time (seen once
in the two-node test at load 15: five pump-station samples twice under two journal offsets).

Real parts: a Modbus/TCP server that holds answers back on request, the driver, the pipeline and the
journal, joined as ``seam run`` joins them. No fixed sleeps: each step waits for what it needs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import struct
from collections.abc import Callable, Sequence
from pathlib import Path

from otseam.core.records import Quality, Record, Sample
from otseam.drivers.modbus.driver import ModbusDriver
from otseam.journal import Journal
from otseam.pipeline import Pipeline
from otseam.pipeline.table import compile_point
from tests.drivers.modbus.helpers import device
from tests.drivers.modbus.hostile import frame, hostile, read_of, registers_pdu
from tests.support.wait import wait_until_async

SPEED = 1234


def answer(tid: int, unit: int, pdu: bytes) -> bytes:
    """Coil 0 is on, every holding register holds SPEED."""
    function, _, count = read_of(pdu)
    if function == 1:
        return frame(tid, unit, bytes((1, 1, 1)))
    return frame(tid, unit, registers_pdu(function, [SPEED] * count))


async def test_a_silence_mid_cycle_neither_repeats_a_reading_nor_hides_the_device(tmp_path: Path) -> None:
    held: list[bytes] = []
    hold = {"mode": ""}  # "": answer everything; "hr": hold the next holding-register read; "all": hold all

    def respond(tid: int, unit: int, pdu: bytes) -> bytes | None:
        if hold["mode"] == "all" or (hold["mode"] == "hr" and pdu[0] == 3):
            if hold["mode"] == "hr":
                hold["mode"] = ""  # that one read only
            held.append(struct.pack(">HB", tid, unit) + pdu)
            return None
        return answer(tid, unit, pdu)

    journal = Journal.open(tmp_path / "journal")
    appended: list[Record] = []
    async with hostile(respond) as server:
        # Two blocks per cycle, coils first; a timeout far beyond the test, so only the watchdog speaks.
        dev = device(
            f"tcp://127.0.0.1:{server.port}",
            [
                {"id": "running", "address": "co:0", "type": "bool"},
                {"id": "speed", "address": "hr:0", "type": "uint16"},
            ],
            poll="100ms",
            constraints={"timeout": "60s"},
        )
        pipeline = Pipeline({dev.key(p): compile_point(dev, p) for p in dev.points})

        async def emit(records: Sequence[Record]) -> None:
            # As `seam run` hands a driver's readings on: through the pipeline into the journal.
            out = pipeline.process(records)
            if out:
                journal.append(out)
                appended.extend(out)

        def seen(key: str) -> list[Sample]:
            return [r for r in appended if isinstance(r, Sample) and r.point == key]

        def last_quality(key: str) -> Quality | None:
            samples = seen(key)
            return samples[-1].quality if samples else None

        async def until(condition: Callable[[], object], what: str) -> None:
            await wait_until_async(condition, what, detail=lambda: f"appended: {appended[-8:]}")

        task = asyncio.create_task(ModbusDriver(dev, str(tmp_path)).run(emit))
        try:
            await until(lambda: last_quality("plc1/running") is last_quality("plc1/speed") is Quality.GOOD, "a cycle")
            # This cycle reads the coils, then the device falls silent on the holding registers.
            hold["mode"] = "hr"
            await until(lambda: held, "the holding-register read held back")
            await until(lambda: last_quality("plc1/speed") is Quality.STALE, "the watchdog calling the device silent")
            # The late answer ends the cycle; from then on the device answers nothing at all.
            hold["mode"] = "all"
            tid, unit = struct.unpack(">HB", held[0][:3])
            server.send(answer(tid, unit, held[0][3:]))
            # Only the watchdog marks speed stale here (no read times out): a second time needs the late answer.
            await until(
                lambda: (
                    [s.quality for s in seen("plc1/speed")].count(Quality.STALE) == 2
                    and last_quality("plc1/speed") is Quality.STALE
                ),
                "the late answer, then the watchdog calling the device silent again",
            )
            # The device is silent: every one of its points must say so, now, while the driver runs.
            shown = {key: last_quality(key) for key in ("plc1/running", "plc1/speed")}
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # As `seam run` stops a driver: its points are marked stale where they are not already.
        journal.append(pipeline.mark_stale(dev.id))

    reader = journal.reader("check")
    batch = await reader.next_batch(max_records=100_000, max_wait=0)
    journal.close()
    samples = [r for r in batch.records if isinstance(r, Sample)]
    twice = [
        k for k, n in collections.Counter((s.point, s.source_ts, s.value, s.quality) for s in samples).items() if n > 1
    ]
    assert twice == [], f"the same reading journalled twice: {twice}"
    # A STALE sample re-states a value already reported: never one the journal has not had as fresh yet.
    reported: set[tuple[str, float]] = set()
    for s in samples:
        if s.quality is Quality.GOOD:
            reported.add((s.point, s.source_ts))
        elif s.quality is Quality.STALE:
            assert (s.point, s.source_ts) in reported, f"{s} is stale before it was reported as read"
    assert shown == {"plc1/running": Quality.STALE, "plc1/speed": Quality.STALE}
    # Nothing read was lost: the coils read in the cycle the device fell silent are in the journal.
    assert sum(1 for s in samples if s.point == "plc1/running" and s.quality is Quality.GOOD) >= 2
