"""Modbus: the application protocol's tables (``tables``) and its two framings (``framing``: MBAP for
Modbus/TCP, unit + PDU + CRC-16 for RTU).

Used by the driver (``otseam.drivers.modbus``), the simulator (``otseam.sim``), the read-only replica
(``otseam.replica.modbus``) and the passive monitor (``otseam.monitor.analyzers.modbus``), so that a
function code, an exception code or a frame layout is written down once.
"""
