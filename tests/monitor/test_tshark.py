"""Our Modbus/TCP decoding, field by field, against Wireshark's (tshark) on every capture of the corpus.

tshark is an independent implementation: where both decode a field, the values must be equal, and both
must find Modbus in exactly the same frames.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from otseam.monitor.analyzers.modbus.parser import Message
from otseam.monitor.capture import read_capture
from otseam.monitor.engine import Monitor
from tests.monitor.traffic import tshark_decode_as

FIELDS = [
    "frame.number",
    "mbtcp.trans_id",
    "mbtcp.unit_id",
    "modbus.func_code",
    "modbus.exception_code",
    "modbus.reference_num",
    "modbus.word_cnt",
    "modbus.bit_cnt",
    "modbus.diagnostic_code",
    "modbus.mei",
]
#: Functions whose request (and, for writes, response) carries a start address and a quantity that both
#: tools decode the same way.
_ADDRESSED = {1, 2, 3, 4, 5, 6, 15, 16}
_COUNTED = {1, 2, 3, 4, 15, 16}


def tshark_rows(path: Path) -> dict[int, list[dict[str, str]]]:
    binary = shutil.which("tshark")
    assert binary, "tshark is needed for this test (apt-get install tshark)"
    command = [binary, "-r", str(path), *tshark_decode_as(path), "-Y", "mbtcp", "-T", "fields"]
    command += ["-E", "occurrence=a", "-E", "aggregator=|"]
    for name in FIELDS:
        command += ["-e", name]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60).stdout
    rows: dict[int, list[dict[str, str]]] = {}
    for line in out.splitlines():
        columns = line.split("\t")
        number = int(columns[0])
        per_field = [c.split("|") if c else [] for c in columns[1:]]
        count = len(per_field[0])
        pdus = []
        for i in range(count):
            pdus.append(
                {
                    name: (values[i] if i < len(values) else "")
                    for name, values in zip(FIELDS[1:], per_field, strict=True)
                }
            )
        rows[number] = pdus
    return rows


def our_messages(path: Path) -> tuple[dict[int, list[Message]], set[int]]:
    monitor = Monitor()
    for frame in read_capture(path):
        monitor.process(frame)
    monitor.finish()
    assert monitor.stats.internal_errors == 0, monitor.stats.errors
    ours: dict[int, list[Message]] = {}
    for _ends, msg in monitor.modbus_messages:
        ours.setdefault(msg.frame, []).append(msg)
    return ours, {fault.frame for _ends, fault in monitor.stream_faults}


def test_modbus_fields_match_tshark(capture: Path) -> None:
    name = capture.name
    theirs = tshark_rows(capture)
    ours, faulted = our_messages(capture)
    assert not set(theirs) - set(ours), "every frame tshark decodes as Modbus, we decode too"
    # The one allowed difference: after a bad MBAP header tshark gives up on the rest of the stream,
    # while we report the bad header and resynchronise on the next plausible one, in that same frame.
    extra = set(ours) - set(theirs)
    assert extra <= faulted, f"frames {sorted(extra - faulted)} decoded by us only, without a reported fault"
    compared = 0
    for number, pdus in theirs.items():
        mine = ours[number]
        assert len(mine) == len(pdus), f"frame {number}: PDU count"
        for msg, row in zip(mine, pdus, strict=True):
            where = f"{name} frame {number}"
            assert msg.tid == int(row["mbtcp.trans_id"]), where
            assert msg.unit == int(row["mbtcp.unit_id"]), where
            assert msg.function == int(row["modbus.func_code"]), where
            if row["modbus.exception_code"]:
                assert msg.exception == int(row["modbus.exception_code"]), where
            else:
                assert msg.exception is None, where
            addressed = msg.function in _ADDRESSED and (msg.is_request or msg.function in (5, 6, 15, 16))
            if addressed and msg.exception is None and row["modbus.reference_num"]:
                assert msg.address == int(row["modbus.reference_num"]), where
                compared += 1
            count = row["modbus.word_cnt"] or row["modbus.bit_cnt"]
            if msg.function in _COUNTED and count and msg.quantity is not None:
                assert msg.quantity == int(count), where
            if row["modbus.diagnostic_code"]:
                assert msg.sub_function == int(row["modbus.diagnostic_code"]), where
            if row["modbus.mei"]:
                assert msg.mei == int(row["modbus.mei"]), where
            compared += 1
    assert compared >= len(theirs)
