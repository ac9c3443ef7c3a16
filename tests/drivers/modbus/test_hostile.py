"""Hostile and broken devices: the driver never crashes, reports the right quality and says why."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otseam.core.records import Quality
from otseam.drivers.modbus.config import parse_endpoint
from otseam.drivers.modbus.framing import FrameError, ModbusException, parse_read_response, read_request
from otseam.drivers.modbus.transport import LinkClosed, RequestTimeout, open_link
from tests.drivers.modbus.helpers import Collector, device, running
from tests.drivers.modbus.hostile import CLOSE, answer_registers, frame, hostile, registers_pdu

POINT = [{"id": "v", "address": "hr:0", "type": "uint16"}]


def fast(port: int) -> dict[str, object]:
    return {"poll": "100ms", "constraints": {"timeout": "300ms"}, "options": {"max_backoff": 0.3}}


class Switch:
    """A responder that misbehaves while ``bad`` is set and answers correctly otherwise."""

    def __init__(self, bad_reply, good_value: int = 7) -> None:  # type: ignore[no-untyped-def]
        self.bad = True
        self.bad_reply = bad_reply
        self.good = answer_registers(lambda a: good_value)

    def __call__(self, tid: int, unit: int, pdu: bytes) -> bytes | None:
        if self.bad:
            reply: bytes | None = self.bad_reply(tid, unit, pdu)
            return reply
        return self.good(tid, unit, pdu)


BROKEN = {
    # The byte count says 4 data bytes, two are sent.
    "short byte count": lambda tid, unit, pdu: frame(tid, unit, bytes((3, 4, 0, 1))),
    # A correct-looking answer to a different transaction: must never be taken for ours.
    "wrong transaction id": lambda tid, unit, pdu: frame((tid + 1000) & 0xFFFF, unit, registers_pdu(3, [999])),
    # An answer from another unit.
    "wrong unit": lambda tid, unit, pdu: frame(tid, unit + 1, registers_pdu(3, [999])),
    # An MBAP length the protocol does not allow: the stream cannot be trusted, reconnect.
    "impossible length": lambda tid, unit, pdu: bytes.fromhex("0001 0000 ffff 01 03"),
    # Half a frame, then hang up.
    "disconnect mid-frame": lambda tid, unit, pdu: frame(tid, unit, registers_pdu(3, [1]))[:8],
    "stall": lambda tid, unit, pdu: None,
    "hang up": lambda tid, unit, pdu: CLOSE,
    "answer to another function": lambda tid, unit, pdu: frame(tid, unit, registers_pdu(4, [999])),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
async def test_broken_answers_give_bad_quality_then_recover(name: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "otseam.drivers.modbus")
    switch = Switch(BROKEN[name])
    collector = Collector()
    async with hostile(switch) as server:
        dev = device(f"tcp://127.0.0.1:{server.port}", POINT, **fast(server.port))
        async with running(dev, collector):
            await collector.wait_for(
                lambda: collector.quality("plc1/v") is Quality.BAD_COMM, what=f"BAD_COMM after {name}"
            )
            assert all(s.value != 999 for s in collector.samples)
            switch.bad = False
            await collector.wait_for(lambda: collector.quality("plc1/v") is Quality.GOOD, what="recovery")
    assert collector.latest("plc1/v").value == 7  # type: ignore[union-attr]
    assert all(s.value in (None, 7) for s in collector.samples)
    # One clear line says what went wrong; none of it is a traceback.
    messages = [r.getMessage() for r in caplog.records if r.name == "otseam.drivers.modbus"]
    assert any("plc1" in m or "127.0.0.1" in m for m in messages)
    assert not any(r.exc_info for r in caplog.records)


@pytest.mark.parametrize(
    ("code", "quality"),
    [(1, Quality.BAD_CONFIG), (4, Quality.BAD_DEVICE), (6, Quality.BAD_DEVICE), (11, Quality.BAD_COMM)],
)
async def test_exception_responses_map_to_a_quality(
    code: int, quality: Quality, caplog: pytest.LogCaptureFixture
) -> None:
    collector = Collector()
    exception = hostile(lambda tid, unit, pdu: frame(tid, unit, bytes((pdu[0] | 0x80, code))))
    async with (
        exception as server,
        running(device(f"tcp://127.0.0.1:{server.port}", POINT, **fast(server.port)), collector),
    ):
        await collector.wait_for(lambda: collector.quality("plc1/v") is quality)
    assert any(f"exception {code:02d}" in r.getMessage() for r in caplog.records)


async def test_a_stalled_device_is_stale_before_its_timeout_expires() -> None:
    """Timeout 30 s, poll 100 ms: staleness must not wait for the timeout."""
    stalled = False

    def respond(tid: int, unit: int, pdu: bytes) -> bytes | None:
        return None if stalled else answer_registers(lambda a: 5)(tid, unit, pdu)

    collector = Collector()
    async with hostile(respond) as server:
        dev = device(f"tcp://127.0.0.1:{server.port}", POINT, poll="100ms", constraints={"timeout": "30s"})
        async with running(dev, collector):
            await collector.wait_for(lambda: collector.quality("plc1/v") is Quality.GOOD)
            good = collector.latest("plc1/v")
            stalled = True
            await collector.wait_for(lambda: collector.quality("plc1/v") is Quality.STALE, within=5)
            stale = collector.latest("plc1/v")
            requests = server.requests
    assert stale is not None and good is not None
    assert stale.value == 5 and stale.source_ts == good.source_ts
    # Still waiting on the one unanswered read: nothing was re-sent while it stalls.
    assert requests == server.requests


async def test_a_dead_unit_behind_a_gateway_does_not_starve_the_others() -> None:
    """Unit 2 never answers; one request at a time on the shared connection; unit 1 keeps its pace."""
    alive = answer_registers(lambda a: 1)

    def gateway(tid: int, unit: int, pdu: bytes) -> bytes | None:
        return alive(tid, unit, pdu) if unit == 1 else None

    collector = Collector()
    async with hostile(gateway) as server:
        endpoint = f"tcp://127.0.0.1:{server.port}"
        live = device(endpoint, POINT, id="live", unit=1, poll="100ms", constraints={"timeout": "300ms"})
        dead = device(endpoint, POINT, id="dead", unit=2, poll="100ms", constraints={"timeout": "300ms"})
        async with running(live, collector), running(dead, collector):
            await collector.wait_for(lambda: collector.states("dead") == ["offline"], within=10)
            before = sum(1 for s in collector.samples if s.point == "live/v" and s.quality is Quality.GOOD)
            # Without backoff the dead unit would hold the line 300 ms of every 400 ms: 12 reads in 5 s.
            await collector.wait_for(
                lambda: (
                    sum(1 for s in collector.samples if s.point == "live/v" and s.quality is Quality.GOOD)
                    >= before + 20
                ),
                within=5,
                what="the live unit keeps being polled",
            )
    assert server.connections == 1
    assert collector.quality("dead/v") is Quality.BAD_COMM


# --- Fuzzing: random bytes in answer to a real read, at the link and in the parsers ----------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reply=st.binary(max_size=300), keep_open=st.booleans())
def test_random_bytes_never_escape_as_anything_but_a_clear_error(reply: bytes, keep_open: bool) -> None:
    async def scenario() -> None:
        sent = False

        def respond(tid: int, unit: int, pdu: bytes) -> bytes | None:
            nonlocal sent
            if sent:
                return None
            sent = True
            return reply if keep_open else reply + CLOSE

        async with hostile(respond) as server:
            link = await open_link(parse_endpoint(f"tcp://127.0.0.1:{server.port}"), 1.0, 1)
            try:
                pdu = await link.request(1, read_request(3, 0, 2), 0.05)
                data = parse_read_response(3, 2, pdu)
                assert len(data) == 4
            except (FrameError, ModbusException, LinkClosed, RequestTimeout):
                pass
            finally:
                link.close()

    asyncio.run(scenario())


@given(pdu=st.binary(max_size=260), function=st.sampled_from([1, 2, 3, 4]), count=st.integers(1, 125))
def test_response_parser_accepts_only_exact_answers(pdu: bytes, function: int, count: int) -> None:
    try:
        data = parse_read_response(function, count, pdu)
    except (FrameError, ModbusException):
        return
    assert pdu[0] == function and len(data) == pdu[1] == len(pdu) - 2


async def test_driver_survives_a_server_that_sends_random_garbage() -> None:
    """A device that answers every read with random bytes: the task lives, nothing is reported GOOD."""
    import random

    rng = random.Random(7)

    def respond(tid: int, unit: int, pdu: bytes) -> bytes | None:
        choice = rng.random()
        if choice < 0.3:
            return frame(tid, unit, rng.randbytes(rng.randint(0, 8)))
        if choice < 0.5:
            return CLOSE
        return rng.randbytes(rng.randint(1, 40))

    collector = Collector()
    async with hostile(respond) as server:
        dev = device(
            f"tcp://127.0.0.1:{server.port}",
            POINT,
            poll="50ms",
            constraints={"timeout": "100ms"},
            options={"max_backoff": 0.15},
        )
        async with running(dev, collector):
            await collector.wait_for(lambda: server.requests >= 25, what="25 requests of garbage")
    assert collector.samples and all(s.quality is not Quality.GOOD for s in collector.samples)


async def test_an_error_in_emit_does_not_end_the_task(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    """If whatever takes the samples fails (our own bug, a full disk), polling goes on."""
    collector = Collector()
    failures = 0

    async def flaky(records):  # type: ignore[no-untyped-def]
        nonlocal failures
        if failures < 2:
            failures += 1
            raise RuntimeError("journal refused the write")
        await collector(records)

    from otseam.core.plugins import PluginContext
    from otseam.drivers.modbus import create

    async with hostile(answer_registers(lambda a: 3)) as server:
        dev = device(f"tcp://127.0.0.1:{server.port}", POINT, poll="50ms")
        task = asyncio.create_task(create(dev, PluginContext(contract=None, data_dir=str(tmp_path))).run(flaky))  # type: ignore[arg-type]
        try:
            await collector.wait_for(lambda: collector.quality("plc1/v") is Quality.GOOD)
            assert not task.done()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert failures == 2
    assert any("polling continues" in r.getMessage() for r in caplog.records)


async def test_only_read_functions_ever_reach_the_device() -> None:
    """No write path: even points marked writable are only ever read."""
    functions: set[int] = set()
    answer = answer_registers(lambda a: 1)

    def respond(tid: int, unit: int, pdu: bytes) -> bytes:
        functions.add(pdu[0])
        if pdu[0] in (1, 2):
            return frame(tid, unit, bytes((pdu[0], 1, 1)))
        return answer(tid, unit, pdu)

    points = [
        {"id": "h", "address": "hr:0", "type": "uint16", "writable": True},
        {"id": "i", "address": "ir:0", "type": "uint16"},
        {"id": "c", "address": "co:0", "type": "bool", "writable": True},
        {"id": "d", "address": "di:0", "type": "bool"},
    ]
    collector = Collector()
    async with (
        hostile(respond) as server,
        running(device(f"tcp://127.0.0.1:{server.port}", points, poll="50ms"), collector),
    ):
        await collector.wait_for(lambda: len(collector.samples) >= 20)
    assert functions == {1, 2, 3, 4}
