"""The read-only Modbus replica, read and written by mbpoll (an independent Modbus client, not pymodbus)."""

from __future__ import annotations

import asyncio
import re
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otseam.audit.log import AuditLog, node_public_key, verify_log
from otseam.contract.models import Contract, Device, Point, Scaling, Site
from otseam.core.records import Event, Quality, Record, Sample, Severity
from otseam.replica.modbus import LayoutError, ModbusReplica
from tests.diode.harness import events, open_journal, read_all


def plant() -> Contract:
    return Contract(
        site=Site(enterprise="acme", site="works"),
        devices=[
            Device(
                id="plc1",
                driver="modbus",
                endpoint="tcp://10.0.0.5:502",
                zone="cell",
                unit=1,
                points=[
                    Point(id="level", address="hr:100", type="float32"),
                    Point(id="flow", address="hr:102", type="float32", byte_order="CDAB"),
                    Point(id="count", address="hr:104", type="int32"),
                    Point(id="temp", address="ir:10", type="int16", scale=Scaling(factor=0.1)),
                    Point(id="pump", address="co:5", type="bool"),
                    Point(id="alarm", address="hr:7.3", type="bool"),
                ],
            ),
            Device(
                id="plc2",
                driver="modbus",
                endpoint="tcp://10.0.0.6:502",
                zone="cell",
                unit=1,
                points=[Point(id="level", address="hr:100", type="float32")],
            ),
        ],
    )


def good(point: str, value: bool | float | int, quality: Quality = Quality.GOOD) -> Sample:
    return Sample(point, value, quality, 1.0, 1.0)


async def mbpoll(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        "mbpoll", "-m", "tcp", "-1", "-o", "2", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


def values(output: str) -> dict[int, str]:
    return {int(a): v.strip() for a, v in re.findall(r"^\[(\d+)\]:\s+(\S+)", output, re.MULTILINE)}


async def test_reads_answer_the_replicated_values_as_the_contract_encodes_them(tmp_path: Path) -> None:
    replica = ModbusReplica(plant(), None, port=0, options={"units": {"plc2": 2}})
    await replica.start()
    try:
        replica.apply(
            [
                good("plc1/level", 12.5),
                good("plc1/flow", -3.25),
                good("plc1/count", 70000),
                good("plc1/temp", 21.5),
                good("plc1/pump", True),
                good("plc1/alarm", True),
                good("plc2/level", 99.0),
            ]
        )
        port = str(replica.port)
        # mbpoll numbers registers from 1 by default; -0 switches to the zero-based protocol addresses.
        _, out = await mbpoll("-p", port, "-a", "1", "-0", "-r", "100", "-c", "1", "-t", "4:float", "-B", "127.0.0.1")
        assert values(out) == {100: "12.5"}
        _, out = await mbpoll("-p", port, "-a", "1", "-0", "-r", "102", "-c", "1", "-t", "4:float", "127.0.0.1")
        assert values(out) == {102: "-3.25"}  # mbpoll's default float word order is CDAB
        _, out = await mbpoll("-p", port, "-a", "1", "-0", "-r", "104", "-c", "1", "-t", "4:int", "-B", "127.0.0.1")
        assert values(out) == {104: "70000"}
        _, out = await mbpoll("-p", port, "-a", "1", "-0", "-r", "10", "-c", "1", "-t", "3", "127.0.0.1")
        assert values(out) == {10: "215"}  # raw register: the contract's scaling undone
        _, out = await mbpoll("-p", port, "-a", "1", "-0", "-r", "5", "-c", "1", "-t", "0", "127.0.0.1")
        assert values(out) == {5: "1"}
        _, out = await mbpoll("-p", port, "-a", "1", "-0", "-r", "7", "-c", "1", "-t", "4:hex", "127.0.0.1")
        assert values(out) == {7: "0x0008"}
        _, out = await mbpoll("-p", port, "-a", "2", "-0", "-r", "100", "-c", "1", "-t", "4:float", "-B", "127.0.0.1")
        assert values(out) == {100: "99"}
    finally:
        await replica.close()


async def test_every_write_is_refused_with_exception_01_and_recorded(tmp_path: Path) -> None:
    journal = open_journal(tmp_path / "it")
    audit = AuditLog(tmp_path / "authority", node="it-gateway", journal=journal)
    replica = ModbusReplica(plant(), journal, port=0, options={"units": {"plc2": 2}}, audit=audit)
    await replica.start()
    try:
        replica.apply([good("plc1/level", 12.5), good("plc1/pump", False)])
        port = str(replica.port)
        code, out = await mbpoll("-p", port, "-a", "1", "-0", "-r", "100", "-t", "4", "127.0.0.1", "7")
        assert code != 0 and "Illegal function" in out
        code, out = await mbpoll("-p", port, "-a", "1", "-0", "-r", "5", "-t", "0", "127.0.0.1", "1")
        assert code != 0 and "Illegal function" in out
        _, out = await mbpoll("-p", port, "-a", "1", "-0", "-r", "100", "-c", "1", "-t", "4:float", "-B", "127.0.0.1")
        assert values(out) == {100: "12.5"}  # unchanged
    finally:
        await replica.close()
    # Records of the hash-chained audit log (closing the replica wrote what was queued)...
    records = [r for r in audit.records() if r["kind"] == "replica.write_attempt"]
    assert [(r["data"]["function"], r["data"]["address"], r["severity"]) for r in records] == [
        (6, 100, "high"),
        (5, 5, "high"),
    ]
    assert all(r["actor"].startswith("127.0.0.1:") and r["actor"] == r["data"]["client"] for r in records)
    assert verify_log(audit.path, audit.head_path, node_public_key(audit.directory)).ok
    # ...and, through it, events of the journal (what a diode or a sink carries on).
    attempts = events(read_all(journal), "audit.replica.write_attempt")
    assert [e.data["data"]["function"] for e in attempts] == [6, 5]
    journal.close()


async def test_a_write_is_refused_even_when_its_record_cannot_be_written(tmp_path: Path) -> None:
    journal = open_journal(tmp_path / "it")
    audit = AuditLog(tmp_path / "authority", node="it-gateway", journal=journal)
    audit.directory.mkdir()
    audit.path.symlink_to("/dev/full")  # every write fails with ENOSPC: a full disk
    replica = ModbusReplica(plant(), journal, port=0, options={"units": {"plc2": 2}}, audit=audit)
    await replica.start()
    try:
        code, out = await mbpoll("-p", str(replica.port), "-a", "1", "-0", "-r", "100", "-t", "4", "127.0.0.1", "7")
        assert code != 0 and "Illegal function" in out
    finally:
        await replica.close()
    assert replica.refusals is not None and replica.refusals.stats.unrecorded == 1
    # Not silent: the gap is an event of high severity in the journal, carrying what was refused.
    (gap,) = events(read_all(journal), "audit.unrecorded")
    assert gap.severity == Severity.HIGH and gap.data["kind"] == "replica.write_attempt"
    assert "cannot be written" in gap.message
    journal.close()


async def test_values_that_are_not_good_or_not_fresh_are_refused_with_exception_04() -> None:
    replica = ModbusReplica(plant(), None, port=0, options={"units": {"plc2": 2}})
    await replica.start()
    try:
        port = str(replica.port)
        read = ("-p", port, "-a", "1", "-0", "-r", "100", "-c", "1", "-t", "4:float", "-B", "127.0.0.1")
        code, out = await mbpoll(*read)
        assert code != 0 and "failure" in out.lower()  # no value yet
        replica.apply([good("plc1/level", 4.0)])
        assert values((await mbpoll(*read))[1]) == {100: "4"}
        replica.apply([good("plc1/level", 4.5, Quality.BAD_COMM)])
        code, out = await mbpoll(*read)
        assert code != 0 and "failure" in out.lower()
        replica.apply([good("plc1/level", 5.0)])
        assert values((await mbpoll(*read))[1]) == {100: "5"}
        link_down: list[Record] = [Event(2.0, "diode.link", "diode-receive", 3, "down", {"state": "down"})]
        replica.apply(link_down)
        code, out = await mbpoll(*read)
        assert code != 0 and "failure" in out.lower()
    finally:
        await replica.close()


def test_overlapping_devices_must_be_remapped() -> None:
    with pytest.raises(LayoutError, match="both occupy unit 1 hr:100"):
        ModbusReplica(plant(), None, port=0)
    with pytest.raises(LayoutError, match="not a point"):
        ModbusReplica(plant(), None, port=0, options={"remap": {"plc9/x": "hr:1"}})
    moved = ModbusReplica(plant(), None, port=0, options={"remap": {"plc2/level": "hr:200"}})
    assert {s.key: s.address.address for s in moved.slots}["plc2/level"] == 200


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=255), st.binary(min_size=1, max_size=253))
def test_any_request_gets_an_answer_or_silence_never_an_exception(unit: int, pdu: bytes) -> None:
    replica = ModbusReplica(plant(), None, port=0, options={"units": {"plc2": 2}})
    replica.apply([good("plc1/level", 1.5)])
    answer = replica.bank.handle_pdu(unit, pdu)
    if unit not in (1, 2):
        assert answer is None
        return
    assert answer is not None
    if pdu[0] in (5, 6, 15, 16, 22, 23):
        assert answer == bytes([pdu[0] | 0x80, 0x01])
        assert replica.write_attempts == 1


def test_last_value_policy_keeps_serving_the_last_value() -> None:
    replica = ModbusReplica(plant(), None, port=0, options={"units": {"plc2": 2}, "quality_policy": "last-value"})
    read = bytes([3, 0, 100, 0, 2])  # read holding registers 100..101
    assert replica.bank.handle_pdu(1, read) == bytes([0x83, 0x04])  # never had a value
    replica.apply([good("plc1/level", 2.0)])
    served = replica.bank.handle_pdu(1, read)
    assert served == bytes([3, 4]) + struct.pack(">f", 2.0)
    link_down: list[Record] = [Event(2.0, "diode.link", "diode-receive", 3, "down", {"state": "down"})]
    replica.apply([good("plc1/level", None, Quality.BAD_COMM), *link_down])  # type: ignore[arg-type]
    assert replica.bank.handle_pdu(1, read) == served
    with pytest.raises(LayoutError, match="quality_policy"):
        ModbusReplica(plant(), None, port=0, options={"quality_policy": "optimistic"})
