"""A client we did not write (node-opcua) browses, reads, subscribes, history-reads; its write is refused."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from otseam.core.records import Batch, Quality, Sample
from otseam.sinks.opcua_server import units

from .support import PASSWORD, historian, make_pki, port, running, secure_options

INTEROP = Path(__file__).resolve().parents[2] / "interop"


class NodeClient:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.seen: list[str] = []

    async def expect(self, tag: str, within: float = 60.0) -> Any:
        assert self.process.stdout is not None
        async with asyncio.timeout(within):
            while True:
                raw = await self.process.stdout.readline()
                if not raw:
                    assert self.process.stderr is not None
                    error = (await self.process.stderr.read()).decode(errors="replace")
                    raise AssertionError(f"node-opcua client ended before {tag}: {error[-2000:]}")
                line = raw.decode(errors="replace").strip()
                self.seen.append(line)
                if line == tag:
                    return None
                if line.startswith(tag + " "):
                    return json.loads(line[len(tag) + 1 :])

    async def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()


# node-opcua names the policies as the specification's URIs do (with underscores).
@pytest.mark.parametrize(("policy", "mode"), [("Basic256Sha256", "SignAndEncrypt"), ("Aes256_Sha256_RsaPss", "Sign")])
async def test_node_opcua_browses_reads_subscribes_history_reads_and_cannot_write(
    tmp_path: Path, policy: str, mode: str
) -> None:
    pki = await make_pki(tmp_path)
    client_pem = tmp_path / "client.pem"
    certificate = x509.load_der_x509_certificate(pki.client_cert.read_bytes())
    client_pem.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    hist = await historian(tmp_path)
    start = 1_790_000_000.0
    total = 1_200
    records = [Sample("plc1/level", i / 1000, Quality.GOOD, start + i, start + i) for i in range(total)]
    await hist.deliver(Batch("j", list(range(1, total + 1)), list(records)))
    await hist.close()
    p = port()
    options = secure_options(pki, p, historian="hist", max_history_values=500)
    async with running(tmp_path, options) as sink:
        last = records[-1]
        await sink.deliver(Batch("j", [total], [last]))
        ns = sink.points["plc1/level"].nodeid.NamespaceIndex
        process = await asyncio.create_subprocess_exec(
            "node",
            str(INTEROP / "opcua_client.js"),
            f"opc.tcp://127.0.0.1:{p}/seam",
            policy,
            mode,
            str(client_pem),
            str(pki.client_key),
            str(tmp_path / "node-pki"),
            "mes",
            f"ns={ns};s=plc1/level",
            str(int((start - 1) * 1000)),
            str(int((start + total) * 1000)),
            cwd=INTEROP,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        node = NodeClient(process)
        try:
            await node.send(PASSWORD)
            browsed = await node.expect("BROWSED")
            assert browsed["path"] == ["acme", "plant1", "water", "filters", "plc1", "level"]
            read = await node.expect("READ")
            assert read["value"] == pytest.approx(last.value) and read["status"] == "Good"
            assert read["sourceTimestamp"] == int(last.source_ts * 1000)
            assert read["typeDefinition"] == "ns=0;i=17570"  # AnalogUnitRangeType
            assert read["unitId"] == units.unit_id("MTR") and read["range"] == [0, 5]
            await node.expect("SUBSCRIBED")
            await sink.deliver(
                Batch("j", [total + 1], [Sample("plc1/level", 4.25, Quality.GOOD, time.time(), time.time())])
            )
            while (await node.expect("CHANGED"))["value"] != pytest.approx(4.25):
                pass
            await node.send("history")
            history = await node.expect("HISTORY")
            assert history["count"] == total and history["pages"] == 3
            assert history["first"] == 0.0 and history["last"] == pytest.approx((total - 1) / 1000)
            write = await node.expect("WRITE")
            assert "BadUserAccessDenied" in write["status"]
            await node.expect("DONE")
            assert await asyncio.wait_for(process.wait(), 30) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert [e.data["service"] for e in sink.audit_events] == ["Write"]
