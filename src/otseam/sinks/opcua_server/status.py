"""Seam's quality as an OPC UA StatusCode, and Seam's point types as Variant types."""

from __future__ import annotations

from otseam.core.records import Quality
from otseam.sinks.opcua_server._ua import ua

STATUS: dict[Quality, ua.StatusCode] = {
    Quality.GOOD: ua.StatusCode(ua.StatusCodes.Good),
    # The last value known, not confirmed in time: the client may use it, knowing so.
    Quality.STALE: ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue),
    Quality.UNCERTAIN: ua.StatusCode(ua.StatusCodes.Uncertain),
    # No answer from the device, or the link to it is down.
    Quality.BAD_COMM: ua.StatusCode(ua.StatusCodes.BadCommunicationError),
    Quality.BAD_CONFIG: ua.StatusCode(ua.StatusCodes.BadConfigurationError),
    Quality.BAD_DEVICE: ua.StatusCode(ua.StatusCodes.BadDeviceFailure),
}
COMMUNICATION_ERROR = STATUS[Quality.BAD_COMM]

VARIANTS: dict[str, ua.VariantType] = {
    "bool": ua.VariantType.Boolean,
    "int16": ua.VariantType.Int16,
    "uint16": ua.VariantType.UInt16,
    "int32": ua.VariantType.Int32,
    "uint32": ua.VariantType.UInt32,
    "int64": ua.VariantType.Int64,
    "uint64": ua.VariantType.UInt64,
    "float32": ua.VariantType.Float,
    "float64": ua.VariantType.Double,
    "string": ua.VariantType.String,
}
#: The DataType node of each Variant type (the VariantType's value is the DataType's numeric id).
DATATYPES: dict[ua.VariantType, ua.NodeId] = {v: ua.NodeId(v.value) for v in VARIANTS.values()}
NUMERIC = frozenset(VARIANTS) - {"bool", "string"}
