"""One folder per protocol the monitor reads: its parser (a reassembled byte stream in, messages out),
its analyzer (what the engine calls, see ``base.py``), and what else is specific to it (the Modbus fast
path for capture files). A new protocol is a new folder and one line in ``ANALYZERS``.
"""

from __future__ import annotations

from otseam.monitor.analyzers.base import Analyzer, ConnectionAnalysis
from otseam.monitor.analyzers.modbus.analyzer import ModbusAnalyzer
from otseam.monitor.analyzers.opcua.analyzer import OpcUaAnalyzer

#: In the order content recognition tries them, for connections on ports none of them claims.
ANALYZERS: tuple[Analyzer, ...] = (ModbusAnalyzer(), OpcUaAnalyzer())

__all__ = ["ANALYZERS", "Analyzer", "ConnectionAnalysis"]
