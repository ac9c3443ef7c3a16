"""OT journal → sink runner → diode_send sink → UDP → receiver → IT journal → Modbus replica → mbpoll."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

from otseam.contract.models import Contract, Device, Point, SinkSpec, Site
from otseam.core.plugins import PluginContext, create_sink
from otseam.core.records import Event, Quality, Record, Sample
from otseam.diode.receiver import DiodeReceiver
from otseam.replica.modbus import ModbusReplica
from otseam.runtime.sinkrunner import SinkStats, run_sink
from otseam.sinks.diode_send import DiodeSendSink
from tests.diode.harness import open_journal, read_all, settings
from tests.replica.test_modbus_replica import mbpoll, values
from tests.support.wait import wait_until_async


def contract(target: tuple[str, int], key_file: Path) -> Contract:
    return Contract(
        site=Site(enterprise="acme", site="works"),
        devices=[
            Device(
                id="plc1",
                driver="modbus",
                endpoint="tcp://10.0.0.5:502",
                zone="cell",
                unit=1,
                points=[Point(id="level", address="hr:100"), Point(id="flow", address="hr:102")],
            )
        ],
        sinks=[
            SinkSpec(
                id="to-it",
                type="diode_send",
                options={
                    "target": f"{target[0]}:{target[1]}",
                    "key_file": str(key_file),
                    "rate": "100Mbit/s",
                    "snapshot_interval": "300ms",
                    "beacon_interval": "200ms",
                },
            )
        ],
    )


async def test_values_cross_the_diode_and_are_served_read_only(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(secrets.token_hex(32))
    key = key_file.read_bytes().strip()
    ot, it = open_journal(tmp_path / "ot"), open_journal(tmp_path / "it")
    receiver = DiodeReceiver(("127.0.0.1", 0), key, settings(beacon_interval="200ms"), it)
    await receiver.start()
    plant = contract(receiver.listen, key_file)
    sink = create_sink(plant.sinks[0], PluginContext(plant, str(tmp_path)))
    assert isinstance(sink, DiodeSendSink)
    replica = ModbusReplica(plant, it, port=0)
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(run_sink(sink, ot.reader("to-it"), stats=SinkStats("to-it"), stop=stop)),
        asyncio.create_task(run_sink(replica, it.reader("replica"), stats=SinkStats("replica"), stop=stop)),
    ]
    history: list[Record] = [
        Sample(f"plc1/{name}", float(i), Quality.GOOD, float(i), float(i))
        for i in range(2000)
        for name in ("level", "flow")
    ]
    ot.append(history)
    ot.append([Sample("plc1/level", 42.5, Quality.GOOD, 5000.0, 5000.0)])

    def read() -> tuple[str, ...]:  # the replica's port is known once the runner has started it
        return ("-p", str(replica.port), "-a", "1", "-0", "-r", "100", "-c", "1", "-t", "4:float", "-B", "127.0.0.1")

    served: dict[int, str] = {}

    async def replica_serves_the_latest() -> bool:
        nonlocal served
        served = values((await mbpoll(*read()))[1])
        return served == {100: "42.5"} and receiver.stats.snapshots >= 2

    await wait_until_async(replica_serves_the_latest, "the replica to serve 42.5 after two snapshots", interval=0.1)
    code, out = await mbpoll("-p", str(replica.port), "-a", "1", "-0", "-r", "100", "-t", "4", "127.0.0.1", "1")
    attempts = lambda: [r for r in read_all(it) if isinstance(r, Event) and r.kind == "replica.write_attempt"]  # noqa: E731
    await wait_until_async(attempts, "the refused write to be journalled as replica.write_attempt")
    stop.set()
    await asyncio.gather(*tasks)
    await receiver.close()
    assert served == {100: "42.5"}
    assert code != 0 and "Illegal function" in out
    everything = read_all(it)
    crossed = [r for r in everything if isinstance(r, Sample)]
    assert crossed == [*history, Sample("plc1/level", 42.5, Quality.GOOD, 5000.0, 5000.0)]  # once each, in order
    assert receiver.stats.snapshots >= 2 and receiver.stats.duplicates >= 4  # snapshots re-sent known values
    assert any(r.kind == "replica.write_attempt" for r in everything if not isinstance(r, Sample))
    ot.close()
    it.close()
