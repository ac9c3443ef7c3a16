"""The plant as an OPC UA address space: the contract's ISA-95 path, one variable per point.

Objects/<enterprise>/<site>[/<area>][/<line>]/<device>/<point>. NodeIds are strings built from the
contract, so they are stable across restarts and contract edits that keep the ids: a folder is
``s=<enterprise>/<site>/...``, a device ``s=<device>``, a point its key ``s=<device>/<point>``, and the
point's properties ``s=<device>/<point>#EURange`` and ``#EngineeringUnits``.

Numeric points with a unit are AnalogUnitType (AnalogUnitRangeType when the contract gives a range:
``range``, or ``clamp``), with EngineeringUnits as EUInformation (UNECE codes, OPC 10000-8) and
EURange. Every variable's AccessLevel is CurrentRead, plus HistoryRead when a historian serves history.

Why the nodes are built here and not through asyncua's AddNodes: asyncua checks each new node against
every existing child of its parent, which is quadratic in the children of one device; a plant of
100,000 points then takes minutes to start. The nodes are built directly (NodeData, references both
ways and the type definition, as asyncua's AddNodes would) in linear time. asyncua is pinned to a
minor version in pyproject.toml because this uses its address space classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asyncua.server.address_space import AddressSpace, AttributeValue, NodeData

from otseam.contract.models import Contract, Device, Point
from otseam.sinks.opcua_server import units
from otseam.sinks.opcua_server._ua import ua
from otseam.sinks.opcua_server.status import DATATYPES, NUMERIC, VARIANTS

_HAS_COMPONENT = ua.NodeId(ua.ObjectIds.HasComponent)
_ORGANIZES = ua.NodeId(ua.ObjectIds.Organizes)
_HAS_PROPERTY = ua.NodeId(ua.ObjectIds.HasProperty)
_HAS_TYPE = ua.NodeId(ua.ObjectIds.HasTypeDefinition)
_FOLDER = ua.NodeId(ua.ObjectIds.FolderType)
_OBJECT_TYPE = ua.NodeId(ua.ObjectIds.BaseObjectType)
_PROPERTY_TYPE = ua.NodeId(ua.ObjectIds.PropertyType)
_DATA_VARIABLE = ua.NodeId(ua.ObjectIds.BaseDataVariableType)
ANALOG_UNIT = ua.NodeId(ua.ObjectIds.AnalogUnitType)
ANALOG_UNIT_RANGE = ua.NodeId(ua.ObjectIds.AnalogUnitRangeType)
_OBJECTS = ua.NodeId(ua.ObjectIds.ObjectsFolder)


def point_variant(point: Point) -> ua.VariantType:
    """The Variant type a point's values have after the pipeline: a scaled integer is a Double."""
    scaled = point.scale is not None and (point.scale.factor != 1.0 or point.scale.offset != 0.0)
    if scaled and point.type in NUMERIC and point.type not in ("float32", "float64"):
        return ua.VariantType.Double
    return VARIANTS[point.type]


@dataclass(slots=True)
class PointNode:
    key: str
    nodeid: ua.NodeId
    variant: ua.VariantType
    #: The Value attribute: the sink replaces ``value.value`` and runs its data change callbacks.
    value: AttributeValue
    device: str


class Builder:
    def __init__(self, aspace: AddressSpace, namespace: int, history: bool) -> None:
        self.aspace = aspace
        self.ns = namespace
        self.access = ua.AccessLevel.CurrentRead.mask | (ua.AccessLevel.HistoryRead.mask if history else 0)
        self.history = history
        self.points: dict[str, PointNode] = {}
        self.devices: dict[str, list[str]] = {}

    # --- generic nodes ---------------------------------------------------------------------------

    def _attribute(self, node: NodeData, attribute: ua.AttributeIds, variant: ua.Variant) -> None:
        node.attributes[attribute] = AttributeValue(ua.DataValue(variant))

    def _new(
        self,
        nodeid: ua.NodeId,
        nodeclass: ua.NodeClass,
        name: str,
        description: str,
        parent: NodeData,
        reference: ua.NodeId,
        typedef: ua.NodeId,
    ) -> NodeData:
        node = NodeData(nodeid)
        browse = ua.QualifiedName(name, self.ns)
        display = ua.LocalizedText(name)
        self._attribute(node, ua.AttributeIds.NodeId, ua.Variant(nodeid, ua.VariantType.NodeId))
        self._attribute(node, ua.AttributeIds.BrowseName, ua.Variant(browse, ua.VariantType.QualifiedName))
        self._attribute(node, ua.AttributeIds.NodeClass, ua.Variant(nodeclass, ua.VariantType.Int32))
        self._attribute(node, ua.AttributeIds.DisplayName, ua.Variant(display, ua.VariantType.LocalizedText))
        self._attribute(
            node, ua.AttributeIds.Description, ua.Variant(ua.LocalizedText(description), ua.VariantType.LocalizedText)
        )
        self._attribute(node, ua.AttributeIds.WriteMask, ua.Variant(0, ua.VariantType.UInt32))
        self._attribute(node, ua.AttributeIds.UserWriteMask, ua.Variant(0, ua.VariantType.UInt32))
        parent_class: Any = parent.attributes[ua.AttributeIds.NodeClass].value
        parent_name: Any = parent.attributes[ua.AttributeIds.BrowseName].value
        parent_display: Any = parent.attributes[ua.AttributeIds.DisplayName].value
        parent.references.append(
            ua.ReferenceDescription(
                ReferenceTypeId=reference,
                IsForward=True,
                NodeId=nodeid,
                BrowseName=browse,
                DisplayName=display,
                NodeClass=nodeclass,
                TypeDefinition=typedef,
            )
        )
        node.references.append(
            ua.ReferenceDescription(
                ReferenceTypeId=reference,
                IsForward=False,
                NodeId=parent.nodeid,
                BrowseName=parent_name.Value.Value,
                DisplayName=parent_display.Value.Value,
                NodeClass=parent_class.Value.Value,
            )
        )
        node.references.append(
            ua.ReferenceDescription(
                ReferenceTypeId=_HAS_TYPE,
                IsForward=True,
                NodeId=typedef,
                NodeClass=ua.NodeClass.VariableType if nodeclass == ua.NodeClass.Variable else ua.NodeClass.ObjectType,
            )
        )
        self.aspace[nodeid] = node
        return node

    def folder(self, path: str, name: str, description: str, parent: NodeData) -> NodeData:
        node = self._new(ua.NodeId(path, self.ns), ua.NodeClass.Object, name, description, parent, _ORGANIZES, _FOLDER)
        self._attribute(node, ua.AttributeIds.EventNotifier, ua.Variant(0, ua.VariantType.Byte))
        return node

    def obj(self, nodeid: str, name: str, description: str, parent: NodeData) -> NodeData:
        node = self._new(
            ua.NodeId(nodeid, self.ns), ua.NodeClass.Object, name, description, parent, _ORGANIZES, _OBJECT_TYPE
        )
        self._attribute(node, ua.AttributeIds.EventNotifier, ua.Variant(0, ua.VariantType.Byte))
        return node

    def variable(
        self,
        nodeid: ua.NodeId,
        name: str,
        description: str,
        parent: NodeData,
        reference: ua.NodeId,
        typedef: ua.NodeId,
        value: ua.DataValue,
        datatype: ua.NodeId,
        access: int,
    ) -> NodeData:
        node = self._new(nodeid, ua.NodeClass.Variable, name, description, parent, reference, typedef)
        node.attributes[ua.AttributeIds.Value] = AttributeValue(value)
        self._attribute(node, ua.AttributeIds.DataType, ua.Variant(datatype, ua.VariantType.NodeId))
        self._attribute(node, ua.AttributeIds.ValueRank, ua.Variant(-1, ua.VariantType.Int32))
        self._attribute(node, ua.AttributeIds.ArrayDimensions, ua.Variant([], ua.VariantType.UInt32, is_array=True))
        self._attribute(node, ua.AttributeIds.AccessLevel, ua.Variant(access, ua.VariantType.Byte))
        self._attribute(node, ua.AttributeIds.UserAccessLevel, ua.Variant(access, ua.VariantType.Byte))
        self._attribute(node, ua.AttributeIds.MinimumSamplingInterval, ua.Variant(0.0, ua.VariantType.Double))
        historizing = self.history and reference != _HAS_PROPERTY
        self._attribute(node, ua.AttributeIds.Historizing, ua.Variant(historizing, ua.VariantType.Boolean))
        return node

    def _property(self, owner: NodeData, name: str, value: ua.Variant, datatype: ua.NodeId) -> None:
        identifier: Any = owner.nodeid.Identifier
        nodeid = ua.NodeId(f"{identifier}#{name}", self.ns)
        self.variable(
            nodeid,
            name,
            "",
            owner,
            _HAS_PROPERTY,
            _PROPERTY_TYPE,
            ua.DataValue(value),
            datatype,
            ua.AccessLevel.CurrentRead.mask,
        )
        # Properties are named in namespace 0 (OPC 10000-8 defines EURange and EngineeringUnits there).
        browse = ua.QualifiedName(name, 0)
        self.aspace[nodeid].attributes[ua.AttributeIds.BrowseName] = AttributeValue(
            ua.DataValue(ua.Variant(browse, ua.VariantType.QualifiedName))
        )
        for reference in owner.references:
            if reference.NodeId == nodeid:
                reference.BrowseName = browse

    # --- the plant ------------------------------------------------------------------------------

    def plant(self, contract: Contract, selected: set[str] | None) -> NodeData:
        """Build the ISA-95 tree and every (selected) point; returns the lowest folder."""
        site = contract.site
        objects = self.aspace[_OBJECTS]
        path = site.enterprise
        node = self.folder(path, site.enterprise, "enterprise", objects)
        levels = [("site", site.site), ("area", site.area), ("line", site.line)]
        for level, name in levels:
            if name:
                path = f"{path}/{name}"
                node = self.folder(path, name, level if level != "site" else site.description or level, node)
        for device in contract.devices:
            keys = [device.key(p) for p in device.points if selected is None or device.key(p) in selected]
            if keys:
                self.device(device, node, set(keys))
        return node

    def device(self, device: Device, parent: NodeData, keys: set[str]) -> None:
        description = " ".join(x for x in (device.description, device.vendor, device.model) if x)
        node = self.obj(device.id, device.id, description, parent)
        names = self.devices.setdefault(device.id, [])
        for point in device.points:
            key = device.key(point)
            if key in keys:
                self.point(device.id, key, point, node)
                names.append(key)

    def point(self, device: str, key: str, point: Point, parent: NodeData) -> None:
        variant = point_variant(point)
        nodeid = ua.NodeId(key, self.ns)
        # No value has arrived yet: Bad_WaitingForInitialData until the first sample.
        initial = ua.DataValue(
            ua.Variant(None, ua.VariantType.Null),
            StatusCode=ua.StatusCode(ua.StatusCodes.BadWaitingForInitialData),
            ServerTimestamp=datetime.now(UTC),
        )
        limits = point.range or point.clamp
        analog = point.type in NUMERIC and bool(point.unit)
        typedef = (ANALOG_UNIT_RANGE if limits else ANALOG_UNIT) if analog else _DATA_VARIABLE
        node = self.variable(
            nodeid,
            point.id,
            point.description,
            parent,
            _HAS_COMPONENT,
            typedef,
            initial,
            DATATYPES[variant],
            self.access,
        )
        if analog:
            code, display, description = units.lookup(point.unit)
            eu = ua.EUInformation(
                NamespaceUri=units.UNECE_NAMESPACE if code != -1 else "",
                UnitId=code,
                DisplayName=ua.LocalizedText(display),
                Description=ua.LocalizedText(description),
            )
            self._property(node, "EngineeringUnits", ua.Variant(eu, ua.VariantType.ExtensionObject), ua.NodeId(887))
            if limits:
                rng = ua.Range(Low=float(limits.low), High=float(limits.high))
                self._property(node, "EURange", ua.Variant(rng, ua.VariantType.ExtensionObject), ua.NodeId(884))
        value = node.attributes[ua.AttributeIds.Value]
        self.points[key] = PointNode(key, nodeid, variant, value, device)
