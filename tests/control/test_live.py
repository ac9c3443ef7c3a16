"""A stream that cannot keep up is told so (resync), and what it holds stays bounded."""

from __future__ import annotations

from otseam.control.live import CLOSE, MAX_BYTES, Subscriber


async def test_a_backlog_beyond_the_size_bound_becomes_one_resync() -> None:
    subscriber = Subscriber(None)
    message = b"x" * (1024 * 1024)
    for _ in range(MAX_BYTES // len(message) + 5):
        subscriber.offer(message)
    assert subscriber.size <= MAX_BYTES
    assert subscriber.missed > 0
    first = await subscriber.get(0.1)
    assert first == b""  # the marker the stream handler turns into resync + snapshot
    while await subscriber.get(0.0) is not None:
        pass
    assert subscriber.size == 0


async def test_close_ends_the_stream_before_anything_waiting() -> None:
    subscriber = Subscriber(None)
    subscriber.offer(b"data")
    subscriber.close()
    assert await subscriber.get(0.1) is CLOSE
    assert await subscriber.get(0.01) is None
