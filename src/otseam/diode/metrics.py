"""The receiver's counters, and their Prometheus view (IT side only: the sender exports nothing).

The hot path increments plain integers; a collector turns them into metric families when scraped,
so a million datagrams cost a million additions, not a million lock acquisitions.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from otseam.diode.wire import Rejected


def _rejections() -> dict[Rejected, int]:
    return dict.fromkeys(Rejected, 0)


@dataclass(slots=True)
class ReceiverStats:
    datagrams: int = 0
    bytes: int = 0
    beacons: int = 0
    rejected: dict[Rejected, int] = field(default_factory=_rejections)
    #: Authentic datagrams from a sender not (yet) synchronised by a matching beacon.
    unsynchronised: int = 0
    #: Fragments beyond the k needed, duplicates, and fragments of blocks already released (not late ones).
    surplus: int = 0
    direct: int = 0
    recovered: int = 0
    undecodable: int = 0
    lost: int = 0
    gaps: int = 0
    bad_blocks: int = 0
    records: int = 0
    #: Bytes of decoded blocks released in order (the application payload the link carried).
    block_bytes: int = 0
    #: Wall-clock times of the first and the latest write of records to the journal.
    first_write: float = 0.0
    last_write: float = 0.0
    duplicates: int = 0
    snapshots: int = 0
    healed: int = 0
    sessions: int = 0
    mismatches: int = 0
    #: Datagrams that failed the MAC and were shaped like a beacon (part of rejected[MAC]).
    foreign_beacons: int = 0
    #: Authentic beacons not acted upon: a number already seen (a replay), or an unknown session whose
    #: sender clock is older than beacons already seen.
    replayed_beacons: int = 0
    stale_beacons: int = 0
    #: Blocks lost because they were sent while this receiver was not listening (part of ``lost``).
    missed_offline: int = 0
    #: Records written from blocks replayed on request (``seam diode replay``).
    replayed_records: int = 0
    link_up: bool = False
    lag_seconds: float = 0.0
    record_lag_seconds: float = 0.0
    #: Fragments that arrived for a block already given up (the link reordered beyond the window).
    late: int = 0
    #: The receiver's current reorder window, in seconds (it widens itself after a late fragment).
    reorder_window: float = 0.0
    #: Fraction of the parity used by recent recovered blocks (1.0 = the margin was exhausted).
    margin_used: deque[float] = field(default_factory=lambda: deque(maxlen=1024))

    def as_dict(self) -> dict[str, object]:
        """Plain values, for a JSON summary."""
        out: dict[str, object] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name == "rejected":
                value = {reason.name.lower(): count for reason, count in value.items()}
            elif name == "margin_used":
                name, value = "margin_used_max", self.margin_used_max
            out[name] = value
        return out

    @property
    def margin_used_max(self) -> float:
        return max(self.margin_used, default=0.0)


class ReceiverCollector(Collector):
    def __init__(self, stats: ReceiverStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        datagrams = CounterMetricFamily("seam_diode_datagrams", "Datagrams received, by outcome", labels=["outcome"])
        datagrams.add_metric(["received"], s.datagrams)
        for reason, count in s.rejected.items():
            datagrams.add_metric([f"rejected_{reason.name.lower()}"], count)
        datagrams.add_metric(["unsynchronised"], s.unsynchronised)
        datagrams.add_metric(["surplus"], s.surplus)
        datagrams.add_metric(["late"], s.late)
        yield datagrams
        block_family = CounterMetricFamily("seam_diode_blocks", "Blocks by outcome", labels=["outcome"])
        block_family.add_metric(["direct"], s.direct)
        block_family.add_metric(["recovered"], s.recovered)
        block_family.add_metric(["lost"], s.lost)
        block_family.add_metric(["undecodable"], s.undecodable)
        yield block_family
        yield CounterMetricFamily("seam_diode_gaps", "Unrecoverable gaps reported (diode.gap events)", value=s.gaps)
        yield CounterMetricFamily(
            "seam_diode_blocks_missed_offline",
            "Blocks sent while this receiver was not listening (before it started, while it restarted); part of lost",
            value=s.missed_offline,
        )
        beacons = CounterMetricFamily("seam_diode_beacons", "Authentic beacons by outcome", labels=["outcome"])
        beacons.add_metric(["accepted"], s.beacons)
        beacons.add_metric(["replayed"], s.replayed_beacons)
        beacons.add_metric(["stale_session"], s.stale_beacons)
        yield beacons
        yield CounterMetricFamily(
            "seam_diode_unauthenticated_beacons",
            "Datagrams shaped like a beacon that failed the MAC (also in rejected_mac)",
            value=s.foreign_beacons,
        )
        records = CounterMetricFamily("seam_diode_records", "Records by outcome", labels=["outcome"])
        records.add_metric(["written"], s.records)
        records.add_metric(["duplicate"], s.duplicates)
        records.add_metric(["healed_by_snapshot"], s.healed)
        records.add_metric(["replayed"], s.replayed_records)
        yield records
        yield CounterMetricFamily(
            "seam_diode_config_mismatches", "Beacons with a foreign configuration fingerprint", value=s.mismatches
        )
        yield GaugeMetricFamily(
            "seam_diode_fec_margin_used_max",
            "Largest fraction of parity needed by one of the last 1024 recovered blocks",
            value=s.margin_used_max,
        )
        yield GaugeMetricFamily(
            "seam_diode_reorder_window_seconds",
            "How long a block sent whole may wait for a fragment (widens after a late fragment)",
            value=s.reorder_window,
        )
        yield GaugeMetricFamily("seam_diode_link_up", "1 while beacons arrive", value=float(s.link_up))
        yield GaugeMetricFamily(
            "seam_diode_lag_seconds",
            "Receive time minus the sender's clock in the last beacon (includes clock offset)",
            value=s.lag_seconds,
        )
        yield GaugeMetricFamily(
            "seam_diode_record_lag_seconds",
            "Receive time minus the gateway timestamp of the newest sample written",
            value=s.record_lag_seconds,
        )


def registry_for(stats: ReceiverStats) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(ReceiverCollector(stats))
    return registry
