"""The opcua_server sink against asyncua's client over Basic256Sha256/Aes SignAndEncrypt with a login."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua
from asyncua.ua.uaerrors import BadUserAccessDenied, UaError

from otseam.audit.log import AuditLog, node_public_key, verify_log
from otseam.contract import parse_text
from otseam.core.records import Batch, Event, Quality, Sample, Severity
from otseam.journal import Journal
from otseam.sinks import opcua_server
from otseam.sinks.opcua_server import units
from tests.support.wait import wait_until_async

from .support import CONTRACT, PASSWORD, Pki, contract, historian, make_pki, port, running, secure_options

NS = "urn:otseam:acme:plant1"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Certificates and keys once per module: RSA key generation is the slow part of these tests."""
    return asyncio.run(make_pki(tmp_path_factory.mktemp("pki")))


@asynccontextmanager
async def client(
    endpoint_port: int,
    pki: Pki,
    policy: str = "Basic256Sha256",
    mode: str = "SignAndEncrypt",
    user: str | None = "mes",
    password: str = PASSWORD,
) -> AsyncIterator[Client]:
    c = Client(f"opc.tcp://127.0.0.1:{endpoint_port}/seam", timeout=5)
    c.application_uri = "urn:seam:test:client"
    if policy != "None":
        await c.set_security_string(f"{policy},{mode},{pki.client_cert},{pki.client_key},{pki.server_cert}")
    if user is not None:
        c.set_user(user)
        c.set_password(password)
    async with c:
        yield c


def batch(records: list[Any], first: int = 1) -> Batch:
    return Batch("journal-a", list(range(first, first + len(records))), records)


async def node_of(c: Client, key: str) -> Any:
    ns = await c.get_namespace_index(NS)
    return c.get_node(f"ns={ns};s={key}")


async def test_the_address_space_follows_the_isa95_path_with_units_and_ranges(tmp_path: Path, pki: Pki) -> None:
    p = port()
    async with running(tmp_path, secure_options(pki, p, historian="hist")), client(p, pki) as c:
        ns = await c.get_namespace_index(NS)
        level = await c.nodes.objects.get_child(
            [f"{ns}:{name}" for name in ("acme", "plant1", "water", "filters", "plc1", "level")]
        )
        assert level.nodeid == ua.NodeId("plc1/level", ns), "the NodeId is the point key"
        assert (await level.read_type_definition()) == ua.NodeId(ua.ObjectIds.AnalogUnitRangeType)
        flow, count, running_ = [await node_of(c, k) for k in ("plc1/flow", "plc1/count", "plc1/running")]
        assert (await flow.read_type_definition()) == ua.NodeId(ua.ObjectIds.AnalogUnitType)
        assert (await count.read_type_definition()) == ua.NodeId(ua.ObjectIds.BaseDataVariableType)
        assert (await running_.read_data_type()) == ua.NodeId(ua.ObjectIds.Boolean)
        eu = await (await level.get_child("0:EngineeringUnits")).read_value()
        assert eu.UnitId == units.unit_id("MTR") and eu.NamespaceUri == units.UNECE_NAMESPACE
        rng = await (await level.get_child("0:EURange")).read_value()
        assert (rng.Low, rng.High) == (0.0, 5.0)
        temp = await node_of(c, "plc1/temp")
        assert (await (await temp.get_child("0:EngineeringUnits")).read_value()).UnitId == 0x43454C  # CEL
        access = ua.AccessLevel.CurrentRead.mask | ua.AccessLevel.HistoryRead.mask
        assert (await level.read_attribute(ua.AttributeIds.AccessLevel)).Value.Value == access
        assert (await level.read_attribute(ua.AttributeIds.UserAccessLevel)).Value.Value == access
        assert (await level.read_description()).Text == "basin level"
        first = await level.read_data_value(raise_on_bad_status=False)
        assert first.StatusCode.value == ua.StatusCodes.BadWaitingForInitialData


async def test_values_statuses_and_source_timestamps(tmp_path: Path, pki: Pki) -> None:
    p = port()
    async with running(tmp_path, secure_options(pki, p)) as sink, client(p, pki) as c:
        source = 1_790_000_000.25
        await sink.deliver(
            batch(
                [
                    Sample("plc1/level", 2.5, Quality.GOOD, source, source + 0.1),
                    Sample("plc1/flow", 12.0, Quality.STALE, source, source + 0.1),
                    Sample("plc1/count", -7, Quality.GOOD, source, source + 0.1),
                    Sample("plc1/running", True, Quality.GOOD, source, source + 0.1),
                    Sample("plc1/mode", "AUTO", Quality.GOOD, source, source + 0.1),
                    Sample("plc2/pressure", None, Quality.BAD_COMM, source, source + 0.1),
                    Sample("plc1/temp", "not a number", Quality.GOOD, source, source + 0.1),
                ]
            )
        )
        level = await (await node_of(c, "plc1/level")).read_data_value()
        assert level.Value.Value == 2.5 and level.StatusCode.is_good()
        assert level.SourceTimestamp == datetime.fromtimestamp(source, UTC).replace(tzinfo=None) or (
            level.SourceTimestamp.timestamp() == pytest.approx(source)
        )
        flow = await (await node_of(c, "plc1/flow")).read_data_value(raise_on_bad_status=False)
        assert flow.StatusCode.value == ua.StatusCodes.UncertainLastUsableValue and flow.Value.Value == 12.0
        count = await (await node_of(c, "plc1/count")).read_data_value()
        assert count.Value.Value == -7 and count.Value.VariantType == ua.VariantType.Int16
        assert (await (await node_of(c, "plc1/running")).read_value()) is True
        assert (await (await node_of(c, "plc1/mode")).read_value()) == "AUTO"
        pressure = await (await node_of(c, "plc2/pressure")).read_data_value(raise_on_bad_status=False)
        assert pressure.StatusCode.value == ua.StatusCodes.BadCommunicationError
        temp = await (await node_of(c, "plc1/temp")).read_data_value(raise_on_bad_status=False)
        assert temp.StatusCode.value == ua.StatusCodes.BadConfigurationError
        # The device goes down: every one of its values says so.
        offline = Event(source + 1, "device.state", "plc1", Severity.HIGH, "plc1 lost", {"state": "offline"})
        await sink.deliver(batch([offline], 10))
        for key in ("plc1/level", "plc1/count", "plc1/mode"):
            dv = await (await node_of(c, key)).read_data_value(raise_on_bad_status=False)
            assert dv.StatusCode.value == ua.StatusCodes.BadCommunicationError, key


class Changes:
    def __init__(self) -> None:
        self.values: list[Any] = []

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        self.values.append(val)


async def test_subscriptions_see_every_change(tmp_path: Path, pki: Pki) -> None:
    p = port()
    async with running(tmp_path, secure_options(pki, p)) as sink, client(p, pki) as c:
        handler = Changes()
        subscription = await c.create_subscription(20, handler)
        await subscription.subscribe_data_change(await node_of(c, "plc1/level"), queuesize=100)
        now = time.time()
        for i in range(5):
            await sink.deliver(batch([Sample("plc1/level", float(i), Quality.GOOD, now + i, now)], i + 1))
        await wait_until_async(
            lambda: 4.0 in handler.values, "the fifth change notified", detail=lambda: handler.values
        )
        assert [v for v in handler.values if v is not None][-5:] == [0.0, 1.0, 2.0, 3.0, 4.0]


async def test_every_write_type_service_is_refused_and_audited_in_the_journal(tmp_path: Path, pki: Pki) -> None:
    p = port()
    journal = Journal.open(tmp_path / "journal")
    try:
        async with running(tmp_path, secure_options(pki, p), journal=journal) as sink, client(p, pki) as c:
            level = await node_of(c, "plc1/level")
            with pytest.raises(BadUserAccessDenied):
                await level.write_value(3.0)
            with pytest.raises(BadUserAccessDenied):
                await c.uaclient.call([ua.CallMethodRequest(ObjectId=level.nodeid, MethodId=level.nodeid)])
            with pytest.raises(BadUserAccessDenied):
                await c.nodes.objects.add_variable(2, "Injected", 1.0)
            with pytest.raises(BadUserAccessDenied):
                await c.delete_nodes([level])
            with pytest.raises(BadUserAccessDenied):
                await c.uaclient.add_references([ua.AddReferencesItem(SourceNodeId=level.nodeid)])
            details = ua.UpdateDataDetails(NodeId=level.nodeid, PerformInsertReplace=ua.PerformUpdateType.Insert)
            with pytest.raises(BadUserAccessDenied):
                await c.uaclient.history_update(ua.HistoryUpdateParameters(HistoryUpdateDetails=[details]))
            assert (await level.read_data_value(raise_on_bad_status=False)).StatusCode.value != ua.StatusCodes.Good
        services = [e.data["service"] for e in sink.audit_events]
        assert services == ["Write", "Call", "AddNodes", "DeleteNodes", "AddReferences", "HistoryUpdate"]
        assert sink.audit_events[0].data["user"] == "mes"
        ns = sink.points["plc1/level"].nodeid.NamespaceIndex
        assert sink.audit_events[0].data["targets"] == [f"ns={ns};s=plc1/level"]
    finally:
        journal.flush()
        journal.close()
    reopened = Journal.open(tmp_path / "journal")
    try:
        cursor = reopened.reader("check")
        stored = await cursor.next_batch(100, 0.1)
    finally:
        reopened.close()
    # Each refusal is a record of the node's hash-chained audit log, and its copy is in the journal.
    audit = AuditLog(tmp_path / "authority")
    assert [r["data"]["service"] for r in audit.records() if r["kind"] == "opcua.refused"] == services
    assert verify_log(audit.path, audit.head_path, node_public_key(audit.directory)).ok
    audits = [r for r in stored.records if isinstance(r, Event) and r.kind == "audit.opcua.refused"]
    assert [a.data["data"]["service"] for a in audits] == services
    assert audits[0].data["actor"] == "mes" and audits[0].data["data"]["via"] == "opcua"


async def test_history_read_pages_through_the_historian_with_continuation_points(tmp_path: Path, pki: Pki) -> None:
    p = port()
    hist = await historian(tmp_path)
    start = 1_790_000_000.0
    total = 2_500
    # Two samples share each timestamp: a continuation point must neither repeat nor skip one.
    records = [Sample("plc1/level", float(i), Quality.GOOD, start + (i // 2), start) for i in range(total)]
    await hist.deliver(batch(records))
    await hist.close()
    options = secure_options(pki, p, historian="hist", max_history_values=300)
    async with running(tmp_path, options), client(p, pki) as c:
        level = await node_of(c, "plc1/level")
        begin, end = datetime.fromtimestamp(start - 1, UTC), datetime.fromtimestamp(start + total, UTC)
        values = await level.read_raw_history(begin, end)  # asyncua follows the continuation points
        assert [v.Value.Value for v in values] == [float(i) for i in range(total)]
        # One page by hand: NumValuesPerNode bounds it and a continuation point says there is more.
        details = ua.ReadRawModifiedDetails(StartTime=begin, EndTime=end, NumValuesPerNode=10, IsReadModified=False)
        page = await level.history_read(details)
        assert len(page.HistoryData.DataValues) == 10 and page.ContinuationPoint
        second = await level.history_read(details, page.ContinuationPoint)
        assert second.HistoryData.DataValues[0].Value.Value == 10.0
        # Newest first when StartTime is after EndTime.
        backwards = ua.ReadRawModifiedDetails(StartTime=end, EndTime=begin, NumValuesPerNode=3, IsReadModified=False)
        newest = await level.history_read(backwards)
        assert [v.Value.Value for v in newest.HistoryData.DataValues] == [2499.0, 2498.0, 2497.0]
        forged = await level.history_read(details, b"forged continuation")
        assert forged.StatusCode.value == ua.StatusCodes.BadContinuationPointInvalid


async def test_each_policy_and_mode_serves_a_logged_in_client(tmp_path: Path, pki: Pki) -> None:
    p = port()
    async with running(tmp_path, secure_options(pki, p)) as sink:
        await sink.deliver(batch([Sample("plc2/pressure", 3.5, Quality.GOOD, time.time(), time.time())]))
        # asyncua's client names the policies without underscores.
        for policy in ("Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss"):
            for mode in ("Sign", "SignAndEncrypt"):
                async with client(p, pki, policy, mode) as c:
                    assert await (await node_of(c, "plc2/pressure")).read_value() == 3.5, (policy, mode)


async def test_no_anonymous_no_unknown_user_no_untrusted_certificate_no_plain_text(tmp_path: Path, pki: Pki) -> None:
    p = port()
    async with running(tmp_path, secure_options(pki, p)) as sink:
        with pytest.raises((UaError, OSError, TimeoutError)):
            async with client(p, pki, user=None):
                pass
        with pytest.raises((UaError, OSError, TimeoutError)):
            async with client(p, pki, password="guess"):
                pass
        with pytest.raises((UaError, OSError, TimeoutError)):
            async with client(p, pki, policy="None"):
                pass
        # Anonymous is not offered at all (no token policy on any endpoint), so asyncua turns it away before
        # asking for a user; a wrong password reaches the login check and is audited.
        logins = [e.data for e in sink.audit_events if e.data["action"] == "opcua.login_refused"]
        assert [d["user"] for d in logins] == ["mes"] and sink.stats["refused_logins"] == 1
        sink.refusals.flush()
        failed = [r for r in AuditLog(tmp_path / "authority").records() if r["kind"] == "login.failed"]
        assert [(r["actor"], r["data"]["via"]) for r in failed] == [("mes", "opcua")]
    # A client whose certificate is not in the trust list is refused at the secure channel.
    (tmp_path / "other").mkdir()
    untrusted = await make_pki(tmp_path / "other", trust_client=False)
    async with running(tmp_path, secure_options(untrusted, p)):
        with pytest.raises((UaError, OSError, TimeoutError)):
            async with client(p, untrusted):
                pass


async def test_diode_link_health_as_variables_and_values_go_bad_when_it_is_down(tmp_path: Path, pki: Pki) -> None:
    p = port()
    async with running(tmp_path, secure_options(pki, p, diode_link="on")) as sink, client(p, pki) as c:
        now = time.time()
        up = Event(now, "diode.link", "diode-receive", Severity.INFO, "up", {"state": "up"})
        await sink.deliver(batch([up, Sample("plc1/level", 1.0, Quality.GOOD, now - 2.0, now - 1.9)]))
        ns = await c.get_namespace_index(NS)
        link = {n: c.get_node(f"ns={ns};s=seam/diode-link/{n}") for n in ("Up", "LagSeconds", "Gaps", "BlocksLost")}
        assert await link["Up"].read_value() is True
        assert 1.5 < await link["LagSeconds"].read_value() < 60
        gap = Event(now, "diode.gap", "diode-receive", Severity.MEDIUM, "lost", {"blocks": 3})
        down = Event(now, "diode.link", "diode-receive", Severity.HIGH, "down", {"state": "down"})
        await sink.deliver(batch([gap, down], 3))
        assert await link["Up"].read_value() is False
        assert (await link["Gaps"].read_value(), await link["BlocksLost"].read_value()) == (1, 3)
        level = await (await node_of(c, "plc1/level")).read_data_value(raise_on_bad_status=False)
        assert level.StatusCode.value == ua.StatusCodes.BadCommunicationError


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"endpoint": "http://x", "anonymous": True, "security_policies": ["None"]}, "opc.tcp://HOST:PORT"),
        ({"anonymous": True}, "certificate and private_key"),
        ({"security_policies": ["None"]}, "no way to log in"),
        ({"security_policies": ["None"], "anonymous": True, "writable": True}, "writable"),
        ({"security_policies": ["None"], "anonymous": True, "historian": "nope"}, "no historian sink"),
    ],
)
def test_bad_options_are_one_clear_error(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    from otseam.contract.models import SinkSpec
    from otseam.core.plugins import PluginContext

    with pytest.raises(opcua_server.OpcUaServerError, match=message):
        opcua_server.create(
            SinkSpec(id="ua", type="opcua_server", options=options), PluginContext(contract(), str(tmp_path))
        )


async def test_computed_points_are_served_with_their_lineage(tmp_path: Path, pki: Pki) -> None:
    """A computed point is a variable under the virtual device `computed`, its value and quality as
    the edge computed them, and its lineage as properties: what it is made of, and who owns the formula."""
    text = (
        CONTRACT
        + """\
people:
  - {id: olga, name: Olga Ops, side: ot, role: process engineer}
computed:
  - id: level_ft
    expression: "$plc1/level * 3.28084"
    type: float64
    unit: ft
    owner: olga
    description: basin level in feet
"""
    )
    the_contract = parse_text(text).contract
    p = port()
    async with running(tmp_path, secure_options(pki, p), the_contract=the_contract) as sink, client(p, pki) as c:
        ns = await c.get_namespace_index(NS)
        node = await c.nodes.objects.get_child(
            [f"{ns}:{name}" for name in ("acme", "plant1", "water", "filters", "computed", "level_ft")]
        )
        assert node.nodeid == ua.NodeId("computed/level_ft", ns)
        assert (await (await node.get_child("0:Formula")).read_value()) == "$plc1/level * 3.28084"
        assert (await (await node.get_child("0:Inputs")).read_value()) == "plc1/level"
        assert (await (await node.get_child("0:Sources")).read_value()) == "plc1/level"
        assert (await (await node.get_child("0:FormulaOwner")).read_value()) == "olga"
        await sink.deliver(batch([Sample("computed/level_ft", 8.2, Quality.GOOD, 1_790_000_000.0, 1_790_000_000.1)]))
        value = await node.read_data_value()
        assert value.Value.Value == 8.2 and value.StatusCode.is_good()
