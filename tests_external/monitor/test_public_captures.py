"""The monitor against public captures (Digital Bond's Modbus test data, the ICSNPP Modbus example).

The generic tests of tests/monitor run here on the public corpus (imported below: their fixtures
``corpus`` and ``capture`` come from tests_external/conftest.py), followed by the tests that know what
these particular captures contain, compared with checked-in, reviewed expectations (expected/).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otseam.core.records import Event
from otseam.journal import Journal
from otseam.monitor.capture import read_capture
from tests.monitor.test_capture import test_other_formats_read_the_same_frames
from tests.monitor.test_cli import REQUIRED, cli, invoke
from tests.monitor.test_fastpath import (
    _MAX_FLIP_BIT,
    assert_alerts_at_their_frames,
    assert_same,
    both,
    check_bit_flips,
    check_overwrites,
    flipped,
    test_truncated_captures_read_the_same,
    test_whole_captures,
)
from tests.monitor.test_fuzz import fixtures, test_bit_flipped_real_captures, test_truncated_real_captures
from tests.monitor.test_tshark import test_modbus_fields_match_tshark
from tests_external.conftest import PUBLIC_CAPTURES

EXPECTED = Path(__file__).parent / "expected"

__all__ = [
    "cli",
    "fixtures",
    "test_bit_flipped_real_captures",
    "test_modbus_fields_match_tshark",
    "test_other_formats_read_the_same_frames",
    "test_truncated_captures_read_the_same",
    "test_truncated_real_captures",
    "test_whole_captures",
]


@pytest.fixture(scope="session")
def public(corpus: dict[str, Path]) -> Path:
    return corpus[PUBLIC_CAPTURES[0]].parent


def test_jsonl_alerts_have_the_required_fields(cli: typer.Typer, public: Path) -> None:
    code, out, _err = invoke(cli, "watch", "--pcap", str(public / "modbus_test_data_part1.pcap"), "--format", "jsonl")
    assert code == 0
    alerts = [json.loads(line) for line in out.splitlines()]
    assert alerts and all(set(a) >= REQUIRED for a in alerts)
    first = alerts[0]
    assert (first["frame"], first["rule"], first["attack"], first["severity"]) == (8, "MB-003", "T0814", "critical")
    assert (first["src"], first["dst"], first["unit"], first["function"]) == ("10.0.0.57", "10.0.0.3", 10, 8)


@pytest.mark.parametrize("name", PUBLIC_CAPTURES)
def test_expected_transactions_and_alerts(cli: typer.Typer, public: Path, name: str) -> None:
    """ICSNPP-style: the whole decoded output, compared with a checked-in, reviewed expectation."""
    code, out, _err = invoke(cli, "watch", "--pcap", str(public / name), "--format", "jsonl", "--transactions")
    assert code == 0
    expected_file = EXPECTED / (name.removesuffix(".pcap") + ".jsonl")
    if os.environ.get("SEAM_UPDATE_EXPECTED") == "1":
        expected_file.parent.mkdir(exist_ok=True)
        expected_file.write_text(out)
    got = [json.loads(line) for line in out.splitlines()]
    want = [json.loads(line) for line in expected_file.read_text().splitlines()]
    assert len(got) == len(want)
    for index, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"{name} line {index + 1}"


def test_table_is_the_default(cli: typer.Typer, public: Path) -> None:
    code, out, _err = invoke(cli, "watch", "--pcap", str(public / "modbus_test_data_part2.pcap"))
    assert code == 0
    assert "MB-008" in out and "MB-009" in out and "alerts" in out


def test_inventory_json(cli: typer.Typer, public: Path) -> None:
    code, out, _err = invoke(cli, "inventory", "--pcap", str(public / "icsnpp_modbus_example.pcap"), "--format", "json")
    assert code == 0
    assets = {a["ip"]: a for a in json.loads(out)["assets"]}
    assert set(assets) == {"127.0.0.1", "192.168.1.6", "3.15.227.20"}
    assert (assets["192.168.1.6"]["role"], assets["3.15.227.20"]["role"]) == ("master", "slave")
    assert assets["3.15.227.20"]["unit_ids"] == [0] and assets["3.15.227.20"]["function_codes"] == [3]
    only = assets["127.0.0.1"]
    assert only["role"] == "both"
    assert (only["vendor"], only["product"], only["revision"]) == (
        "Zeek Modbus Test",
        "Protocol Parsing is fun!",
        "1.2.3.6",
    )
    assert {1, 2, 3, 4, 5, 6, 15, 16, 43} <= set(only["function_codes"])
    assert only["first_seen"] <= only["last_seen"]
    code, out, _err = invoke(cli, "inventory", "--pcap", str(public / "modbus_test_data_part1.pcap"))
    assert code == 0 and "10.0.0.57" in out and "master" in out


def test_alerts_and_inventory_go_to_the_journal(cli: typer.Typer, public: Path, tmp_path: Path) -> None:
    journal_dir = tmp_path / "journal"
    code, out, _err = invoke(
        cli,
        "watch",
        "--pcap",
        str(public / "modbus_test_data_part1.pcap"),
        "--format",
        "jsonl",
        "--journal",
        str(journal_dir),
    )
    assert code == 0
    printed = [json.loads(line) for line in out.splitlines()]
    with Journal.open(journal_dir) as journal:
        cursor = journal.reader("test")
        batch = asyncio.run(cursor.next_batch(max_records=10_000, max_wait=0.1))
    events = [r for r in batch.records if isinstance(r, Event)]
    alerts = [e for e in events if e.kind == "alert"]
    assert [(e.source, e.data["frame"]) for e in alerts] == [(a["rule"], a["frame"]) for a in printed]
    new_assets = {e.data["ip"] for e in events if e.kind == "inventory.new_asset"}
    assert new_assets == {"10.0.0.57", "10.0.0.3", "10.0.0.8", "10.0.0.9"}


def test_request_held_behind_a_corrupt_segment_keeps_its_own_frame_time(public: Path, tmp_path: Path) -> None:
    """Found by the bit-flip property below: two flipped bits in modbus_test_data_part1.pcap.

    Bit 10576 changes the source address of frame 17 (10.0.0.57 becomes 11.0.0.57), so its segment leaves
    the 10.0.0.57:2578 connection with a hole: the client's later segments wait in reassembly until the
    capture ends. Bit 41464 makes frame 66 claim one byte more, which misaligns the next record header
    and ends the file there. The held requests (clear counters in frame 23, report server id in frame
    40) used to be reported at the capture's last frame with the time of whichever frame the analyser had
    seen last, and that differed between the per-frame path and the fast path.
    """
    original = (public / "modbus_test_data_part1.pcap").read_bytes()
    data = flipped(original, [10576, 41464])
    slow, fast = both(data, tmp_path)
    assert_same(slow, fast)
    path = tmp_path / "capture.pcap"
    assert_alerts_at_their_frames(path, slow)
    # The original capture says where and when each request crossed the wire (tshark agrees).
    wire = {frame.number: frame.ts for frame in read_capture(public / "modbus_test_data_part1.pcap")}
    found = {(a.rule.id, a.frame, a.ts) for a in slow.detector.alerts}
    assert ("MB-005", 23, wire[23]) in found
    assert ("MB-007", 40, wire[40]) in found
    assert not any(a.frame == 66 for a in slow.detector.alerts)


def test_bit_flip_regression(public: Path, tmp_path: Path) -> None:
    """The two flipped bits of the test above, through the property's own check."""
    check_bit_flips((public / "modbus_test_data_part1.pcap").read_bytes(), tmp_path, [10576, 41464])


def test_overwritten_header_regression(public: Path, tmp_path: Path) -> None:
    """Frame 8 loses its EtherType (a hole in its connection), frame 11 is cut to nothing and the file ends."""
    check_overwrites((public / "modbus_test_data_part1.pcap").read_bytes(), tmp_path, [(10, 8, 0), (361, 28, 0)])


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    name=st.sampled_from(PUBLIC_CAPTURES),
    flips=st.lists(st.integers(min_value=24 * 8, max_value=_MAX_FLIP_BIT), min_size=1, max_size=30),
)
def test_bit_flipped_public_captures_agree(public: Path, tmp_path: Path, name: str, flips: list[int]) -> None:
    check_bit_flips((public / name).read_bytes(), tmp_path, flips)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    name=st.sampled_from(PUBLIC_CAPTURES),
    hits=st.lists(
        st.tuples(st.integers(0, 10_000), st.integers(0, 16 + 54 + 12), st.integers(0, 255)), min_size=1, max_size=6
    ),
)
def test_overwritten_headers_of_public_captures_agree(
    public: Path, tmp_path: Path, name: str, hits: list[tuple[int, int, int]]
) -> None:
    check_overwrites((public / name).read_bytes(), tmp_path, hits)
