"""The receiver's pause between reads: bursts that arrive while it does not watch the socket are read at the
end of the pause, the socket is watched again afterwards, and a buffer too small for a pause gets none."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from otseam.core.records import Sample
from otseam.diode import receiver as receiver_module
from otseam.diode.receiver import DiodeReceiver
from tests.diode.harness import read_all, samples, started_link, through
from tests.support.wait import wait_until_async


async def deliver_in_rounds(tmp_path: Path) -> DiodeReceiver:
    """Three rounds of samples, each after the receiver has finished its previous pause (if any)."""
    journal, receiver, sender = await started_link(tmp_path / "it")
    offsets, records = samples(6000)
    for start in range(0, len(records), 2000):
        await sender.send_records("ot-edge", offsets[start : start + 2000], records[start : start + 2000])
        await wait_until_async(
            lambda wanted=start + 2000: through(sender, receiver)() and receiver.stats.records >= wanted
        )
        await wait_until_async(lambda: receiver._paused is None, "the end of the receiver's pause")
        # Watched again (not only read by the periodic tick): remove_reader says whether it was registered.
        assert receiver._sock is not None
        loop, fd = asyncio.get_running_loop(), receiver._sock.fileno()
        assert loop.remove_reader(fd)
        loop.add_reader(fd, receiver._drain)
    await sender.close()
    await receiver.close()
    assert [r for r in read_all(journal) if isinstance(r, Sample)] == records
    assert receiver.stats.lost == 0
    journal.close()
    return receiver


async def test_bursts_that_arrive_during_a_pause_are_read_and_the_socket_is_watched_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A slow "fastest link" makes any socket buffer large enough for the full pause.
    monkeypatch.setattr(receiver_module, "FASTEST_LINK", 1e6)
    receiver = await deliver_in_rounds(tmp_path)
    assert receiver._pause == receiver_module.RECEIVE_PAUSE


async def test_a_buffer_too_small_for_a_pause_is_read_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(receiver_module, "FASTEST_LINK", 1e15)
    receiver = await deliver_in_rounds(tmp_path)
    assert receiver._pause == 0.0
