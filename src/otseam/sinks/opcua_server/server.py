"""The OPC UA server sink: the plant's values, read-only, to OPC UA clients (MES, historians, SCADA).

On the OT edge it serves what the drivers read; on the IT node, fed by ``diode_receive``, it is the
read-only OPC UA replica that IT clients talk to instead of a PLC. ``deliver`` writes each sample into
its variable (value, StatusCode from the quality, source timestamp) and notifies the subscriptions;
nothing is buffered, so a batch is "delivered" once every value is in the address space.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from datetime import UTC, datetime
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from asyncua.server.server import Server

from otseam.audit.log import AuditLog, authority_dir
from otseam.audit.refusals import Refusals
from otseam.contract.models import Contract, SinkSpec
from otseam.core.plugins import PluginContext, beside_contract
from otseam.core.records import Batch, Event, Quality, Sample, Severity, Value
from otseam.sinks.opcua_server._ua import ua
from otseam.sinks.opcua_server.access import LoginManager, ReadOnlyRuleset, Refusal, UserDirectory, UsersFile
from otseam.sinks.opcua_server.address_space import Builder, PointNode
from otseam.sinks.opcua_server.fanout import notify
from otseam.sinks.opcua_server.history import HistorianReader, SeamHistoryManager
from otseam.sinks.opcua_server.link import LinkHealth
from otseam.sinks.opcua_server.options import Options
from otseam.sinks.opcua_server.status import COMMUNICATION_ERROR, STATUS

log = logging.getLogger(__name__)

_POLICIES: dict[tuple[str, str], ua.SecurityPolicyType] = {
    ("Basic256Sha256", "Sign"): ua.SecurityPolicyType.Basic256Sha256_Sign,
    ("Basic256Sha256", "SignAndEncrypt"): ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    ("Aes128Sha256RsaOaep", "Sign"): ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign,
    ("Aes128Sha256RsaOaep", "SignAndEncrypt"): ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
    ("Aes256Sha256RsaPss", "Sign"): ua.SecurityPolicyType.Aes256Sha256RsaPss_Sign,
    ("Aes256Sha256RsaPss", "SignAndEncrypt"): ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
}


class OpcUaServerError(ValueError):
    """A configuration the server cannot start with; the message says what to change."""


#: Allocations (net of frees) between two collections of the youngest generation: Python's default is 700.
YOUNG_GENERATION = 50_000


def _young_generation_for_serving() -> None:
    """Each value served lives until its point's next change, seconds later at 100,000 points: with the
    default threshold it outlives two young collections, reaches the oldest generation, and every
    quarter of that generation's size in such arrivals costs a full collection over all monitored
    items (measured: 40 % of the server's CPU at 100,000 subscribed points). With a larger young
    generation the values die before they are promoted. Process-wide, like ``seam run``'s
    ``gc.freeze()``; it only ever raises the threshold."""
    young, *older = gc.get_threshold()
    if young < YOUNG_GENERATION:
        gc.set_threshold(YOUNG_GENERATION, *older)


def _holds_certificates(directory: Path) -> bool:
    """Start-up only (a handful of files): the trust list is read once, before serving."""
    if not directory.is_dir():
        return False
    return any(f.suffix.lower() in (".der", ".pem", ".crt") for f in directory.iterdir())


def _has_diode_source(contract: Contract, node: str) -> bool:
    """A diode_receive source runs on this node (a source without ``node`` runs on the only one)."""
    return any(s.type == "diode_receive" and s.node in (None, node) for s in contract.sources)


class OpcUaServerSink:
    """Implements :class:`otseam.core.plugins.Sink`."""

    def __init__(
        self,
        spec: SinkSpec,
        context: PluginContext,
        options: Options,
        *,
        users: UserDirectory | None = None,
    ) -> None:
        self.spec = spec
        self.options = options
        self.contract = context.contract
        self.data_dir = Path(context.data_dir)
        # Refused requests and logins are records of the node's hash-chained audit log (journalled by it).
        self.refusals = Refusals(
            AuditLog(authority_dir(context.data_dir), node=context.node, journal=context.journal, clock=context.clock),
            f"sink:{spec.id}",
        )
        self._contract_path = context.contract_path
        if users is None and options.users_file:
            try:
                users = UsersFile(Path(beside_contract(options.users_file, context.contract_path)))
            except OSError as exc:
                raise OpcUaServerError(f"opcua_server {spec.id}: users_file: {exc}") from None
        if users is None and not options.anonymous:
            raise OpcUaServerError(
                f"opcua_server {spec.id}: no way to log in: set users_file (user:argon2-hash lines) or anonymous: true"
            )
        self.users = users
        self.historian_path = self._historian_path(options.historian)
        node = context.node
        self.link: LinkHealth | None = None
        if options.diode_link == "on" or (options.diode_link == "auto" and _has_diode_source(self.contract, node)):
            self.link = LinkHealth()
        self.server: Server | None = None
        self.points: dict[str, PointNode] = {}
        self.devices: dict[str, list[str]] = {}
        self._link_nodes: dict[str, PointNode] = {}
        self._reader: HistorianReader | None = None
        #: Audit events raised here, also kept in memory (bounded) for status and the tests.
        self.audit_events: list[Event] = []
        self.stats = {"samples": 0, "unknown_points": 0, "refused_requests": 0, "refused_logins": 0}

    def _historian_path(self, sink_id: str | None) -> Path | None:
        if sink_id is None:
            return None
        for other in self.contract.sinks:
            if other.id == sink_id:
                if other.type != "historian":
                    raise OpcUaServerError(f"opcua_server {self.spec.id}: historian {sink_id!r} is a {other.type} sink")
                raw = other.options.get("path")
                path = Path(str(raw)) if raw else self.data_dir / f"{other.id}.db"
                return path if path.is_absolute() else self.data_dir / path
        raise OpcUaServerError(f"opcua_server {self.spec.id}: no historian sink with id {sink_id!r} in the contract")

    # --- the Sink protocol ----------------------------------------------------------------------

    async def start(self) -> None:
        if self.server is not None:
            return
        options = self.options
        server = Server(user_manager=LoginManager(self.users, options.anonymous, self._login_refused))  # type: ignore[arg-type]
        await server.init()
        server.set_endpoint(options.endpoint)
        server.set_server_name(f"Seam {self.contract.site.enterprise}/{self.contract.site.site}")
        await server.set_application_uri(options.application_uri)
        policies = [
            _POLICIES[(p, m)] if p != "None" else ua.SecurityPolicyType.NoSecurity
            for p in options.security_policies
            for m in (options.security_modes if p != "None" else ["None"])
        ]
        ruleset: Any = ReadOnlyRuleset(self._refused)  # asyncua types the parameter as its own ruleset class
        server.set_security_policy(list(dict.fromkeys(policies)), permission_ruleset=ruleset)
        tokens: list[type] = [ua.UserNameIdentityToken] if self.users is not None else []
        if options.anonymous:
            tokens.append(ua.AnonymousIdentityToken)
        server.set_identity_tokens(tokens)
        if options.certificate and options.private_key:
            await server.load_certificate(beside_contract(options.certificate, self._contract_path))
            await server.load_private_key(beside_contract(options.private_key, self._contract_path))
        if options.trusted_clients:
            trusted = Path(beside_contract(options.trusted_clients, self._contract_path))
            if not _holds_certificates(trusted):
                raise OpcUaServerError(
                    f"opcua_server {self.spec.id}: trusted_clients {trusted} holds no certificate (.der, .pem, .crt): "
                    "no client could connect"
                )
            store = TrustStore([trusted], [])
            await store.load()
            server.set_certificate_validator(
                CertificateValidator(
                    CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_CLIENT, store
                )
            )
        site = self.contract.site
        ns = await server.register_namespace(options.namespace_uri or f"urn:otseam:{site.enterprise}:{site.site}")
        self._reader = HistorianReader(self.historian_path) if self.historian_path else None
        builder = Builder(server.iserver.aspace, ns, history=self._reader is not None)
        selected = self._selected()
        # Hundreds of thousands of long-lived objects, none of them garbage: without the cyclic
        # collector's passes over them as they are made, the build takes half the CPU.
        collecting = gc.isenabled()
        gc.disable()
        try:
            lowest = builder.plant(self.contract, selected)
        finally:
            if collecting:
                gc.enable()
        self.points, self.devices = builder.points, builder.devices
        if self.link is not None:
            self._link_nodes = self._build_link(builder, lowest)
        server.iserver.history_manager = SeamHistoryManager(
            server.iserver,
            self._reader,
            {p.nodeid: key for key, p in self.points.items()},
            self._history_value,
            options.max_history_values,
        )
        await server.start()
        self.server = server
        _young_generation_for_serving()
        log.info(
            "opcua_server %s: %d points on %s (%s)",
            self.spec.id,
            len(self.points),
            options.endpoint,
            ", ".join(options.security_policies),
        )

    def _selected(self) -> set[str] | None:
        if not self.spec.points:
            return None
        keys = {d.key(p) for d in self.contract.devices for p in d.points} | {c.key for c in self.contract.computed}
        return {k for k in keys if any(fnmatch(k, pattern) for pattern in self.spec.points)}

    async def deliver(self, batch: Batch) -> None:
        if self.server is None:
            await self.start()
        now = datetime.now(UTC)
        points = self.points
        for record in batch.records:
            if isinstance(record, Sample):
                node = points.get(record.point)
                if node is None:
                    self.stats["unknown_points"] += 1
                    continue
                await self._write(node, self._datavalue(node, record.value, record.quality, record.source_ts, now))
                self.stats["samples"] += 1
                if self.link is not None:
                    self.link.lag = max(0.0, time.time() - record.source_ts)
            elif isinstance(record, Event):
                await self._on_event(record, now)
        if self.link is not None:
            await self._publish_link(now)

    async def close(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            await server.stop()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        await asyncio.to_thread(self.refusals.close)

    def status(self) -> dict[str, Any]:
        return {"points": len(self.points), "online": self.server is not None, **self.stats}

    # --- values ---------------------------------------------------------------------------------

    def _datavalue(
        self, node: PointNode, value: Value, quality: Quality, source_ts: float, now: datetime
    ) -> ua.DataValue:
        status = STATUS[quality]
        if status.is_bad() or value is None:
            variant = ua.Variant(None, ua.VariantType.Null)
        else:
            try:
                variant = ua.Variant(_coerce(value, node.variant), node.variant, is_array=False)
            except ValueError:
                # The contract and the data disagree: say so rather than send something of another type.
                variant, status = ua.Variant(None, ua.VariantType.Null), STATUS[Quality.BAD_CONFIG]
        return ua.DataValue(
            variant, StatusCode=status, SourceTimestamp=datetime.fromtimestamp(source_ts, UTC), ServerTimestamp=now
        )

    def _history_value(self, point: str, value: Any, quality: Quality, ts: float) -> ua.DataValue:
        node = self.points[point]
        dv = self._datavalue(node, value, quality, ts, datetime.fromtimestamp(ts, UTC))
        return dv

    async def _write(self, node: PointNode, dv: ua.DataValue) -> None:
        # The Value attribute is replaced directly and the subscriptions notified, as asyncua's own
        # write does, without its per-call node lookup and type check (the Variant is built from the
        # contract's type above); the value is encoded once for every client monitoring it (fanout.py).
        attribute = node.value
        previous, attribute.value = attribute.value, dv
        if attribute.datachange_callbacks:
            await notify(attribute.datachange_callbacks, previous, dv)

    async def _on_event(self, event: Event, now: datetime) -> None:
        if event.kind == "device.state":
            state = str(event.data.get("state", "")).lower()
            if state in ("offline", "driver-failed"):
                # The device is down: every one of its values says so, whatever it last was.
                for key in self.devices.get(event.source, []):
                    node = self.points[key]
                    await self._write(node, self._down(node, now))
        elif (
            self.link is not None
            and event.kind.startswith("diode.")
            and self.link.observe(event)
            and self.link.up is False
        ):
            for node in self.points.values():
                await self._write(node, self._down(node, now))

    def _down(self, node: PointNode, now: datetime) -> ua.DataValue:
        current = node.value.value
        source = current.SourceTimestamp if current is not None else None
        return ua.DataValue(
            ua.Variant(None, ua.VariantType.Null),
            StatusCode=COMMUNICATION_ERROR,
            SourceTimestamp=source,
            ServerTimestamp=now,
        )

    # --- the diode link -------------------------------------------------------------------------

    def _build_link(self, builder: Builder, parent: Any) -> dict[str, PointNode]:
        folder = builder.obj("seam/diode-link", "DiodeLink", "the one-way link this replica is fed through", parent)
        nodes: dict[str, PointNode] = {}
        for name, variant, description in (
            ("Up", ua.VariantType.Boolean, "true while the diode receiver hears the sender's beacons"),
            ("LagSeconds", ua.VariantType.Double, "source time to arrival here, of the latest value"),
            ("Gaps", ua.VariantType.UInt32, "gaps the receiver declared since it started"),
            ("BlocksLost", ua.VariantType.UInt32, "blocks lost in those gaps"),
        ):
            nodeid = ua.NodeId(f"seam/diode-link/{name}", builder.ns)
            data = builder.variable(
                nodeid,
                name,
                description,
                folder,
                ua.NodeId(ua.ObjectIds.HasComponent),
                ua.NodeId(ua.ObjectIds.BaseDataVariableType),
                ua.DataValue(
                    ua.Variant(None, ua.VariantType.Null),
                    StatusCode=ua.StatusCode(ua.StatusCodes.BadWaitingForInitialData),
                ),
                ua.NodeId(variant.value),
                ua.AccessLevel.CurrentRead.mask,
            )
            nodes[name] = PointNode(name, nodeid, variant, data.attributes[ua.AttributeIds.Value], "")
        return nodes

    async def _publish_link(self, now: datetime) -> None:
        link = self.link
        if link is None or not self._link_nodes:
            return
        values: dict[str, Any] = {"LagSeconds": link.lag, "Gaps": link.gaps, "BlocksLost": link.blocks_lost}
        if link.up is not None:
            values["Up"] = link.up
        for name, value in values.items():
            node = self._link_nodes[name]
            current: Any = node.value.value
            if current is not None and current.StatusCode.is_good() and current.Value.Value == value:
                continue
            await self._write(
                node, ua.DataValue(ua.Variant(value, node.variant), SourceTimestamp=now, ServerTimestamp=now)
            )

    # --- audit ----------------------------------------------------------------------------------

    def _refused(self, refusal: Refusal) -> None:
        self.stats["refused_requests"] += 1
        targets = f" on {', '.join(refusal.targets)}" if refusal.targets else ""
        self._record(
            "opcua.refused",
            refusal.user,
            f"refused OPC UA {refusal.service} from {refusal.user}{targets}: this server is read-only",
            {
                "action": "opcua.refused",
                "service": refusal.service,
                "user": refusal.user,
                "targets": list(refusal.targets),
            },
        )

    def _login_refused(self, user: str) -> None:
        self.stats["refused_logins"] += 1
        self._record(
            "login.failed", user, f"refused OPC UA login of {user}", {"action": "opcua.login_refused", "user": user}
        )

    def _record(self, kind: str, actor: str, message: str, data: dict[str, Any]) -> None:
        """Kept in memory (bounded, for status) and written to the audit log off the event loop."""
        log.warning("%s", message)
        self.audit_events.append(Event(time.time(), "audit", f"sink:{self.spec.id}", Severity.MEDIUM, message, data))
        del self.audit_events[:-100]
        self.refusals.record(kind, actor, f"opcua/{self.spec.id}", {"via": "opcua", **data}, message, Severity.MEDIUM)


_INT_RANGES: dict[ua.VariantType, tuple[int, int]] = {
    ua.VariantType.Int16: (-(2**15), 2**15 - 1),
    ua.VariantType.UInt16: (0, 2**16 - 1),
    ua.VariantType.Int32: (-(2**31), 2**31 - 1),
    ua.VariantType.UInt32: (0, 2**32 - 1),
    ua.VariantType.Int64: (-(2**63), 2**63 - 1),
    ua.VariantType.UInt64: (0, 2**64 - 1),
}


def _coerce(value: Value, variant: ua.VariantType) -> Any:
    """The journal's Python value in the Variant's type (a bool stored as 0/1, an int for a Double...);
    ValueError when it cannot be one."""
    if variant in (ua.VariantType.Double, ua.VariantType.Float):
        if isinstance(value, int | float):
            return float(value)
        raise ValueError(f"{value!r} is not a number")
    if variant == ua.VariantType.Boolean:
        if isinstance(value, bool | int):
            return bool(value)
        raise ValueError(f"{value!r} is not a boolean")
    if variant == ua.VariantType.String:
        if isinstance(value, str):
            return value
        raise ValueError(f"{value!r} is not text")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        low, high = _INT_RANGES[variant]
        if low <= value <= high:
            return value
    raise ValueError(f"{value!r} does not fit {variant.name}")
