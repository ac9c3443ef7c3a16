"""Plots of bench_peers.py's result.json; run by it with a matplotlib of its own venv (bench/out/).

python bench/peers_plot.py bench/out/peers/result.json docs/bench/
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLOURS = {"seam": "#1f6feb", "thingsboard": "#d9822b", "node-red": "#8f1d21"}
LABELS = {"seam": "Seam", "thingsboard": "ThingsBoard gateway", "node-red": "Node-RED"}


def grouped(ax: Any, results: list[dict[str, Any]], key: str, polls: list[int], gateways: list[str]) -> None:
    width = 0.8 / len(gateways)
    for i, gateway in enumerate(gateways):
        values = []
        for poll in polls:
            found = [r.get(key) for r in results if r["gateway"] == gateway and r["poll_ms"] == poll]
            values.append(found[0] if found and found[0] is not None else 0)
        xs = [p + (i - (len(gateways) - 1) / 2) * width for p in range(len(polls))]
        bars = ax.bar(xs, values, width, label=LABELS.get(gateway, gateway), color=COLOURS.get(gateway))
        ax.bar_label(bars, labels=[f"{v:,.0f}" if v else "–" for v in values], fontsize=7, padding=2)
    ax.set_xticks(range(len(polls)), [f"poll {p} ms" for p in polls])


def legend_below(fig: Any, ax: Any) -> None:
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 0.94))


def main() -> int:
    report = json.loads(Path(sys.argv[1]).read_text())
    folder = Path(sys.argv[2])
    folder.mkdir(parents=True, exist_ok=True)
    results = [r for r in report["results"] if "error" not in r]
    polls = sorted({r["poll_ms"] for r in results}, reverse=True)
    gateways = [g for g in COLOURS if any(r["gateway"] == g for r in results)]
    tags = report["devices"] * report["points_per_device"]
    subtitle = (
        f"{report['devices']} PLCs x {report['points_per_device']} tags, every value new every poll; {report['date']}"
    )

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    grouped(left, results, "updates_per_cpu_s", polls, gateways)
    left.set_yscale("log")
    left.set_ylabel("updates per CPU-second (log)")
    left.set_title("Efficiency: updates delivered per CPU-second")
    grouped(right, results, "updates_per_s", polls, gateways)
    right.set_ylabel("updates per second")
    right.axhline(tags, color="grey", lw=0.8, ls=":")
    right.set_title("Throughput: updates delivered per second")
    legend_below(fig, left)
    fig.suptitle(subtitle, fontsize=9)
    fig.savefig(folder / "peers-throughput.png", dpi=110)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, prefix, title in (
        (axes[0], "latency_", "From the PLC's change (includes the polling phase)"),
        (axes[1], "read_latency_", "From the read that showed the change"),
    ):
        grouped(ax, results, prefix + "p99_ms", polls, gateways)
        ax.set_yscale("log")
        ax.set_ylabel("ms to the subscriber, p99 bars, p50 dots (log)")
        ax.set_title(title, fontsize=10)
        width = 0.8 / len(gateways)
        for i, gateway in enumerate(gateways):
            for n, poll in enumerate(polls):
                found = [r.get(prefix + "p50_ms") for r in results if r["gateway"] == gateway and r["poll_ms"] == poll]
                if found and found[0]:
                    ax.plot(n + (i - (len(gateways) - 1) / 2) * width, found[0], "ko", ms=4)
    legend_below(fig, axes[0])
    fig.suptitle(subtitle, fontsize=9)
    fig.savefig(folder / "peers-latency.png", dpi=110)

    outages = [r for r in results if r.get("outage")]
    if outages:
        fig, ax = plt.subplots(figsize=(8.5, 4.4))
        names = [LABELS.get(r["gateway"], r["gateway"]) for r in outages]
        got = [r["outage"]["changes_delivered"] for r in outages]
        lost = [r["outage"]["changes_lost"] for r in outages]
        never = [r["outage"].get("changes_never_read", 0) for r in outages]
        ax.bar(names, got, color=[COLOURS.get(r["gateway"]) for r in outages], label="delivered")
        bars = ax.bar(names, lost, bottom=got, color="#cccccc", hatch="//", label="read, never arrived")
        ax.bar_label(bars, labels=[f"lost {v:,}" for v in lost], fontsize=8)
        base = [g + v for g, v in zip(got, lost, strict=True)]
        ax.bar(
            names, never, bottom=base, color="#f2f2f2", edgecolor="#999999", label="not read (poll missed the cycle)"
        )
        ax.set_ylim(0, 1.15 * max(g + v + n for g, v, n in zip(got, lost, never, strict=True)))
        ax.set_ylabel("tag changes made while the broker was down")
        seconds = outages[0]["outage"]["seconds"]
        ax.set_title(f"Broker down for {seconds:.0f} s at a {outages[0]['poll_ms']} ms poll: what arrived")
        legend_below(fig, ax)
        fig.suptitle(subtitle, fontsize=9)
        fig.savefig(folder / "peers-outage.png", dpi=110)
    print(f"plots: {folder}/peers-throughput.png, peers-latency.png" + (", peers-outage.png" if outages else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
