"""Property tests: what the write path encodes, the read path decodes to the same value; the parsers of
untrusted input (request documents, public keys, audit logs) answer with one clear error, never a crash."""

from __future__ import annotations

import contextlib
import json
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otseam.audit.log import verify_log
from otseam.contract.models import INTEGER_RANGES, Device
from otseam.control.authority.document import CommandRequest, DocumentError
from otseam.control.authority.keys import KeyProblem, parse_public
from otseam.drivers.modbus.planner import plan
from otseam.drivers.modbus.write import WriteError, encode
from otseam.protocols.modbus.tables import WRITE_MULTIPLE_REGISTERS, WRITE_SINGLE_REGISTER

ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")


def one_point(kind: str, order: str, length: int | None = None) -> Device:
    point: dict[str, object] = {"id": "p", "address": "hr:100", "type": kind, "byte_order": order}
    if length:
        point["length"] = length
    return Device.model_validate(
        {"id": "d", "driver": "modbus", "endpoint": "tcp://127.0.0.1:502", "zone": "z", "points": [point]}
    )


def decoded(device: Device, pdu: bytes) -> object:
    """Decode the registers a write request carries with the read path's own decoder."""
    if pdu[0] == WRITE_SINGLE_REGISTER:
        data = pdu[3:5]
    else:
        assert pdu[0] == WRITE_MULTIPLE_REGISTERS
        data = pdu[6:]
    [block] = plan(device)
    return block.decoder.decode(data)[0]


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_encode_then_decode_is_the_identity(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from([*INTEGER_RANGES, "float32", "float64", "bool", "string"]))
    order = data.draw(st.sampled_from(ORDERS))
    if kind in INTEGER_RANGES:
        low, high = INTEGER_RANGES[kind]
        value: object = data.draw(st.integers(low, high))
    elif kind == "float32":
        value = struct.unpack(
            ">f", struct.pack(">f", data.draw(st.floats(width=32, allow_nan=False, allow_infinity=False)))
        )[0]
    elif kind == "float64":
        value = data.draw(st.floats(allow_nan=False, allow_infinity=False))
    elif kind == "bool":
        value = data.draw(st.booleans())
    else:
        value = data.draw(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=8))
    device = one_point(kind, order, 4 if kind == "string" else None)
    pdu = encode(device, device.points[0], value)  # type: ignore[arg-type]
    assert decoded(device, pdu) == value


@given(st.integers(), st.sampled_from(sorted(INTEGER_RANGES)))
def test_out_of_range_integers_are_refused_not_wrapped(value: int, kind: str) -> None:
    device = one_point(kind, "ABCD")
    low, high = INTEGER_RANGES[kind]
    if low <= value <= high:
        encode(device, device.points[0], value)
    else:
        with pytest.raises(WriteError, match="does not fit"):
            encode(device, device.points[0], value)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=14),
    max_leaves=30,
)


@given(JSON)
def test_request_documents_from_anywhere(body: object) -> None:
    try:
        doc = CommandRequest.from_body(body)
    except DocumentError:
        return
    assert CommandRequest.from_body(doc.body()) == doc


@given(st.text(max_size=200))
def test_public_key_files_from_anywhere(text: str) -> None:
    with contextlib.suppress(KeyProblem):
        parse_public(text)


@settings(deadline=None, max_examples=200)
@given(st.lists(st.one_of(st.binary(max_size=80), JSON.map(lambda v: json.dumps(v).encode())), max_size=6))
def test_audit_verification_of_any_file_names_a_problem_or_passes(
    tmp_path_factory: pytest.TempPathFactory, lines: list[bytes]
) -> None:
    directory: Path = tmp_path_factory.mktemp("fuzz")
    log = directory / "audit.log"
    log.write_bytes(b"\n".join(lines))
    verdict = verify_log(log, directory / "audit.head", None)
    assert verdict.ok or verdict.problem
