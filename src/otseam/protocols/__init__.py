"""Protocol code shared by every part that speaks or reads a protocol (drivers, servers, the monitor).

One package per protocol; nothing here does I/O. Sparkplug's codec lives in ``protocols.sparkplug``.
"""
