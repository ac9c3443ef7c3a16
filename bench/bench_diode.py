"""The software data diode against pydiode, on the same path, with the same data volume and the same loss.

Paths: loopback (127.0.0.1), and two network namespaces joined by a veth pair (needs root; skipped
with a message otherwise). Loss: 0%, 1%, 5% random datagram loss, made by the lossy relay of the
test suite (seed 7, then 8, 9, ... for each --repeat; it drops the same datagrams whichever tool crosses it, and whether it forwards
them in batches or one by one), which sits in front of the receiver; at 0% there is no relay.

Seam: a sender process generates samples in memory and sends them with DiodeSender (1,472-byte
datagrams unless --datagram says otherwise, default FEC: k up to 64, 12.5% parity, at least 3; the
compiled hot path and kernel segmentation/coalescing unless --no-offload; a token-bucket rate of
--rate, default 1.8 Gbit/s on the wire, below what one receiving core sustains here: nothing can slow
a one-way sender down, so a deployment sets this below the receiver's capacity); the receiver is
`seam diode receive` writing a real IT journal. pydiode: `pydiode send` / `pydiode
receive` moving a file of exactly the size of Seam's payload, once with its Linux default of
65,507-byte datagrams and once with 1,472-byte datagrams (--pydiode-datagrams), each chunk sent
twice (its default redundancy) and --max-bitrate 3 Gbit/s (no effective limit).

Before every transfer, of either tool, the bench touches and frees about three times the payload of memory
(--cold leaves that out). On a virtual machine the first write to a guest page the host has never
backed costs a fault in the host, and a receiver's fresh page-cache pages are such pages until the
machine has used its memory once: writing 300 MB to a new file here took 0.4-1.0 CPU-s of system
time cold and 0.05-0.14 s, mostly, after 2 GB had been touched and freed (docs/bench/diode.md).
Which tool meets that cost first would otherwise depend on the order of the runs, not on the tool.

Figures per run: goodput (payload bits per second, from the sender's first datagram to the last
byte written on the IT side), points per second (Seam), residual loss, CPU seconds per side (Seam:
over the transfer only; pydiode: whole processes), payload per CPU-second of sender plus receiver,
and Seam's goodput as a multiple of each pydiode configuration's in the same loss and path.

    .venv/bin/python bench/bench_diode.py [--records N] [--value-size BYTES] [--datagram BYTES]
        [--rate 1.8Gbit/s] [--no-offload] [--paths loopback,netns] [--losses 0,0.01,0.05]
        [--pydiode-datagrams 65507,1472]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from bench.machine import returns_freed_memory  # noqa: E402

BIN = Path(sys.executable).parent
SEAM_RATE = "1.8Gbit/s"  # the default --rate: below what the receiver sustains here, as a deployment sets it
PYDIODE_BITRATE = str(3_000_000_000)


def cpu_description() -> str:
    """The CPU model and the flags that matter to the diode's hot paths (AES and carry-less multiply, also
    in their vector forms, for the MAC; AVX2/AVX-512/GFNI for ISA-L's Reed-Solomon; SHA extensions for
    the key derivation and the HMAC measured in bench_diode_mac.py)."""
    model, flags = "unknown", set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    wanted = ("aes", "pclmulqdq", "vaes", "vpclmulqdq", "avx2", "avx512f", "avx512bw", "gfni", "sha_ni")
    present = [f for f in wanted if f in flags]
    absent = [f for f in wanted if f not in flags]
    return f"{model}; flags: {' '.join(present) or '-'} (absent: {' '.join(absent) or '-'})"


# --- roles run as child processes ---------------------------------------------------------------


def warm_memory(size: int) -> float:
    """Touch ``size`` bytes of fresh memory and free it again; returns the seconds it took. The freed
    pages go back to the kernel's free lists, where the next writes to the page cache find them."""
    started = time.monotonic()
    buffer = bytearray(size)
    buffer[:: os.sysconf("SC_PAGE_SIZE")] = b"\x01" * len(range(0, size, os.sysconf("SC_PAGE_SIZE")))
    del buffer
    return time.monotonic() - started


def make_samples(count: int, value_size: int) -> tuple[list[int], list[Any]]:
    """Float samples, or (``value_size`` > 0) samples carrying text of that many characters each."""
    from otseam.core.records import Quality, Sample

    now = time.time()
    offsets = list(range(1, count + 1))
    text = "x" * value_size
    return offsets, [
        Sample(f"plc{o % 20}/p{o % 1000}", text or o * 0.5, Quality.GOOD, now, now + o * 1e-6) for o in offsets
    ]


def role_sender(args: argparse.Namespace) -> None:
    import asyncio

    from otseam.diode.config import DiodeSettings
    from otseam.diode.sender import DiodeSender

    offsets, records = make_samples(args.records, args.value_size)
    key = Path(args.key).read_bytes().strip()
    settings = DiodeSettings.from_options(
        {"rate": args.rate, "datagram_size": args.datagram, "offload": not args.no_offload}
    )
    host, port = args.target.rsplit(":", 1)

    async def main() -> dict[str, Any]:
        sender = DiodeSender((host, int(port)), key, settings, bind=args.bind)
        await sender.start()
        await asyncio.sleep(0.2)
        start, cpu = time.time(), time.process_time()
        for i in range(0, len(records), 5000):
            await sender.send_records("bench-edge", offsets[i : i + 5000], records[i : i + 5000])
        end, cpu = time.time(), time.process_time() - cpu
        await sender.close()
        s = sender.stats
        return {
            "start": start,
            "end": end,
            "cpu": cpu,
            "datagrams": s.datagrams,
            "bytes": s.bytes,
            "blocks": s.blocks,
            "retries": s.send_retries,
        }

    print(json.dumps(asyncio.run(main())), flush=True)


def role_pydiode(size: int, argv: list[str]) -> None:
    """pydiode itself, with its datagram size set to ``size`` before it is imported.

    pydiode has no option for it: the size is a module constant (65,507 on Linux; 1,472, one
    Ethernet frame, on macOS), so this sets the constant exactly as pydiode does on macOS.
    """
    import pydiode.common as common

    common.UDP_MAX_BYTES = size
    common.MAX_PAYLOAD = size - common.PACKET_HEADER.size
    from pydiode.pydiode import main as pydiode_main

    sys.argv = ["pydiode", *argv]
    pydiode_main()


def role_relay(args: argparse.Namespace) -> None:
    from tests.diode.relay import Impairments, LossyRelay

    host, port = args.listen.rsplit(":", 1)
    thost, tport = args.target.rsplit(":", 1)
    relay = LossyRelay(
        (thost, int(tport)),
        Impairments(drop=args.drop, spare_beacons=False, seed=args.seed),
        listen=(host, int(port)),
        keep_truth=False,
        batched=not args.relay_one_by_one,
    )
    stop = False

    def finish(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, finish)
    with relay:
        print("ready", flush=True)
        while not stop:
            time.sleep(0.05)
    t = relay.truth
    print(json.dumps({"forwarded": t.forwarded, "dropped": t.dropped}), flush=True)


# --- the orchestration ----------------------------------------------------------------------------


def cpu_of(process: subprocess.Popen[bytes], timeout: float) -> float:
    """Wait for a child and return the CPU seconds it used (user + system), from wait4."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return float(usage.ru_utime + usage.ru_stime)
        if time.monotonic() > deadline:
            process.kill()
            deadline = time.monotonic() + 5
        time.sleep(0.02)


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    return cpu_ticks(pid) / TICK


def wait_until_idle(pid: int, quiet: float = 1.0, timeout: float = 120.0) -> None:
    """Until the process has used no CPU for ``quiet`` seconds (its backlog is done)."""
    deadline = time.monotonic() + timeout
    last, since = cpu_ticks(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now_ticks = cpu_ticks(pid)
        if now_ticks - last > 1:  # the 100 ms beacon tick costs well under a tick
            last, since = now_ticks, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return


def wait_for(path: Path, text: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{text!r} not seen in {path}")


class Path_:
    """Where the two sides live: plain loopback, or two namespaces."""

    def __init__(self, name: str, ot_ns: str | None = None, it_ns: str | None = None) -> None:
        self.name, self.ot_ns, self.it_ns = name, ot_ns, it_ns
        self.it_address = "10.203.77.2" if it_ns else "127.0.0.1"
        self.ot_address = "10.203.77.1" if ot_ns else "127.0.0.1"

    def ot(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ot_ns, *argv] if self.ot_ns else argv

    def it(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.it_ns, *argv] if self.it_ns else argv


RELAY_OPTIONS: list[str] = []


def start_relay(
    path: Path_, work: Path, loss: float, listen_port: int, target_port: int, seed: int
) -> subprocess.Popen[bytes]:
    log = work / f"relay-{listen_port}.log"
    relay = subprocess.Popen(
        path.it([sys.executable, __file__, "--role", "relay", "--listen", f"{path.it_address}:{listen_port}",
                 "--target", f"127.0.0.1:{target_port}", "--drop", str(loss), "--seed", str(seed), *RELAY_OPTIONS]),
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    wait_for(log, "ready")
    return relay


def run_seam(
    path: Path_,
    work: Path,
    key: Path,
    records: int,
    loss: float,
    datagram: int,
    value_size: int,
    seed: int,
    rate: str = SEAM_RATE,
    offload: bool = True,
) -> dict[str, Any]:
    tag = secrets.token_hex(3)
    receive_port, relay_port = 7400, 7401
    stats_file, log = work / f"seam-{tag}.json", work / f"seam-{tag}.log"
    listen = f"127.0.0.1:{receive_port}" if loss else f"{path.it_address}:{receive_port}"
    receiver = subprocess.Popen(
        path.it([str(BIN / "seam"), "diode", "receive", "--journal", str(work / "journals" / f"it-{tag}"), "--listen", listen,
                 "--key-file", str(key), "--datagram-size", str(datagram), "--stats-file", str(stats_file),
                 *([] if offload else ["--no-offload"])]),
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    wait_for(log, "listening on")
    relay = start_relay(path, work, loss, relay_port, receive_port, seed) if loss else None
    target = f"{path.it_address}:{relay_port if loss else receive_port}"
    receiver_before = cpu_seconds(receiver.pid)
    relay_before = cpu_seconds(relay.pid) if relay else 0.0
    sender = subprocess.Popen(
        path.ot([sys.executable, __file__, "--role", "sender", "--target", target, "--key", str(key),
                 "--records", str(records), "--datagram", str(datagram), "--bind", path.ot_address,
                 "--rate", rate, *([] if offload else ["--no-offload"]),
                 "--value-size", str(value_size)]),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    sender_cpu = cpu_of(sender, 300)
    assert sender.stdout is not None
    sent = json.loads(sender.stdout.read().decode().strip().splitlines()[-1])
    wait_until_idle(receiver.pid)  # a receiver that lags behind is still working: let it finish
    receiver_transfer = cpu_seconds(receiver.pid) - receiver_before
    relay_transfer = 0.0
    if relay:
        relay_transfer = cpu_seconds(relay.pid) - relay_before
        relay.send_signal(signal.SIGTERM)
        cpu_of(relay, 10)
    receiver.send_signal(signal.SIGTERM)
    receiver_cpu = cpu_of(receiver, 20)
    stats = json.loads(stats_file.read_text())
    elapsed = max(stats["last_write"] - sent["start"], 1e-9)
    return {
        "tool": "seam",
        "goodput_mbit": stats["block_bytes"] * 8 / elapsed / 1e6,
        "wire_mbit": sent["bytes"] * 8 / max(sent["end"] - sent["start"], 1e-9) / 1e6,
        "points_per_s": stats["records"] / elapsed,
        "residual_loss": 1 - stats["records"] / records,
        "payload_bytes": stats["block_bytes"],
        "seconds": elapsed,
        "cpu_sender": sender_cpu,
        "cpu_receiver": receiver_cpu,
        "cpu_sender_transfer": sent["cpu"],
        "cpu_receiver_transfer": receiver_transfer,
        "cpu_relay_transfer": relay_transfer,
        "send_retries": sent["retries"],
        "recovered_blocks": stats["recovered"],
        "lost_blocks": stats["lost"],
        "datagrams_sent": sent["datagrams"],
    }


def pydiode_command(datagram: int, argv: list[str]) -> list[str]:
    return [sys.executable, __file__, "--role", "pydiode", str(datagram), *argv]


def run_pydiode(
    path: Path_, work: Path, size: int, loss: float, datagram: int, seed: int, warm: int = 0
) -> dict[str, Any]:
    tag = secrets.token_hex(3)
    receive_port, relay_port = 7500, 7501
    (work / "journals").mkdir(exist_ok=True)
    data = work / "journals" / f"pyd-in-{tag}"
    data.write_bytes(os.urandom(size))
    warmed = warm_memory(warm) if warm else 0.0  # after the input file, which takes fresh pages of its own
    out = work / "journals" / f"pyd-out-{tag}"
    receive_ip = "127.0.0.1" if loss else path.it_address
    receiver = subprocess.Popen(
        path.it(pydiode_command(datagram, ["receive", receive_ip, "--port", str(receive_port)])),
        stdout=out.open("wb"), stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.8)  # pydiode prints nothing when ready; its start-up is well under this
    relay = start_relay(path, work, loss, relay_port, receive_port, seed) if loss else None
    start = time.time()
    sender = subprocess.Popen(
        path.ot(pydiode_command(datagram, ["send", path.it_address, path.ot_address,
                 "--port", str(relay_port if loss else receive_port), "--max-bitrate", PYDIODE_BITRATE])),
        stdin=data.open("rb"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    sender_cpu = cpu_of(sender, 300)
    receiver_cpu = cpu_of(receiver, 5)  # pydiode's receiver exits by itself once the transfer ends; else killed
    end = time.time() if receiver.returncode == 0 else float("nan")
    if relay:
        relay.send_signal(signal.SIGTERM)
        cpu_of(relay, 10)
    received = out.read_bytes()
    complete = received == data.read_bytes()
    elapsed = end - start
    return {
        "tool": f"pydiode/{datagram}",
        "goodput_mbit": size * 8 / elapsed / 1e6 if complete else 0.0,
        "residual_loss": 0.0 if complete else 1.0,  # a file either arrives whole or it does not
        "received_bytes": len(received),
        "payload_bytes": size,
        "seconds": elapsed,
        "cpu_sender": sender_cpu,
        "cpu_receiver": receiver_cpu,
        "receiver_exit": receiver.returncode,
        "warm_up_seconds": warmed,
    }


@contextlib.contextmanager
def netns_path() -> Any:
    from tests.diode.test_one_way_netns import namespace_pair, run

    with namespace_pair() as (ot, it, _ot_dev, _it_dev):
        run("ip", "-n", it, "link", "set", "lo", "up")
        run("ip", "-n", ot, "link", "set", "lo", "up")
        yield Path_("netns", ot, it)


def _row_figures(r: dict[str, Any]) -> dict[str, float]:
    send_cpu = r.get("cpu_sender_transfer", r["cpu_sender"])
    receive_cpu = r.get("cpu_receiver_transfer", r["cpu_receiver"])
    delivered = r["residual_loss"] < 1
    return {
        "goodput": r["goodput_mbit"],
        "points": r.get("points_per_s", 0.0),
        "residual": r["residual_loss"],
        "send_cpu": send_cpu,
        "receive_cpu": receive_cpu,
        "relay_cpu": r.get("cpu_relay_transfer", 0.0),
        "per_cpu": r["payload_bytes"] * 8 / 1e6 / max(send_cpu + receive_cpu, 1e-9) if delivered else 0.0,
        "failed": 0.0 if delivered else 1.0,
    }


def summarise(results: list[dict[str, Any]]) -> None:
    """One line per path, loss and tool: the median of the repeats (a failed transfer counts as 0 Mbit/s),
    with the range of goodput when there was more than one run."""
    groups: dict[tuple[str, float, str], list[dict[str, float]]] = {}
    for r in results:
        groups.setdefault((r["path"], r["loss"], r["tool"]), []).append(_row_figures(r))

    def median(rows: list[dict[str, float]], name: str) -> float:
        return float(statistics.median(row[name] for row in rows))

    print()
    print(f"{'path':9} {'loss':>5} {'tool':14} {'runs':>4} {'Mbit/s':>8} {'range':>13} {'points/s':>10} "
          f"{'residual':>9} {'failed':>6} {'cpu send':>8} {'cpu recv':>8} {'cpu relay':>9} {'Mbit/cpu-s':>10}  vs Seam")  # fmt: skip
    for (path, loss, tool), rows in groups.items():
        goodput = median(rows, "goodput")
        low, high = min(row["goodput"] for row in rows), max(row["goodput"] for row in rows)
        seam_rows = groups.get((path, loss, "seam"))
        # Per CPU-second over the runs that delivered (a failed transfer delivered nothing to divide).
        delivered = [row for row in rows if not row["failed"]]
        per_cpu = median(delivered, "per_cpu") if delivered else 0.0
        ratio = ""
        if tool != "seam" and seam_rows:
            ratio = f"Seam {median(seam_rows, 'goodput') / goodput:.2f}x" if goodput > 0 else "peer failed"
            seam_delivered = [row for row in seam_rows if not row["failed"]]
            if per_cpu and seam_delivered:
                ratio += f"; per CPU-s Seam {median(seam_delivered, 'per_cpu') / per_cpu:.2f}x"
        points = f"{median(rows, 'points'):,.0f}" if tool == "seam" else "-"
        failed = sum(int(row["failed"]) for row in rows)
        print(f"{path:9} {loss:>5.0%} {tool:14} {len(rows):>4} {goodput:>8.1f} {f'{low:.0f}-{high:.0f}':>13} {points:>10} "
              f"{max(row['residual'] for row in rows):>9.2%} {failed:>6} {median(rows, 'send_cpu'):>8.2f} "
              f"{median(rows, 'receive_cpu'):>8.2f} {median(rows, 'relay_cpu'):>9.2f} {per_cpu:>10.0f}  {ratio}")  # fmt: skip
    print(
        "Medians over the runs; residual is the worst run; failed counts pydiode transfers that did not arrive whole. "
        "cpu: seconds of each process; for Seam over the transfer only (start-up and sample generation excluded; "
        "with start-up: see the JSON lines), for pydiode the whole process. Mbit/cpu-s: payload per CPU-second "
        "of sender plus receiver, median of the runs that delivered."
    )


def main() -> int:
    if sys.argv[1:3] == ["--role", "pydiode"]:
        role_pydiode(int(sys.argv[3]), sys.argv[4:])
        return 0
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", default="main")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--datagram", type=int, default=1472)
    parser.add_argument("--rate", default=SEAM_RATE, help="Seam's wire rate limit (token bucket), e.g. 1.4Gbit/s")
    parser.add_argument("--no-offload", action="store_true", help="no UDP GSO/GRO on either side")
    parser.add_argument("--value-size", type=int, default=0, help="text values of this size (bulk workload)")
    parser.add_argument("--paths", default="loopback,netns")
    parser.add_argument("--losses", default="0,0.01,0.05")
    parser.add_argument("--pydiode-datagrams", default="65507,1472", help="pydiode runs, by datagram size")
    parser.add_argument("--target", default="")
    parser.add_argument("--listen", default="")
    parser.add_argument("--key", default="")
    parser.add_argument("--bind", default=None)
    parser.add_argument("--drop", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-pydiode", action="store_true")
    parser.add_argument(
        "--cold", action="store_true", help="no memory warm-up before each transfer (see the module's text)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of each configuration (medians reported)")
    parser.add_argument(
        "--relay-one-by-one", action="store_true", help="the lossy relay forwards one datagram per system call"
    )
    args = parser.parse_args()
    if args.role == "sender":
        role_sender(args)
        return 0
    if args.role == "relay":
        role_relay(args)
        return 0

    if args.relay_one_by_one:
        RELAY_OPTIONS.append("--relay-one-by-one")
    print(f"machine: {os.cpu_count()} cores; load: {Path('/proc/loadavg').read_text().split()[:3]}", flush=True)
    print(f"CPU: {cpu_description()}", flush=True)
    if returns_freed_memory():  # see bench/machine.py and docs/bench/diode.md: quote medians of several runs
        print("memory: this machine's balloon returns freed memory to the host; single runs swing", flush=True)
    print(f"started {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}", flush=True)
    print(f"Seam: rate limit {args.rate}, kernel offload {'off' if args.no_offload else 'on'}, "
          f"datagrams of {args.datagram} bytes", flush=True)  # fmt: skip
    print("memory: cold (no warm-up)" if args.cold else "memory: about three times the payload touched and freed before each transfer",
          flush=True)  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="seam-bench-diode-"))
    key = work / "key"
    key.write_text(secrets.token_hex(32))
    losses = [float(x) for x in args.losses.split(",")]
    peer_sizes = [] if args.skip_pydiode else [int(x) for x in args.pydiode_datagrams.split(",")]
    results: list[dict[str, Any]] = []
    for path_name in args.paths.split(","):
        if path_name == "netns" and os.geteuid() != 0:
            print("netns: skipped (needs root to create network namespaces)")
            continue
        context = netns_path() if path_name == "netns" else contextlib.nullcontext(Path_("loopback"))
        with context as path:
            for loss in losses:
                for repeat in range(args.repeat):
                    seed = 7 + repeat  # each repeat its own drop pattern, the same for every tool
                    warm = 0 if args.cold else max(3 * args.records * max(args.value_size, 32), 256 << 20)
                    warmed = warm_memory(warm) if warm else 0.0
                    seam = run_seam(
                        path, work, key, args.records, loss, args.datagram, args.value_size, seed,
                        rate=args.rate, offload=not args.no_offload,
                    )  # fmt: skip
                    seam.update(path=path.name, loss=loss, rate=args.rate, offload=not args.no_offload,
                                warmed_bytes=warm, warm_up_seconds=warmed)  # fmt: skip
                    results.append(seam)
                    print(json.dumps(seam), flush=True)
                    for size in peer_sizes:
                        peer = run_pydiode(path, work, seam["payload_bytes"], loss, size, seed, warm)
                        peer.update(path=path.name, loss=loss, warmed_bytes=warm)
                        results.append(peer)
                        print(json.dumps(peer), flush=True)
                    shutil.rmtree(work / "journals", ignore_errors=True)
    summarise(results)
    print(f"load after: {Path('/proc/loadavg').read_text().split()[:3]}")
    print(f"ended {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
