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

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asyncua.server.address_space import AddressSpace, AttributeValue, NodeData

from otseam.contract.models import COMPUTED_DEVICE, ComputedPoint, Contract, Device, Point
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
_NODE_ID = ua.AttributeIds.NodeId
_BROWSE_NAME = ua.AttributeIds.BrowseName
_DISPLAY_NAME = ua.AttributeIds.DisplayName
_VALUE = ua.AttributeIds.Value


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
        #: Attributes that many nodes share (see ``_constant``).
        self._shared: dict[tuple[Any, ...], AttributeValue] = {}
        self._initial = ua.DataValue(
            ua.Variant(None, ua.VariantType.Null),
            StatusCode=ua.StatusCode(ua.StatusCodes.BadWaitingForInitialData),
            ServerTimestamp=datetime.now(UTC),
        )
        self._units: dict[str, ua.DataValue] = {}
        self._inverse: dict[tuple[int, Any], Any] = {}
        self._typedefs: dict[tuple[Any, int], Any] = {}
        self._ranges: dict[tuple[float, float], ua.DataValue] = {}
        self._templates: dict[tuple[Any, ...], dict[Any, Any]] = {}
        #: Property values by the identity of their DataValue (each is kept alive by its attribute).
        self._values: dict[int, AttributeValue] = {}
        self._names: dict[tuple[str, int], tuple[Any, Any, AttributeValue, AttributeValue]] = {}

    # --- generic nodes ---------------------------------------------------------------------------

    def _constant(
        self,
        node: NodeData,
        attribute: ua.AttributeIds,
        variant_type: Any,
        key: str | int | float | bool,
        build: Callable[[Any], Any] | None = None,
    ) -> None:
        """An attribute whose value many nodes share (a write mask of 0, a data type, an access level).

        The attribute object itself is shared: this server never writes these attributes (every write
        service is refused, and the sink writes only Value), and a monitored item on one of them only
        registers a callback under its own unique handle. Building and hashing asyncua's objects is
        most of the cost of a node: 100,000 points are 300,000 nodes.
        """
        cache_key = (attribute, key, type(key))
        shared = self._shared.get(cache_key)
        if shared is None:
            value = build(key) if build is not None else key
            shared = self._shared[cache_key] = AttributeValue(
                ua.DataValue(ua.Variant(value, variant_type, is_array=isinstance(value, list)))
            )
        node.attributes[attribute] = shared

    def _template(self, nodeclass: Any, description: str, variable: tuple[Any, int, bool] | None) -> dict[Any, Any]:
        """The attributes every node of one kind shares (class, description, masks; for a variable its
        data type, rank, access and history flags; for an object its event notifier), made once: a
        node's attributes start as a copy of these and add only their own ids and names."""
        key = (int(nodeclass), description, variable)
        template = self._templates.get(key)
        if template is None:
            node = NodeData(ua.NodeId())
            self._constant(node, ua.AttributeIds.NodeClass, ua.VariantType.Int32, int(nodeclass), lambda c: c)
            self._constant(
                node, ua.AttributeIds.Description, ua.VariantType.LocalizedText, description, ua.LocalizedText
            )
            self._constant(node, ua.AttributeIds.WriteMask, ua.VariantType.UInt32, 0)
            self._constant(node, ua.AttributeIds.UserWriteMask, ua.VariantType.UInt32, 0)
            if variable is None:
                self._constant(node, ua.AttributeIds.EventNotifier, ua.VariantType.Byte, 0)
            else:
                datatype, access, historizing = variable
                self._constant(
                    node, ua.AttributeIds.DataType, ua.VariantType.NodeId, datatype.Identifier, lambda _: datatype
                )
                self._constant(node, ua.AttributeIds.ValueRank, ua.VariantType.Int32, -1)
                self._constant(node, ua.AttributeIds.ArrayDimensions, ua.VariantType.UInt32, 0, lambda _: [])
                self._constant(node, ua.AttributeIds.AccessLevel, ua.VariantType.Byte, access)
                self._constant(node, ua.AttributeIds.UserAccessLevel, ua.VariantType.Byte, access)
                self._constant(node, ua.AttributeIds.MinimumSamplingInterval, ua.VariantType.Double, 0.0)
                self._constant(node, ua.AttributeIds.Historizing, ua.VariantType.Boolean, historizing)
            template = self._templates[key] = node.attributes
        return template

    def _new(
        self,
        nodeid: ua.NodeId,
        nodeclass: ua.NodeClass,
        name: str,
        parent: NodeData,
        reference: ua.NodeId,
        typedef: ua.NodeId,
        template: dict[Any, Any],
        namespace: int | None = None,
    ) -> NodeData:
        node = NodeData(nodeid)
        attributes = node.attributes = template.copy()
        attributes[_NODE_ID] = AttributeValue(ua.DataValue(ua.Variant(nodeid, ua.VariantType.NodeId, is_array=False)))
        names = self._names.get((name, namespace)) if namespace is not None else None
        if names is None:
            browse = ua.QualifiedName(name, self.ns if namespace is None else namespace)
            display = ua.LocalizedText(name)
            names = (
                browse,
                display,
                AttributeValue(ua.DataValue(ua.Variant(browse, ua.VariantType.QualifiedName, is_array=False))),
                AttributeValue(ua.DataValue(ua.Variant(display, ua.VariantType.LocalizedText, is_array=False))),
            )
            if namespace is not None:
                # A property's name is the same on every point (EURange...): one set of objects for all.
                self._names[(name, namespace)] = names
        browse, display, attributes[_BROWSE_NAME], attributes[_DISPLAY_NAME] = names
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
        # The reference back to the parent and the one to the type are the same for every sibling: shared
        # (asyncua never changes a ReferenceDescription in place).
        inverse_key = (id(parent), reference.Identifier)
        inverse = self._inverse.get(inverse_key)
        if inverse is None:
            parent_class: Any = parent.attributes[ua.AttributeIds.NodeClass].value
            parent_name: Any = parent.attributes[_BROWSE_NAME].value
            parent_display: Any = parent.attributes[_DISPLAY_NAME].value
            inverse = self._inverse[inverse_key] = ua.ReferenceDescription(
                ReferenceTypeId=reference,
                IsForward=False,
                NodeId=parent.nodeid,
                BrowseName=parent_name.Value.Value,
                DisplayName=parent_display.Value.Value,
                NodeClass=parent_class.Value.Value,
            )
        type_key = (typedef.Identifier, int(nodeclass))
        type_reference = self._typedefs.get(type_key)
        if type_reference is None:
            type_class = ua.NodeClass.VariableType if nodeclass == ua.NodeClass.Variable else ua.NodeClass.ObjectType
            type_reference = self._typedefs[type_key] = ua.ReferenceDescription(
                ReferenceTypeId=_HAS_TYPE, IsForward=True, NodeId=typedef, NodeClass=type_class
            )
        node.references += (inverse, type_reference)
        self.aspace[nodeid] = node
        return node

    def folder(self, path: str, name: str, description: str, parent: NodeData) -> NodeData:
        template = self._template(ua.NodeClass.Object, description, None)
        return self._new(ua.NodeId(path, self.ns), ua.NodeClass.Object, name, parent, _ORGANIZES, _FOLDER, template)

    def obj(self, nodeid: str, name: str, description: str, parent: NodeData) -> NodeData:
        template = self._template(ua.NodeClass.Object, description, None)
        return self._new(
            ua.NodeId(nodeid, self.ns), ua.NodeClass.Object, name, parent, _ORGANIZES, _OBJECT_TYPE, template
        )

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
        namespace: int | None = None,
    ) -> NodeData:
        historizing = self.history and reference != _HAS_PROPERTY
        template = self._template(ua.NodeClass.Variable, description, (datatype, access, historizing))
        node = self._new(nodeid, ua.NodeClass.Variable, name, parent, reference, typedef, template, namespace)
        if reference == _HAS_PROPERTY:
            # A property's value never changes (the same EngineeringUnits for every point in m3/h...):
            # one attribute object per value, shared like the constants above.
            shared = self._values.get(id(value))
            if shared is None:
                shared = self._values[id(value)] = AttributeValue(value)
            node.attributes[_VALUE] = shared
        else:
            node.attributes[_VALUE] = AttributeValue(value)
        return node

    def _property(self, owner: NodeData, name: str, value: ua.DataValue, datatype: ua.NodeId) -> None:
        identifier: Any = owner.nodeid.Identifier
        # Properties are named in namespace 0 (OPC 10000-8 defines EURange and EngineeringUnits there).
        self.variable(
            ua.NodeId(f"{identifier}#{name}", self.ns),
            name,
            "",
            owner,
            _HAS_PROPERTY,
            _PROPERTY_TYPE,
            value,
            datatype,
            ua.AccessLevel.CurrentRead.mask,
            namespace=0,
        )

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
        computed = [c for c in contract.computed if selected is None or c.key in selected]
        if computed:
            self.computed(contract, computed, node)
        return node

    def computed(self, contract: Contract, points: list[ComputedPoint], parent: NodeData) -> None:
        """The edge's computed points under a virtual device ``computed``, each with its lineage as
        properties (Formula, Inputs, Sources, FormulaOwner), so an IT client sees what a number is made
        of and who answers for the formula."""
        from otseam.contract.formulas.lineage import lineage

        origins = lineage(contract)
        node = self.obj(COMPUTED_DEVICE, COMPUTED_DEVICE, "points computed on the edge from other points", parent)
        names = self.devices.setdefault(COMPUTED_DEVICE, [])
        for computed in points:
            as_point = Point(
                id=computed.id,
                address=COMPUTED_DEVICE,
                type=computed.type,
                unit=computed.unit,
                range=computed.range,
                description=computed.description,
            )
            self.point(COMPUTED_DEVICE, computed.key, as_point, node)
            names.append(computed.key)
            origin = origins.get(computed.key)
            if origin is None:
                continue
            variable = self.aspace[self.points[computed.key].nodeid]
            for name, text in (
                ("Formula", origin.formula),
                ("Inputs", ", ".join(origin.inputs)),
                ("Sources", ", ".join(origin.sources)),
                ("FormulaOwner", origin.owner or ""),
            ):
                self._property(variable, name, ua.DataValue(ua.Variant(text, ua.VariantType.String)), ua.NodeId(12))

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
        initial = self._initial
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
            eu = self._units.get(point.unit)
            if eu is None:
                code, display, description = units.lookup(point.unit)
                info = ua.EUInformation(
                    NamespaceUri=units.UNECE_NAMESPACE if code != -1 else "",
                    UnitId=code,
                    DisplayName=ua.LocalizedText(display),
                    Description=ua.LocalizedText(description),
                )
                eu = self._units[point.unit] = ua.DataValue(ua.Variant(info, ua.VariantType.ExtensionObject))
            self._property(node, "EngineeringUnits", eu, ua.NodeId(887))
            if limits:
                bounds = (float(limits.low), float(limits.high))
                rng = self._ranges.get(bounds)
                if rng is None:
                    rng = self._ranges[bounds] = ua.DataValue(
                        ua.Variant(ua.Range(Low=bounds[0], High=bounds[1]), ua.VariantType.ExtensionObject)
                    )
                self._property(node, "EURange", rng, ua.NodeId(884))
        value = node.attributes[ua.AttributeIds.Value]
        self.points[key] = PointNode(key, nodeid, variant, value, device)
