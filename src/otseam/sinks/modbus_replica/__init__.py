"""The ``modbus_replica`` sink: a read-only Modbus/TCP server on the IT side (see README.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from otseam.sinks.modbus_replica.options import Options, parse_listen

if TYPE_CHECKING:
    from otseam.contract.models import SinkSpec
    from otseam.core.plugins import PluginContext
    from otseam.replica.modbus import ModbusReplica

__all__ = ["Options", "create"]


def create(spec: SinkSpec, context: PluginContext) -> ModbusReplica:
    """Builds the register map from the contract (refused here if two points overlap); binds on start."""
    from otseam.audit.log import AuditLog, authority_dir
    from otseam.replica.modbus import ModbusReplica

    options = Options.model_validate(spec.options)
    host, port = parse_listen(options.listen)
    layout = {"quality_policy": options.quality_policy, "units": options.units, "remap": options.remap}
    # Each refused write is a record of the node's audit log (and from it an event in the journal).
    audit = AuditLog(authority_dir(context.data_dir), node=context.node, journal=context.journal, clock=context.clock)
    return ModbusReplica(context.contract, context.journal, host, port, layout, audit=audit)
