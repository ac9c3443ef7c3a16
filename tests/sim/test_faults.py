"""Fault knobs of the Modbus/TCP server, seen on the wire, and hostile input that must not hurt it."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otseam.sim.modbus_server import Faults
from otseam.sim.plant import SimPlant
from tests.sim.conftest import RawClient, mbap

READ = bytes.fromhex("04 0000 0002")


async def answered(raw: RawClient, wait: float) -> bool:
    try:
        await raw.frame(wait)
    except TimeoutError:
        return False
    return True


async def test_stall_reads_but_never_answers(plant: SimPlant) -> None:
    raw = await RawClient.connect(plant.modbus_port)
    try:
        plant.modbus.faults.stall = True
        await raw.send(mbap(1, 1, READ))
        assert not await answered(raw, 0.3)
        plant.modbus.faults.clear()
        await raw.send(mbap(2, 1, READ))
        assert (await raw.frame())[0] == 2  # the stalled request 1 is never answered
    finally:
        await raw.close()


async def test_delay_holds_the_answer_back(plant: SimPlant) -> None:
    raw = await RawClient.connect(plant.modbus_port)
    try:
        plant.modbus.faults.delay = 1.0
        await raw.send(mbap(1, 1, READ))
        assert not await answered(raw, 0.2)
        assert await answered(raw, 10.0)
    finally:
        await raw.close()


async def test_drop_closes_the_connection(plant: SimPlant) -> None:
    plant.modbus.faults.drop = True
    raw = await RawClient.connect(plant.modbus_port)
    await raw.send(mbap(1, 1, READ))
    assert await raw.closed_by_server()
    await raw.close()


async def test_drop_connections_now(plant: SimPlant) -> None:
    clients = [await RawClient.connect(plant.modbus_port) for _ in range(3)]
    for raw in clients:  # make sure the server has accepted them all
        await raw.send(mbap(1, 1, READ))
        await raw.frame()
    plant.modbus.drop_connections()
    for raw in clients:
        assert await raw.closed_by_server()
        await raw.close()


async def test_wrong_transaction_id_and_wrong_length(plant: SimPlant) -> None:
    raw = await RawClient.connect(plant.modbus_port)
    try:
        plant.modbus.faults.wrong_transaction_id = True
        await raw.send(mbap(41, 1, READ))
        transaction, *_ = await raw.frame()
        assert transaction == 42
        plant.modbus.faults.clear()
        plant.modbus.faults.wrong_length = True
        await raw.send(mbap(43, 1, READ))
        header = await asyncio.wait_for(raw.reader.readexactly(7), 5)
        body = await asyncio.wait_for(raw.reader.readexactly(6), 5)  # fc, count, 2 registers
        transaction, _, length, _ = struct.unpack(">HHHB", header)
        assert transaction == 43 and body[:2] == b"\x04\x04"
        assert length == 1 + len(body) + 1  # one more than was sent
    finally:
        await raw.close()


async def test_garbage_is_not_the_answer(plant: SimPlant) -> None:
    raw = await RawClient.connect(plant.modbus_port)
    try:
        await raw.send(mbap(9, 1, READ))
        good = await raw.frame()
        expected = mbap(good[0], good[3], good[4])
        plant.modbus.faults.garbage = True
        await raw.send(mbap(9, 1, READ))
        noise = await asyncio.wait_for(raw.reader.readexactly(len(expected)), 5)
        assert noise != expected
    finally:
        await raw.close()


async def test_faults_per_unit_replace_the_server_wide_ones(plant: SimPlant) -> None:
    plant.modbus.unit_faults[2] = Faults(stall=True)
    raw = await RawClient.connect(plant.modbus_port)
    try:
        await raw.send(mbap(1, 2, READ) + mbap(2, 1, READ))
        assert (await raw.frame())[0] == 2
        assert not await answered(raw, 0.3)
        plant.modbus.faults.stall = True
        plant.modbus.unit_faults[3] = Faults()  # unit 3 keeps answering while the rest stall
        await raw.send(mbap(3, 1, READ) + mbap(4, 3, READ))
        assert (await raw.frame())[0] == 4
    finally:
        await raw.close()


async def test_exception_ranges_over_tcp(plant: SimPlant) -> None:
    plant.bank.units[3].add_exception("ir", 4, 2, 0x06)  # server device busy, for the residual
    plant.bank.units[3].add_unmapped("ir", 8, 1)
    raw = await RawClient.connect(plant.modbus_port)
    try:
        await raw.send(mbap(1, 3, bytes.fromhex("04 0000 0004")))
        assert (await raw.frame())[4][:2] == b"\x04\x08"
        await raw.send(mbap(2, 3, bytes.fromhex("04 0000 0006")))
        assert (await raw.frame())[4] == b"\x84\x06"
        await raw.send(mbap(3, 3, bytes.fromhex("04 0007 0002")))
        assert (await raw.frame())[4] == b"\x84\x02"
    finally:
        await raw.close()


def test_fault_knobs_clear() -> None:
    faults = Faults(stall=True, delay=2.0, garbage=True)
    assert faults.active
    faults.clear()
    assert not faults.active and faults == Faults()


# --- hostile input, with hypothesis driving a plain blocking socket ----------------------------------


@pytest.fixture(scope="module")
def threaded_plant() -> Iterator[SimPlant]:
    """A sim in its own thread and event loop, so a synchronous hypothesis test can hammer it."""
    loop = asyncio.new_event_loop()
    plant = SimPlant(modbus_port=0, opcua=False, tick=None, seed=5)
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(plant.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="sim-under-fuzz", daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield plant
    finally:
        asyncio.run_coroutine_threadsafe(plant.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def exchange(port: int, data: bytes) -> bytes:
    """Send everything, half-close, and collect what comes back until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            return b""  # the server closed first: allowed for input that is not Modbus
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def well_formed_frames(data: bytes) -> bool:
    while data:
        if len(data) < 7:
            return False
        _, protocol, length, _ = struct.unpack_from(">HHHB", data)
        if protocol != 0 or len(data) < 6 + length:
            return False
        data = data[6 + length :]
    return True


frame_like = st.builds(
    lambda t, p, u, pdu, length: struct.pack(">HHHB", t, p, length if length is not None else len(pdu) + 1, u) + pdu,
    st.integers(0, 0xFFFF),
    st.sampled_from([0, 0, 0, 1, 0xFFFF]),
    st.integers(0, 255),
    st.binary(max_size=260),
    st.none() | st.integers(0, 0xFFFF),
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(frame_like | st.binary(max_size=300), max_size=6))
def test_hostile_streams_never_hurt_the_server(threaded_plant: SimPlant, chunks: list[bytes]) -> None:
    answer = exchange(threaded_plant.modbus_port, b"".join(chunks))
    assert well_formed_frames(answer)
    # Whatever that was, a well-behaved client is still served correctly.
    reply = exchange(threaded_plant.modbus_port, mbap(77, 1, bytes.fromhex("03 0064 0008")))
    assert reply[:2] == b"\x00\x4d" and reply[9:].rstrip(b"\0") == b"SEAM-SIM-WTP"


async def test_connections_beyond_the_limit_are_refused(plant: SimPlant) -> None:
    plant.modbus.max_connections = 2
    kept = [await RawClient.connect(plant.modbus_port) for _ in range(2)]
    for raw in kept:
        await raw.send(mbap(1, 1, READ))
        await raw.frame()
    extra = await RawClient.connect(plant.modbus_port)
    assert await extra.closed_by_server()
    assert plant.modbus.stats.refused == 1
    await extra.close()
    for raw in kept:  # the ones inside the limit are unaffected
        await raw.send(mbap(2, 1, READ))
        assert (await raw.frame())[0] == 2
        await raw.close()
