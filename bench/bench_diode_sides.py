"""CPU cost of each side of the diode alone, without the other side competing for the same cores.

bench_diode.py measures a whole transfer, where the sender, the receiver and the kernel share two
cores and a saturated receiver's CPU figure is capped by the wall clock. This one measures what one
side costs per unit of payload when it has a core to itself, which tells where a faster link would
hit its limit first:

* **send**: ``DiodeSender.send_records`` (block encoding, FEC, sealing, sendmmsg with segmentation)
  to a loopback socket that is never read (the kernel's delivery, then its drop, are in the figure);
* **receive**: the datagrams of the same transfer, prepared beforehand, handed to a
  ``DiodeReceiver`` in batches of 256, laid out as recvmmsg lays them out (about four coalesced
  messages of a block each: what a socket with UDP_GRO hands a receiver that keeps up); checks,
  assembly, FEC, block checks, deduplication and writing the IT journal on disk; no socket.

    .venv/bin/python bench/bench_diode_sides.py --records 300000 --value-size 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_diode import make_samples

from otseam.core import memory
from otseam.core.records import Record
from otseam.diode import blocks, wire
from otseam.diode.config import DiodeSettings
from otseam.diode.fec import Fec
from otseam.diode.receiver import DiodeReceiver
from otseam.diode.sender import DiodeSender
from otseam.journal import Journal

KEY = b"k" * 32
SOURCE = "bench-edge"
CHUNK = 5000
#: Datagrams per call of the receiver's batch handler.
RECEIVE_BATCH = 256


def settings(offload: bool) -> DiodeSettings:
    return DiodeSettings.from_options({"rate": "100Gbit/s", "offload": offload})


def measure_send(offsets: list[int], records: list[Record], offload: bool, tuned: bool) -> dict[str, Any]:
    if not tuned:  # DiodeSender.start() tunes the allocator once per process: make that a no-op
        memory._done = True
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))

    async def run() -> tuple[float, DiodeSender]:
        sender = DiodeSender(sink.getsockname(), KEY, settings(offload))
        await sender.start()
        cpu, faults = time.process_time(), _faults()
        for i in range(0, len(records), CHUNK):
            await sender.send_records(SOURCE, offsets[i : i + CHUNK], records[i : i + CHUNK])
        cpu, faults = time.process_time() - cpu, _faults() - faults
        await sender.close()
        return cpu, faults, sender

    cpu, faults, sender = asyncio.run(run())
    sink.close()
    return {
        "side": "send",
        "cpu": cpu,
        "page_faults": faults,
        "datagrams": sender.stats.datagrams,
        "blocks": sender.stats.blocks,
    }


def transfer(offsets: list[int], records: list[Record], config: DiodeSettings) -> tuple[list[bytes], int]:
    """The datagrams a sender sends for these records (one beacon first), and the block payload bytes."""
    speedups = wire.speedups(None)
    assert speedups is not None, "the C speedups are not built"
    sealer = speedups.Mac(KEY)
    fec = Fec(config.fec)
    session = 0x5EA1
    beacon = wire.pack_beacon(wire.Beacon(config.fingerprint(KEY), time.time(), 0, 0, 1000, 0))
    header = wire.Header(wire.Kind.BEACON, 0, 0, 0, 0, session, 0, len(beacon))
    datagrams = [wire.pack(KEY, header, beacon)]
    slot = config.datagram_size
    payload_bytes = 0
    sequence = 0
    for i in range(0, len(records), CHUNK):
        for payload in blocks.encode_split(
            SOURCE, offsets[i : i + CHUNK], records[i : i + CHUNK], config.fec.max_block
        ):
            payload_bytes += len(payload)
            k, m, fragments = fec.encode(payload)
            buffer = bytearray(slot * (k + m))
            lengths = sealer.pack_block(buffer, slot, 0, k, m, session, sequence, fragments)
            datagrams += [bytes(buffer[j * slot : j * slot + length]) for j, length in enumerate(lengths)]
            sequence += 1
    return datagrams, payload_bytes


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def measure_receive(
    datagrams: list[bytes], records: int, directory: Path, tuned: bool, loss: float = 0.0, seed: int = 7
) -> dict[str, Any]:
    config = settings(True)
    journal = Journal.open(directory / "it-journal", source="it", sync="interval")
    receiver = DiodeReceiver(("127.0.0.1", 0), KEY, config, journal)
    slot = config.datagram_size + 1
    if loss:  # random datagram loss, the beacon spared (without it nothing is decoded)
        draw = random.Random(seed).random
        datagrams = datagrams[:1] + [d for d in datagrams[1:] if draw() >= loss]
    # Batches laid out as recvmmsg lays them out, built before the clock starts.
    batches: list[tuple[memoryview, list[int], list[int], int]] = []
    for first in range(0, len(datagrams), RECEIVE_BATCH):
        chunk = datagrams[first : first + RECEIVE_BATCH]
        buffer = bytearray(slot * len(chunk))
        for j, datagram in enumerate(chunk):
            buffer[j * slot : j * slot + len(datagram)] = datagram
        batches.append((memoryview(buffer), [j * slot for j in range(len(chunk))], list(map(len, chunk)), len(chunk)))

    async def run() -> tuple[float, int]:
        cpu, faults = time.process_time(), _faults()
        for view, starts, sizes, count in batches:
            receiver._handle(view, starts, sizes, count, time.monotonic())
        receiver.tick(time.monotonic() + 60)  # whatever is still incomplete is given up
        receiver._flush()
        return time.process_time() - cpu, _faults() - faults

    if tuned:
        memory.keep_freed_memory()  # as DiodeReceiver.start() does
    cpu, faults = asyncio.run(run())
    stats = receiver.stats
    assert loss or stats.records == records, f"the receiver took {stats.records} records of {records}"
    journal.close()
    return {
        "side": "receive",
        "loss": loss,
        "cpu": cpu,
        "page_faults": faults,
        "datagrams": stats.datagrams,
        "records": stats.records,
        "recovered_blocks": stats.recovered,
        "lost_blocks": stats.lost,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--value-size", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-offload", action="store_true")
    parser.add_argument("--loss", type=float, default=0.0, help="receive side: share of datagrams dropped (seeded)")
    parser.add_argument("--sides", default="send,receive", help="which sides to measure, in this process")
    parser.add_argument(
        "--untuned", action="store_true", help="without keep_freed_memory() (measure one side per process)"
    )
    args = parser.parse_args()
    offsets, records = make_samples(args.records, args.value_size)
    datagrams, payload = transfer(offsets, records, settings(True))
    print(f"{args.records} samples, {payload / 1e6:.1f} MB of block payload, {len(datagrams)} datagrams")
    for repeat in range(args.repeat):
        with tempfile.TemporaryDirectory() as scratch:
            results = []
            if "send" in args.sides:
                results.append(measure_send(offsets, records, not args.no_offload, not args.untuned))
            if "receive" in args.sides:
                results.append(
                    measure_receive(datagrams, args.records, Path(scratch), not args.untuned, args.loss, 7 + repeat)
                )
            for result in results:
                result["payload_mbit_per_cpu_s"] = payload * 8 / 1e6 / result["cpu"]
                result["us_per_datagram"] = result["cpu"] / result["datagrams"] * 1e6
                print(json.dumps(result), flush=True)
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
