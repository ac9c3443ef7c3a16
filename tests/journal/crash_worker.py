"""The processes the crash test kills: a writer appending numbered samples, a reader delivering them.

Run as ``python -m tests.journal.crash_worker write JOURNAL`` or ``... read JOURNAL OUTPUT [PAUSE]``. Each line printed on stdout
is a promise the test checks after the crash: the writer prints an offset only after ``append``
returned it; the reader prints ``delivered`` after writing a batch to OUTPUT and before committing.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from typing import TextIO

from otseam.core.records import Quality, Record, Sample
from otseam.journal import Journal

SEGMENT_SIZE = 64 * 1024


def write(path: str) -> None:
    rng = random.Random()
    with Journal.open(path, max_size=256 * 1024 * 1024, segment_size=SEGMENT_SIZE, sync="none") as journal:
        while True:
            # Every sample carries the offset it should receive, so the test can check order and content.
            expected = journal.last_offset + 1
            count = rng.randint(1, 300)
            now = time.time()
            batch: list[Record] = [
                Sample(f"crash/p{(expected + i) % 7}", expected + i, Quality.GOOD, now, now) for i in range(count)
            ]
            last = journal.append(batch)
            print(last, flush=True)


async def read(path: str, out: TextIO, pause: float) -> None:
    rng = random.Random()
    with Journal.open(path, max_size=256 * 1024 * 1024, segment_size=SEGMENT_SIZE) as journal:
        cursor = journal.reader("sink")
        while True:
            batch = await cursor.next_batch(max_records=rng.randint(1, 2000), max_wait=0)
            if not batch:
                print("done", flush=True)
                return
            out.write(
                "".join(f"{batch.source} {o} {r[1]}\n" for o, r in zip(batch.offsets, batch.records, strict=True))
                + "end\n"
            )
            out.flush()
            print("delivered", batch.last_offset, flush=True)
            # The window in which a kill leaves a delivered but uncommitted batch.
            await asyncio.sleep(pause)
            cursor.commit(batch.last_offset)


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2])
    else:
        with open(sys.argv[3], "a", encoding="ascii") as output:
            asyncio.run(read(sys.argv[2], output, float(sys.argv[4]) if len(sys.argv) > 4 else 0.0))
