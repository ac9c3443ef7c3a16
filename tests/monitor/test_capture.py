"""Capture readers: pcap and pcapng (converted by Wireshark's editcap) read the same frames; bad files say why."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from otseam.monitor.capture import CaptureError, CaptureStats, read_capture
from otseam.monitor.packet import decode_tcp
from tests.monitor.pcapgen import Conversation, mbap, pcap_bytes


def editcap(source: Path, target: Path, fmt: str) -> Path:
    binary = shutil.which("editcap")
    assert binary, "editcap (Wireshark) is needed for this test"
    subprocess.run([binary, "-F", fmt, str(source), str(target)], check=True, capture_output=True, timeout=30)
    return target


@pytest.mark.parametrize("fmt", ["pcapng", "nsecpcap"])
def test_other_formats_read_the_same_frames(capture: Path, tmp_path: Path, fmt: str) -> None:
    original = list(read_capture(capture))
    converted = list(read_capture(editcap(capture, tmp_path / f"{capture.name}.{fmt}", fmt)))
    assert original
    assert [f.number for f in converted] == [f.number for f in original]
    assert [bytes(f.data) for f in converted] == [bytes(f.data) for f in original]
    assert [f.linktype for f in converted] == [f.linktype for f in original]
    assert all(abs(a.ts - b.ts) < 1e-6 for a, b in zip(converted, original, strict=True))


def test_truncated_file_keeps_what_was_read(tmp_path: Path) -> None:
    conv = Conversation().handshake()
    conv.c(mbap(1, 1, b"\x03\x00\x00\x00\x01"))
    data = pcap_bytes(conv.frames)
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[:-10])
    stats = CaptureStats()
    frames = list(read_capture(path, stats))
    assert len(frames) == 2
    assert stats.problems and "truncated record" in stats.problems[0]


def test_absurd_record_length_stops_cleanly(tmp_path: Path) -> None:
    data = bytearray(pcap_bytes(Conversation().handshake().frames))
    data[24 + 8 : 24 + 12] = (10**9).to_bytes(4, "little")  # first record's included length
    path = tmp_path / "bomb.pcap"
    path.write_bytes(bytes(data))
    stats = CaptureStats()
    assert list(read_capture(path, stats)) == []
    assert "claims" in stats.problems[0]


@pytest.mark.parametrize(("content", "expected"), [(b"", "empty"), (b"hello world, not a capture", "not a pcap")])
def test_not_a_capture(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "bad.pcap"
    path.write_bytes(content)
    with pytest.raises(CaptureError, match=expected):
        list(read_capture(path))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="cannot read"):
        list(read_capture(tmp_path / "absent.pcap"))


def test_ethernet_padding_is_not_payload() -> None:
    conv = Conversation().handshake()
    frame = conv.c(b"\x00\x01")  # 2 bytes of payload in a frame padded to 60 bytes
    segment = decode_tcp(1, frame)
    assert segment is not None and segment.payload == b"\x00\x01"
