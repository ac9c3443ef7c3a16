"""A read-only Modbus/TCP server answering from replicated values (IT side of a diode).

It reuses the simulator's MBAP server and register bank (otseam.sim); what it adds is the policy:

* every write function (5, 6, 15, 16, 22, 23) is answered with exception 01, illegal function, and
  recorded as a ``replica.write_attempt`` record of the node's hash-chained audit log (``audit`` given,
  as the sink always does; it reaches the IT journal as an ``audit.replica.write_attempt`` event),
  else as a plain ``replica.write_attempt`` event in the journal: the replica has no path to the plant,
  and an attempt to write through it is worth knowing about;
* a read touching a point whose latest quality is not good, or that has no value yet, or while the
  diode link is down, is answered with exception 04, server device failure: Modbus has no quality
  flag, and a stale value served as if fresh is the one thing a replica must not do. With
  ``quality_policy: last-value`` the last value is served instead (for clients that cannot cope with
  exceptions); a point that never had a value is still exception 04.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from otseam.audit.log import AuditLog
from otseam.audit.refusals import Refusals
from otseam.contract.models import Contract
from otseam.core.plugins import JournalWriter
from otseam.core.records import Batch, Event, Record, Sample, Severity
from otseam.protocols.modbus.tables import ILLEGAL_FUNCTION, READ_TABLE, SERVER_DEVICE_FAILURE, WRITE_FUNCTIONS
from otseam.protocols.modbus.tables import exception_pdu as exception
from otseam.replica.modbus.layout import LayoutError, Slot, build_layout
from otseam.sim.bank import RegisterBank, Unit
from otseam.sim.modbus_server import ModbusTcpServer

log = logging.getLogger(__name__)

_READ_TABLES = READ_TABLE
POLICIES = ("exception", "last-value")


class ReplicaBank(RegisterBank):
    def __init__(self, on_write_attempt: Callable[[int, bytes], None]) -> None:
        super().__init__()
        self.on_write_attempt = on_write_attempt
        #: (unit, table) → True where the point there may not be served now.
        self.unavailable: dict[tuple[int, str], np.ndarray[Any, np.dtype[np.bool_]]] = {}

    def handle_pdu(self, unit_id: int, pdu: bytes) -> bytes | None:
        if not pdu or unit_id not in self.units:
            return None
        function = pdu[0]
        if function in WRITE_FUNCTIONS:
            self.on_write_attempt(unit_id, pdu)
            return exception(function, ILLEGAL_FUNCTION)
        table = _READ_TABLES.get(function)
        if table is not None and len(pdu) == 5:
            mask = self.unavailable.get((unit_id, table))
            address = int.from_bytes(pdu[1:3], "big")
            quantity = int.from_bytes(pdu[3:5], "big")
            if mask is not None and quantity and bool(mask[address : address + quantity].any()):
                return exception(function, SERVER_DEVICE_FAILURE)
        return super().handle_pdu(unit_id, pdu)


class ModbusReplica:
    """Also a Sink (start / deliver / close), so the sink runner can feed it from an IT journal cursor."""

    def __init__(
        self,
        contract: Contract,
        journal: JournalWriter | None,
        host: str = "127.0.0.1",
        port: int = 5020,
        options: dict[str, Any] | None = None,
        *,
        audit: AuditLog | None = None,
    ) -> None:
        options = dict(options or {})
        policy = options.pop("quality_policy", "exception")
        if policy not in POLICIES:
            raise LayoutError(f"replica quality_policy {policy!r}: use 'exception' or 'last-value'")
        self.policy = policy
        self.slots = build_layout(contract, options)
        self._by_key = {s.key: s for s in self.slots}
        self.journal = journal
        self.refusals = Refusals(audit, "replica/modbus") if audit is not None else None
        self.bank = ReplicaBank(self._write_attempt)
        self._build_units()
        self.server = ModbusTcpServer(self.bank, host, port, answer_unknown_units=False)
        self.write_attempts = 0
        self.link_up = True
        self._quality_bad: set[str] = set(self._by_key)  # no value yet

    def _build_units(self) -> None:
        sizes: dict[int, dict[str, int]] = {}
        for slot in self.slots:
            table_sizes = sizes.setdefault(slot.unit, {"co": 0, "di": 0, "hr": 0, "ir": 0})
            table_sizes[slot.table] = max(table_sizes[slot.table], slot.address.address + slot.size)
        for unit_id, s in sizes.items():
            unit = Unit.sized(unit_id, coils=s["co"], discrete_inputs=s["di"], holding=s["hr"], inputs=s["ir"])
            self.bank.add(unit)
            for table, size in s.items():
                self.bank.unavailable[(unit_id, table)] = np.zeros(size, dtype=np.bool_)
        for slot in self.slots:
            self._mark(slot, True)

    @property
    def port(self) -> int:
        return self.server.port

    async def start(self) -> None:
        await self.server.start()

    async def close(self) -> None:
        await self.server.stop()
        if self.refusals is not None:
            await asyncio.to_thread(self.refusals.close)

    async def deliver(self, batch: Batch) -> None:
        self.apply(batch.records)

    def apply(self, records: list[Record]) -> None:
        for record in records:
            if isinstance(record, Sample):
                slot = self._by_key.get(record.point)
                if slot is not None:
                    self._set(slot, record)
            elif record.kind == "diode.link":
                self.link_up = record.data.get("state") == "up"
                for slot in self.slots:
                    self._mark(slot, self._should_refuse(slot.key))

    def _set(self, slot: Slot, sample: Sample) -> None:
        unit = self.bank.units[slot.unit]
        written = True
        if slot.address.is_bit_table or slot.address.bit is not None:
            bit = slot.bit(sample.value)
            if bit is None:
                written = False
            elif slot.address.is_bit_table:
                unit.set_bit(slot.table, slot.address.address, bit)
            else:
                unit.set_register_bit(slot.table, slot.address.address, slot.address.bit or 0, bit)
        else:
            registers = slot.registers(sample.value)
            if registers is None:
                written = False
            else:
                unit.set_registers(slot.table, slot.address.address, registers)
        if written and (sample.quality.is_good or self.policy == "last-value"):
            self._quality_bad.discard(slot.key)
        elif self.policy == "last-value" and slot.key not in self._quality_bad:
            pass  # nothing new to show: keep serving the last value
        else:
            self._quality_bad.add(slot.key)
        self._mark(slot, self._should_refuse(slot.key))

    def _should_refuse(self, key: str) -> bool:
        if key in self._quality_bad:
            return True
        return self.policy == "exception" and not self.link_up

    def _mark(self, slot: Slot, refuse: bool) -> None:
        mask = self.bank.unavailable[(slot.unit, slot.table)]
        mask[slot.address.address : slot.address.address + slot.size] = refuse

    def _write_attempt(self, unit: int, pdu: bytes) -> None:
        self.write_attempts += 1
        address = int.from_bytes(pdu[1:3], "big") if len(pdu) >= 3 else None
        message = (
            f"write attempt on the read-only Modbus replica refused: function {pdu[0]}, unit {unit}, "
            f"address {address}, from {self.server.client or 'an unknown client'}; this replica has no path to the plant"
        )
        log.warning("%s", message)
        client = self.server.client
        data = {
            "via": "modbus-replica",
            "client": client,
            "function": pdu[0],
            "unit": unit,
            "address": address,
            "pdu": pdu[:16].hex(),
        }
        if self.refusals is not None:
            # Modbus/TCP carries no user: the actor is the client's address.
            self.refusals.record("replica.write_attempt", client or "modbus client", "replica/modbus", data, message)
        elif self.journal is not None:
            self.journal.append(
                [Event(time.time(), "replica.write_attempt", "replica/modbus", Severity.HIGH, message, data)]
            )
