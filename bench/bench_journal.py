"""Journal benchmark: append and read rates on one core, bytes per sample, and the storage we rejected.

    .venv/bin/python bench/bench_journal.py [--samples 2000000] [--batch 1000]

Measures, in one run and on one pinned core:
  * seam: the segment-file journal (otseam.journal), append with the default sync policy ("interval",
    fdatasync at most once a second) and read through a cursor (decode to Sample tuples, commit per batch);
  * sqlite-wal-blob: the same encoded frames stored as BLOB rows in SQLite (WAL, synchronous=NORMAL),
    the alternative storage with the same codec;
  * sqlite-wal-rows: one SQLite row per sample (executemany), the "obvious" design, for scale;
  * codec only: encode and decode the same batches in memory, the ceiling for any storage.
Each figure is the median of three interleaved rounds, per CPU-second and per wall-clock second. Bounded: about a minute on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from otseam.core.records import Batch, Quality, Record, Sample
from otseam.journal import Journal, codec, segments

ROUNDS = 3


def cpu_model() -> str:
    """The CPU's model name and the vector flags that matter to the codecs, from /proc/cpuinfo."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    vector = [f for f in ("sse4_2", "avx", "avx2", "avx512f", "pclmulqdq") if f in flags]
    return f"{model} (flags: {' '.join(vector) or 'none of sse4_2/avx/avx2/avx512f/pclmulqdq'})"


def make_batches(total: int, batch_size: int) -> list[list[Record]]:
    """Realistic samples: 500 point keys shared as objects (as a driver does), floats, two timestamps."""
    points = [f"plc{i % 10}/tag{i}" for i in range(500)]
    base = time.time()
    batches: list[list[Record]] = []
    for start in range(0, total, batch_size):
        batches.append(
            [
                Sample(
                    points[i % 500], 20.0 + (i % 1000) * 0.013, Quality.GOOD, base + i * 1e-3, base + i * 1e-3 + 2e-4
                )
                for i in range(start, min(total, start + batch_size))
            ]
        )
    return batches


class Rates(NamedTuple):
    """Samples per second of wall time and per second of this process's CPU time, and bytes per sample."""

    append_wall: float
    append_cpu: float
    read_wall: float
    read_cpu: float
    bytes_per_sample: float


def timed(action: Callable[[], int]) -> tuple[float, float, int]:
    """Wall and CPU seconds of ``action``. CPU time is what the design costs; wall time also holds the
    disk waits and whatever else the shared machine was doing."""
    started, started_cpu = time.perf_counter(), time.process_time()
    count = action()
    return time.perf_counter() - started, max(time.process_time() - started_cpu, 1e-9), count


# --- seam -------------------------------------------------------------------------------------------


def seam_round(directory: Path, batches: list[list[Record]], total: int) -> Rates:
    shutil.rmtree(directory, ignore_errors=True)
    journal = Journal.open(directory, max_size=4 * 1024**3)

    def append() -> int:
        for batch in batches:
            journal.append(batch)
        return total

    append_wall, append_cpu, _ = timed(append)
    bytes_per_sample = journal.bytes_on_disk / total
    cursor = journal.reader("bench")

    async def drain() -> int:
        count = 0
        while batch := await cursor.next_batch(max_records=5000, max_wait=0):
            count += len(batch)
            cursor.commit(batch.last_offset)
        return count

    read_wall, read_cpu, read = timed(lambda: asyncio.run(drain()))
    assert read == total, (read, total)
    journal.close()
    return Rates(total / append_wall, total / append_cpu, total / read_wall, total / read_cpu, bytes_per_sample)


# --- the codec alone, in memory: the ceiling any storage can reach ----------------------------------


def codec_round(directory: Path, batches: list[list[Record]], total: int) -> Rates:
    frames: list[tuple[int, bytes, int]] = []

    def encode() -> int:
        for batch in batches:
            for kind, run in codec.split_runs(batch):
                frames.append((*codec.encode(kind, run), len(run)))
        return total

    encode_wall, encode_cpu, _ = timed(encode)

    def decode() -> int:
        return sum(len(codec.decode(kind, payload, count)) for kind, payload, count in frames)

    decode_wall, decode_cpu, decoded = timed(decode)
    assert decoded == total
    size = sum(len(p) for _, p, _ in frames)
    return Rates(total / encode_wall, total / encode_cpu, total / decode_wall, total / decode_cpu, size / total)


# --- SQLite, same frames as BLOBs -------------------------------------------------------------------


def sqlite_blob_round(directory: Path, batches: list[list[Record]], total: int) -> Rates:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    path = directory / "journal.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE frames (base INTEGER PRIMARY KEY, count INTEGER, kind INTEGER, at REAL, payload BLOB)")

    def append() -> int:
        offset = 1
        for batch in batches:
            now = time.time()
            for kind, run in codec.split_runs(batch):
                frame_kind, payload = codec.encode(kind, run)
                db.execute("INSERT INTO frames VALUES (?, ?, ?, ?, ?)", (offset, len(run), frame_kind, now, payload))
                offset += len(run)
        return offset - 1

    append_wall, append_cpu, _ = timed(append)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = sum(f.stat().st_size for f in directory.iterdir())

    def drain() -> int:
        # Builds the same Batch objects (records and offsets, 5,000 at a time) as a journal cursor does.
        # Like a sink runner, the previous batch is still referenced while the next one is decoded.
        count = 0
        position = 1
        held: list[Batch] = []
        while True:
            rows = db.execute(
                "SELECT base, count, kind, payload FROM frames WHERE base >= ? ORDER BY base LIMIT 5", (position,)
            ).fetchall()
            if not rows:
                return count
            batch = Batch("bench")
            for base, frame_count, kind, payload in rows:
                batch.records.extend(codec.decode(kind, payload, frame_count))
                batch.offsets.extend(range(base, base + frame_count))
                position = base + frame_count
            count += len(batch)
            # The cursor commit, as the segment journal does it (one small write per batch).
            db.execute("INSERT OR REPLACE INTO frames_cursor VALUES ('bench', ?)", (position - 1,))
            held[:] = [batch]

    db.execute("CREATE TABLE frames_cursor (name TEXT PRIMARY KEY, committed INTEGER)")
    read_wall, read_cpu, read = timed(drain)
    assert read == total, (read, total)
    db.close()
    return Rates(total / append_wall, total / append_cpu, total / read_wall, total / read_cpu, size / total)


# --- SQLite, one row per sample ---------------------------------------------------------------------


def sqlite_rows_round(directory: Path, batches: list[list[Record]], total: int) -> Rates:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    db = sqlite3.connect(directory / "journal.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE records (offset INTEGER PRIMARY KEY, point TEXT, value, quality INTEGER, source_ts REAL, gateway_ts REAL)"
    )

    def append() -> int:
        offset = 1
        for batch in batches:
            rows = [(offset + i, s[0], s[1], int(s[2]), s[3], s[4]) for i, s in enumerate(batch)]
            db.execute("BEGIN")
            db.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)", rows)
            db.execute("COMMIT")
            offset += len(rows)
        return offset - 1

    append_wall, append_cpu, _ = timed(append)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = sum(f.stat().st_size for f in directory.iterdir())
    qualities = tuple(Quality)

    def drain() -> int:
        count = 0
        position = 0
        while True:
            rows = db.execute(
                "SELECT offset, point, value, quality, source_ts, gateway_ts FROM records WHERE offset > ? "
                "ORDER BY offset LIMIT 5000",
                (position,),
            ).fetchall()
            if not rows:
                return count
            records = [Sample(p, v, qualities[q], s, g) for _, p, v, q, s, g in rows]
            count += len(records)
            position = rows[-1][0]

    read_wall, read_cpu, read = timed(drain)
    assert read == total, (read, total)
    db.close()
    return Rates(total / append_wall, total / append_cpu, total / read_wall, total / read_cpu, size / total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=2_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--dir", default=None, help="where to write (default: a temporary directory)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
    batches = make_batches(args.samples, args.batch)
    # The prepared input is millions of live tuples; without this, every garbage-collector pass during
    # the run walks them all and the figures measure the benchmark's own input, not the journal.
    gc.collect()
    gc.freeze()
    root = Path(args.dir or tempfile.mkdtemp(prefix="seam-bench-journal-"))
    print(f"journal benchmark: {args.samples:,} samples in batches of {args.batch:,}, one core, {ROUNDS} rounds")
    print(f"machine: {cpu_model()}; on-disk format {codec.FORMAT}")
    print(f"frame header {segments.HEADER_SIZE} bytes; files in {root}; load average {os.getloadavg()}")
    header = f"{'storage':<18}{'append/s (cpu)':>16}{'append/s (wall)':>17}{'read/s (cpu)':>14}{'read/s (wall)':>15}{'B/sample':>10}"
    designs = [
        ("codec only (RAM)", codec_round, args.samples),
        ("seam (segments)", seam_round, args.samples),
        ("sqlite-wal-blob", sqlite_blob_round, args.samples),
        # Row-per-sample is an order of magnitude slower: a quarter of the samples keeps the run short.
        ("sqlite-wal-rows", sqlite_rows_round, max(args.batch, args.samples // 4)),
    ]
    results: dict[str, list[Rates]] = {name: [] for name, _, _ in designs}
    try:
        # Rounds are interleaved so that every design sees the same mix of load on a shared machine.
        for _ in range(ROUNDS):
            for name, run, total in designs:
                subset = batches[: max(1, total // args.batch)]
                count = sum(len(b) for b in subset)
                results[name].append(run(root / name.split()[0], subset, count))
        print(header)
        for name, rounds in results.items():
            median = Rates(*(statistics.median(r[i] for r in rounds) for i in range(len(Rates._fields))))
            print(
                f"{name:<18}{median.append_cpu:>16,.0f}{median.append_wall:>17,.0f}{median.read_cpu:>14,.0f}"
                f"{median.read_wall:>15,.0f}{median.bytes_per_sample:>10.1f}"
            )
        print(f"load average after the run {os.getloadavg()}")
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
