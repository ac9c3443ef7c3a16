"""Passive monitoring throughput: packets per second per core, ours against tshark, on the same capture.

Generates a classic pcap of Modbus/TCP polling (request/response pairs over several connections, with a
handful of writes, diagnostics and exceptions so that the detectors have work), then times, in the same
run, on one core each:

* ``seam``'s analyser over the whole file (the capture fast path, alerts and inventory included), as
  classic pcap and as pcapng (the same file converted by Wireshark's editcap),
* the per-frame analyser on a slice of the file (what ``--transactions`` and live capture use),
* ``tshark -r FILE -Y modbus -T fields -e frame.number -e mbtcp.trans_id -e mbtcp.unit_id
  -e modbus.func_code`` over the whole file, output discarded.

Run: ``.venv/bin/python bench/bench_monitor.py [--packets 2000000]``. Bounded: about two minutes on a
2-core machine with the default size.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from otseam.monitor.analyzers.modbus.fastpath import analyse_pcap
from otseam.monitor.capture import CaptureStats, read_capture
from otseam.monitor.engine import Monitor

_PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
_RECORD = struct.Struct("<IIII")
_IP_TCP = struct.Struct("!BBHHHBBH4s4sHHIIBBHHH")


def generate(path: Path, packets: int, connections: int = 16) -> None:
    """Write ``packets`` frames: ``connections`` masters polling one PLC each, request then response."""
    eth = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
    plc_base = 0x0A000100
    conns = []
    for i in range(connections):
        master = socket.inet_aton(f"10.0.0.{10 + i}")
        plc = struct.pack("!I", plc_base + i)
        conns.append([master, plc, 40000 + i, 1000, 5000])
    regs = struct.pack("!10H", *range(100, 110))
    t0 = 1_700_000_000.0
    with open(path, "wb") as out:
        out.write(_PCAP_HEADER)
        chunk: list[bytes] = []
        for k in range(packets // 2):
            c = conns[k % connections]
            master, plc, cport, cseq, sseq = c
            tid = k & 0xFFFF
            if k % 5000 == 4999:  # an occasional write: MB-019 stays quiet, MB-001 needs an allow-list
                req_pdu = struct.pack("!BHH", 6, 40, k & 0xFF)
                resp_pdu = req_pdu
            elif k % 20000 == 2500:  # a rare exception: a detector has to look at it
                req_pdu = struct.pack("!BHH", 3, 9000, 10)
                resp_pdu = b"\x83\x02"
            else:
                fc = 3 if k % 4 else 4
                req_pdu = struct.pack("!BHH", fc, (k * 7) % 200, 10)
                resp_pdu = struct.pack("!BB", fc, 20) + regs
            req = struct.pack("!HHHB", tid, 0, len(req_pdu) + 1, 1) + req_pdu
            resp = struct.pack("!HHHB", tid, 0, len(resp_pdu) + 1, 1) + resp_pdu
            for payload, src, dst, sp, dp, seq in (
                (req, master, plc, cport, 502, cseq),
                (resp, plc, master, 502, cport, sseq),
            ):
                total = 40 + len(payload)
                frame = (
                    eth
                    + _IP_TCP.pack(
                        0x45, 0, total, 0, 0x4000, 64, 6, 0, src, dst, sp, dp, seq, 1, 0x50, 0x18, 65535, 0, 0
                    )
                    + payload
                )
                ts = t0 + (2 * k + (payload is resp)) * 0.0001
                sec = int(ts)
                chunk.append(_RECORD.pack(sec, int((ts - sec) * 1e6), len(frame), len(frame)) + frame)
            c[3] = (cseq + len(req)) & 0xFFFFFFFF
            c[4] = (sseq + len(resp)) & 0xFFFFFFFF
            if len(chunk) >= 65536:
                out.write(b"".join(chunk))
                chunk.clear()
        out.write(b"".join(chunk))


def time_fast(path: Path) -> tuple[float, float, Monitor]:
    """Wall time and CPU time of this process: on a shared machine the CPU time is the per-core figure."""
    monitor = Monitor(keep_records=False)
    wall, cpu = time.perf_counter(), time.process_time()
    data = path.read_bytes()
    assert analyse_pcap(monitor, data, CaptureStats())
    monitor.finish()
    return time.perf_counter() - wall, time.process_time() - cpu, monitor


def cpu_model() -> str:
    """The CPU's model name and the vector flags that matter here, from /proc/cpuinfo."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    vector = [f for f in ("sse4_2", "avx", "avx2", "avx512f", "pclmulqdq") if f in flags]
    return f"{model} (flags: {' '.join(vector) or 'none of sse4_2/avx/avx2/avx512f'})"


def time_per_frame(path: Path, limit: int) -> tuple[float, float, int]:
    monitor = Monitor(keep_records=False)
    count = 0
    start, cpu = time.perf_counter(), time.process_time()
    for frame in read_capture(path):
        monitor.process(frame)
        count += 1
        if count >= limit:
            break
    monitor.finish()
    return time.perf_counter() - start, time.process_time() - cpu, count


def time_tshark(path: Path) -> tuple[float, float, int]:
    """Wall time, CPU time of tshark (its children's rusage) and its number of output lines."""
    binary = shutil.which("tshark")
    if binary is None:
        raise SystemExit("tshark is not installed: apt-get install tshark")
    command = [
        binary,
        "-r",
        str(path),
        "-Y",
        "modbus",
        "-T",
        "fields",
        "-e",
        "frame.number",
        "-e",
        "mbtcp.trans_id",
        "-e",
        "mbtcp.unit_id",
        "-e",
        "modbus.func_code",
    ]
    before = os.times()
    start = time.perf_counter()
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True)
    elapsed = time.perf_counter() - start
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return elapsed, cpu, result.stdout.count(b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=2_000_000)
    parser.add_argument("--per-frame-sample", type=int, default=200_000)
    parser.add_argument(
        "--tshark-packets",
        type=int,
        default=50_000,
        help="tshark's Modbus dissector slows down as a capture grows; it is timed on prefixes",
    )
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core: the figures are per core
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} cores, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the start"
    )
    with tempfile.TemporaryDirectory(prefix="seam-bench-monitor-") as tmp:
        path = Path(tmp) / "modbus.pcap"
        start = time.perf_counter()
        generate(path, args.packets)
        print(
            f"capture: {args.packets:,} packets, {path.stat().st_size / 1e6:.0f} MB, generated in {time.perf_counter() - start:.1f} s"
        )
        wall, cpu, monitor = time_fast(path)
        frames = monitor.stats.frames
        print(
            f"seam fast path, whole capture: {frames:,} frames in {wall:.2f} s wall, {cpu:.2f} s CPU = "
            f"{frames / cpu:,.0f} packets/s per core (CPU), {frames / wall:,.0f} (wall); "
            f"{monitor.stats.modbus_messages:,} Modbus messages, {monitor.stats.transactions:,} transactions, "
            f"alerts: {sorted({a.rule.id for a in monitor.detector.alerts})}"
        )
        pcapng = Path(tmp) / "modbus.pcapng"
        subprocess.run(["editcap", "-F", "pcapng", str(path), str(pcapng)], check=True, capture_output=True)
        ng_wall, ng_cpu, ng_monitor = time_fast(pcapng)
        assert ng_monitor.stats.frames == frames and ng_monitor.stats.transactions == monitor.stats.transactions
        print(
            f"seam fast path, the same capture as pcapng: {frames / ng_cpu:,.0f} packets/s per core (CPU), "
            f"{frames / ng_wall:,.0f} (wall)"
        )
        _slow_wall, slow_cpu, slow_n = time_per_frame(path, args.per_frame_sample)
        print(f"seam per-frame path, first {slow_n:,} frames: {slow_n / slow_cpu:,.0f} packets/s per core (CPU)")
        version = subprocess.run(["tshark", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
        for size in (args.tshark_packets // 2, args.tshark_packets):
            prefix = Path(tmp) / f"prefix-{size}.pcap"
            generate(prefix, size)
            t_wall, t_cpu, lines = time_tshark(prefix)
            _o_wall, o_cpu, _m = time_fast(prefix)
            print(
                f"{version}, first {size:,} packets: {size / t_cpu:,.0f} packets/s per core (CPU, {t_wall:.2f} s wall, "
                f"{lines:,} Modbus lines); seam on the same file: {size / o_cpu:,.0f} packets/s (CPU) = "
                f"{t_cpu / o_cpu:.0f}x"
            )
        print(
            f"seam whole capture vs tshark on {args.tshark_packets:,}: {(frames / cpu) / (args.tshark_packets / t_cpu):.0f}x per core"
        )
        print(f"machine: load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
