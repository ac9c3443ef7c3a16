"""A stream that cannot keep up is told so (resync), and what it holds stays bounded."""

from __future__ import annotations

import json
from pathlib import Path

from otseam.control.live import MAX_BYTES, Subscriber, values_message
from otseam.core.records import Quality, Sample


async def test_a_backlog_beyond_the_size_bound_becomes_one_resync() -> None:
    subscriber = Subscriber(None)
    message = b"x" * (1024 * 1024)
    offered = MAX_BYTES // len(message) + 5
    for _ in range(offered):
        subscriber.offer(message, 0.0)
        assert subscriber.size <= MAX_BYTES
    assert subscriber.behind
    assert await subscriber.wait(0.1)
    # Everything offered is either still waiting or counted as missed: nothing disappears unsaid.
    assert subscriber.take_missed() == offered
    assert not subscriber.behind and subscriber.size == 0


async def test_a_backlog_older_than_the_age_bound_becomes_one_resync() -> None:
    subscriber = Subscriber(None)
    subscriber.offer(b"first", 0.0)
    subscriber.offer(b"second", 1.0)
    assert not subscriber.behind
    subscriber.offer(b"late", 10.0)
    assert subscriber.behind
    subscriber.offer(b"after", 10.1)
    assert subscriber.take_missed() == 4


async def test_what_waits_is_written_at_once() -> None:
    subscriber = Subscriber(None)
    subscriber.offer(b"a", 0.0)
    subscriber.offer(b"b", 0.0)
    assert await subscriber.wait(0.1)
    assert subscriber.take() == b"ab"
    assert not await subscriber.wait(0.01)


async def test_close_ends_the_stream_before_anything_waiting() -> None:
    subscriber = Subscriber(None)
    subscriber.offer(b"data", 0.0)
    subscriber.close()
    assert await subscriber.wait(0.1)
    assert subscriber.closed and subscriber.take() == b""


def test_values_travel_in_groups_sharing_quality_and_timestamps_and_a_non_finite_number_is_null() -> None:
    samples = [
        Sample("d/a", 1.5, Quality.GOOD, 10.0, 10.5),
        Sample("d/b", "on", Quality.GOOD, 10.0, 10.5),
        Sample("d/c", 2, Quality.UNCERTAIN, 11.0, 11.5),
        Sample("d/d", float("nan"), Quality.GOOD, 12.0, 12.5),
    ]
    fast = values_message("values", samples[:3], 7)
    assert fast.startswith(b"id: 7\nevent: values\ndata: ") and fast.endswith(b"\n\n")
    assert json.loads(fast.split(b"data: ", 1)[1]) == [
        [int(Quality.GOOD), 10.0, 10.5, ["d/a", "d/b"], [1.5, "on"]],
        [int(Quality.UNCERTAIN), 11.0, 11.5, ["d/c"], [2]],
    ]
    slow = json.loads(values_message("values", samples, 8).split(b"data: ", 1)[1])
    assert slow[2] == [int(Quality.GOOD), 12.0, 12.5, ["d/d"], [None]]


def test_with_no_stream_open_the_hub_indexes_events_and_reads_no_values(tmp_path: Path) -> None:
    """A console nobody watches costs nothing per sample: batches move the offset, events still reach the
    alerts index, and no value is read out of a batch (columns included) until a stream opens."""
    from otseam.control.events import EventStore
    from otseam.control.live import LiveHub
    from otseam.core.columns import SampleColumns, encode
    from otseam.core.records import Event, Severity

    hub = LiveHub(None, EventStore(tmp_path))  # type: ignore[arg-type]  # the view is read for snapshots only
    samples = [Sample(f"plc/p{i}", float(i), Quality.GOOD, 1.0, 1.0) for i in range(50)]
    alert = Event(2.0, "alert", "MB-001", Severity.HIGH, "write from an unlisted master", {})
    columns = SampleColumns(encode("plc", list(range(50, 60)), samples[:10]), 10)

    def feed(first: int) -> None:
        hub._take(first, samples)
        hub._take(first + 50, [alert, columns])
        hub._drain()

    feed(1)
    assert hub.offset == 61 and hub.samples == 0
    assert [e["source"] for e in hub.events.list().items] == ["MB-001"]

    stream = hub.subscribe(None)
    feed(62)
    assert hub.offset == 122 and hub.samples == 50
    sent = stream.take().decode()
    assert "event: values" in sent and '"plc/p49"' in sent and "event: events" in sent
