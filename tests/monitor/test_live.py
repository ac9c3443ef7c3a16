"""Live capture on an interface (AF_PACKET): `seam watch --iface lo` sees real Modbus/TCP traffic.

Everything happens on the loopback of a network namespace the module creates, never on the machine's
own `lo`: there a capture also sees every other test's and process's traffic, and under load that
flood made a watcher miss its alert. The traffic is a raw-socket master talking to pymodbus' server
on a non-standard port passed with --modbus-port. Frames injected on lo with an AF_PACKET socket
(addressed to a MAC address lo does not have, so the kernel's IP stack ignores them) stand in for what
a span port would show: a flood, a conflicting retransmission.
"""

from __future__ import annotations

import asyncio
import json
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from otseam.monitor.capture import Frame
from otseam.monitor.engine import Monitor
from otseam.monitor.live import LiveCapture, tcp_filter
from tests.monitor.conftest import REPO
from tests.monitor.pcapgen import ACK, SYN, Conversation, frame, mbap
from tests.support.netns import enter_namespace, in_namespace, loopback_namespace
from tests.support.output import OutputLines
from tests.support.wait import wait_until

INJECT_FROM, INJECT_TO = "127.0.0.61", "127.0.0.62"
MODBUS_PORT = 1502  # not 502: --modbus-port must be what makes the watcher decode it


@pytest.fixture(scope="module")
def namespace() -> Iterator[str]:
    with loopback_namespace() as name:
        yield name


def capture(namespace: str, receive_buffer: int) -> LiveCapture:
    return in_namespace(namespace, lambda: LiveCapture("lo", receive_buffer=receive_buffer))


def request(sock: socket.socket, tid: int, pdu: bytes) -> bytes:
    sock.sendall(struct.pack("!HHHB", tid, 0, len(pdu) + 1, 1) + pdu)
    sock.settimeout(5)
    return sock.recv(300)


def start_watch(namespace: str) -> subprocess.Popen[bytes]:
    seam = Path(sys.executable).parent / "seam"
    watch = ["watch", "--iface", "lo", "--modbus-port", str(MODBUS_PORT), "--format", "jsonl", "--duration", "60"]
    return subprocess.Popen(
        ["ip", "netns", "exec", namespace, str(seam), *watch],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        # As a shell without job control starts a background job: SIGINT ignored. The watcher must still
        # stop on it, cleanly (it installs its own handler, as seam run does).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )


class ServerInNamespace:
    """pymodbus' server on the namespace's loopback, on an event loop of its own in a thread that
    entered the namespace first (its listening socket belongs to the namespace)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.loop = asyncio.new_event_loop()
        self.listening = threading.Event()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, name="modbus server in namespace")

    def _serve(self) -> None:
        try:
            enter_namespace(self.namespace)
            asyncio.set_event_loop(self.loop)
            server = self.loop.run_until_complete(self._start())
        except BaseException as exc:  # seen by the test through the listening wait
            self.failure = exc
            self.listening.set()
            return
        self.listening.set()
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(server.shutdown())
            self.loop.close()

    @staticmethod
    async def _start() -> ModbusTcpServer:  # pymodbus builds its server on a running loop
        plc = SimDevice(1, simdata=[SimData(0, values=[7, 8, 9], datatype=DataType.REGISTERS)])
        server = ModbusTcpServer([plc], address=("127.0.0.1", MODBUS_PORT))
        await server.serve_forever(background=True)
        return server

    def __enter__(self) -> ServerInNamespace:
        self.thread.start()
        wait_until(self.listening.is_set, "the Modbus server in the namespace to listen")
        if self.failure is not None:
            raise self.failure
        return self

    def __exit__(self, *_exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


def test_watch_a_live_interface(namespace: str) -> None:
    watcher = start_watch(namespace)
    try:
        assert watcher.stderr is not None and watcher.stdout is not None
        ready = watcher.stderr.readline()
        printed = OutputLines(watcher.stdout)
        assert b"capturing on lo" in ready, ready + watcher.stderr.read()

        def talk() -> list[bytes]:
            with socket.create_connection(("127.0.0.1", MODBUS_PORT), timeout=5) as sock:
                return [
                    request(sock, 1, struct.pack("!BHH", 3, 0, 3)),
                    request(sock, 2, struct.pack("!BHH", 8, 1, 0)),  # restart communications
                ]

        with ServerInNamespace(namespace):
            replies = in_namespace(namespace, talk)
        assert replies[0][7] == 3
        wait_until(lambda: printed.has('"MB-004"'), "the restart alert", detail=printed.so_far)
        watcher.send_signal(signal.SIGINT)  # Ctrl-C: stop watching, cleanly
        _out, err = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    assert watcher.returncode == 0, err
    alerts = [json.loads(line) for line in printed.text().splitlines()]
    restart = [a for a in alerts if a["rule"] == "MB-004"]
    assert restart, alerts
    assert restart[0]["src"] == "127.0.0.1" and restart[0]["dport"] == MODBUS_PORT and restart[0]["function"] == 8
    assert restart[0]["frame"] >= 1
    assert b"TCP packets passed the capture filter" in err, err  # drops depend on the load: counted, not asserted


def injector(namespace: str) -> socket.socket:
    def bound() -> socket.socket:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        sock.bind(("lo", 0))
        return sock

    return in_namespace(namespace, bound)


def udp_frame(payload: bytes) -> bytes:
    tcp = frame(INJECT_FROM, INJECT_TO, 40000, 502, 1, ACK, payload)
    return tcp[:23] + b"\x11" + tcp[24:]  # IPv4 protocol 17: UDP (the rest does not matter to the filter)


def ours(data: bytes) -> bool:
    """A frame this test injected (the namespace's lo carries nothing else, but a frame of an earlier
    test of this module could still be queued)."""
    return data[26:30] == socket.inet_aton(INJECT_FROM)


def drain_ours(live: LiveCapture, want: int, within: float = 10.0) -> list[Frame]:
    frames: list[Frame] = []
    deadline = time.monotonic() + within
    number = 0
    while len(frames) < want:
        assert time.monotonic() < deadline, f"{len(frames)} of {want} frames"
        got = live.read(number + 1)
        if got is None:
            select.select([live.sock], [], [], max(0.0, deadline - time.monotonic()))
            continue
        number += 1
        if ours(bytes(got.data)):
            frames.append(got)
    return frames


def test_the_kernel_filters(namespace: str) -> None:
    """Only TCP reaches the socket (UDP is dropped by the BPF program), and each frame once on lo."""
    live = capture(namespace, 8 << 20)
    try:
        with injector(namespace) as out:
            out.send(udp_frame(b"not for us"))
            out.send(frame(INJECT_FROM, INJECT_TO, 40000, 502, 1, SYN))
            out.send(udp_frame(b"nor this"))
            out.send(frame(INJECT_FROM, INJECT_TO, 40000, 502, 2, ACK, b"x"))
        frames = drain_ours(live, 2)
        assert [bytes(f.data)[23] for f in frames] == [6, 6], "the UDP frames never reach the socket"
        assert [struct.unpack_from("!I", bytes(f.data), 38)[0] for f in frames] == [1, 2], "each frame once"
    finally:
        live.close()


def test_frames_carry_the_kernel_time(namespace: str) -> None:
    """A frame already queued in the socket has its time: reading it later does not change it."""
    live = capture(namespace, 8 << 20)
    try:
        before = time.time()
        with injector(namespace) as out:
            out.send(frame(INJECT_FROM, INJECT_TO, 40003, 502, 7, SYN))
        deadline = time.monotonic() + 10
        while True:  # until our frame is the next one queued
            assert time.monotonic() < deadline, "the injected frame never arrived"
            select.select([live.sock], [], [], 1.0)
            try:
                head = live.sock.recv(64, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            if ours(head):
                break
            live.read(0)
        queued = time.time()
        got = live.read(1)
        assert got is not None and ours(bytes(got.data))
        assert before <= got.ts <= queued, (before, got.ts, queued)
    finally:
        live.close()


def test_kernel_drops_are_counted(namespace: str) -> None:
    """A socket buffer far too small for a burst: the kernel drops packets and the capture says how many."""
    live = capture(namespace, 4096)
    try:
        with injector(namespace) as out:
            for seq in range(2000):
                out.send(frame(INJECT_FROM, INJECT_TO, 40001, 502, seq, ACK, b"y" * 200))
        counters = live.statistics()
        assert counters.dropped > 0, counters
        assert counters.received >= 2000
        assert live.statistics().dropped == counters.dropped, "accumulated, not reset by the kernel's read"
    finally:
        live.close()


async def test_a_conflicting_retransmission_on_the_wire_is_an_alert(namespace: str) -> None:
    live = capture(namespace, 8 << 20)
    conv = Conversation(client=INJECT_FROM, server=INJECT_TO).handshake()
    seq = conv.cseq
    conv.c(mbap(1, 1, struct.pack("!BHH", 3, 10, 1)))
    conv.c(mbap(1, 1, struct.pack("!BHH", 6, 10, 0xDEAD)), seq=seq)
    with injector(namespace) as out:
        for data in conv.frames:
            out.send(data)
    monitor = Monitor()
    deadline = time.monotonic() + 30
    async for got in live.frames():  # ours are queued already: the loop ends on them
        monitor.process(got)
        ours_seen = any(a.rule.id == "TCP-001" and a.src == INJECT_FROM for a in monitor.detector.alerts)
        if ours_seen or time.monotonic() > deadline:
            break
    live.close()
    monitor.finish()
    alerts = [a for a in monitor.detector.alerts if a.rule.id == "TCP-001" and a.src == INJECT_FROM]
    assert len(alerts) == 1, [a.as_dict() for a in monitor.detector.alerts]


def test_the_filter_program_jumps_land_on_instructions() -> None:
    for drop_outgoing in (False, True):
        program = tcp_filter(drop_outgoing)
        for index, (code, jt, jf, _k) in enumerate(program):
            if code == 0x15:
                assert index + 1 + jt < len(program) and index + 1 + jf < len(program)
        assert program[-1] == (0x06, 0, 0, 0) and program[-2][0] == 0x06


async def test_a_link_that_never_goes_quiet_still_lets_the_watcher_stop(namespace: str) -> None:
    """On a busy span port recvmsg never comes back empty: frames() must still give the event loop a turn,
    or Ctrl-C, --duration and stop would never be seen (found under load in CI). A queue of thousands of
    injected frames stands in for such a link: stop is set by another task, and the capture must end
    long before the queue is drained."""
    live = capture(namespace, 8 << 20)
    queued = 5000
    with injector(namespace) as out:
        for seq in range(queued):
            out.send(frame(INJECT_FROM, INJECT_TO, 40002, 502, seq, ACK))
    stop = asyncio.Event()
    asyncio.get_running_loop().call_soon(stop.set)
    frames = [got async for got in live.frames(stop)]
    assert frames and len(frames) < queued // 10, len(frames)
    assert live.sock.fileno() == -1  # frames() closes its socket
