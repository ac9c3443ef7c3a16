"""Write the fuzzer's seed corpus (tests/diode/native/corpus/): real datagrams and blocks, as the diode
sends them, one file per input, prefixed with the target byte fuzz_speedups.c reads first.

    python tests/diode/native/make_corpus.py     # rerun when the wire format changes; commit the result
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from otseam.core import columns
from otseam.core.records import Event, Quality, Record, Sample, Severity
from otseam.diode import blocks, wire
from otseam.diode.config import DiodeSettings
from otseam.diode.fec import Fec

KEY = b"fuzz-key-fuzz-key-fuzz-key-fuzz!"  # the harness's key: sealed seeds pass its MAC check
OUT = Path(__file__).resolve().parent / "corpus"


def framed(datagrams: list[bytes]) -> bytes:
    return b"".join(len(d).to_bytes(2, "big") + d for d in datagrams)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for old in OUT.iterdir():
        if not old.name.startswith("regression-"):  # inputs that once found a bug stay
            old.unlink()
    settings = DiodeSettings.from_options({"rate": "1Gbit/s"})
    fec = Fec(settings.fec)
    samples: list[Record] = [Sample(f"plc1/p{i % 7}", i * 0.5, Quality.GOOD, 1000.0 + i, 1000.5 + i) for i in range(40)]
    texts: list[Record] = [Sample(f"plc1/t{i % 3}", "é" * (i % 9), Quality.STALE, 1.0, 2.0) for i in range(12)]
    mixed: list[Record] = [Event(5.0, "alarm", "plc1/p1", Severity.HIGH, "level high", {"limit": 9}), samples[0]]
    payloads = [
        blocks.encode_split("ot-edge", list(range(40)), samples, settings.fec.max_block)[0],
        blocks.encode_split("ot-edge", list(range(100, 112)), texts, settings.fec.max_block)[0],
        blocks.encode_split("ot-edge", [7, 9], mixed, settings.fec.max_block)[0],
    ]
    seeds: list[bytes] = []
    beacon = wire.pack_beacon(wire.Beacon(settings.fingerprint(KEY), 1.0e9, 3, 10_000, 1000, 4))
    beacon_datagram = wire.pack(KEY, wire.Header(wire.Kind.BEACON, 0, 0, 0, 0, 77, 3, len(beacon)), beacon)
    for sequence, payload in enumerate(payloads):
        k, m, fragments = fec.encode(payload)
        datagrams = wire.pack_block(KEY, 0, k, m, 77, sequence, fragments)
        seeds.append(bytes([0]) + framed([beacon_datagram, *datagrams[:8]]))  # authentic as sent
        seeds.append(bytes([0x80]) + framed([beacon_datagram, *datagrams[:8]]))  # resealed by the harness
        seeds.append(bytes([5]) + framed([beacon_datagram, *datagrams[:8]]))  # positions in array('q')
        seeds.append(bytes([0x85]) + framed([beacon_datagram, *datagrams[:8]]))
        joined = b"".join(fragments)
        size = len(fragments[0])
        seeds.append(bytes([1]) + (size - 1).to_bytes(2, "big") + bytes([k - 1]) + joined[: 8 * size])
        seeds.append(bytes([2, k - 1, m - 1, 0xA5, 0x5A]) + payload[:4000])  # k, m, which fragments arrive
        seeds.append(bytes([4]) + payload)
        if payload[:1] == bytes([blocks.FORMAT_SAMPLES]):
            columns.inspect(payload)  # a valid columnar payload, tag byte included, as the receiver sees it
            seeds.append(bytes([3]) + payload)
    for seed in seeds:
        (OUT / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    print(f"{len(seeds)} seeds, {sum(map(len, seeds))} bytes in {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
