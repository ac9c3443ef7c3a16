"""Engineering units as OPC UA clients expect them: UNECE Recommendation 20 common codes (OPC 10000-8).

A contract writes units as people do (``degC``, ``m3/h``, ``bar``). Clients such as historians and MES
look units up by ``EUInformation.UnitId``, which OPC 10000-8 derives from the UNECE common code: the
code's characters packed big-endian into an Int32 (``CEL`` -> 0x43454C). A unit this table does not
know is still served, with its text as display name and UnitId -1 ("no UNECE code"), so a person sees
it and a program does not mistake it for a coded unit.
"""

from __future__ import annotations

#: OPC 10000-8's namespace for UNECE-coded units.
UNECE_NAMESPACE = "http://www.opcfoundation.org/UA/units/un/cefact"

#: Contract unit text (spaces removed, case kept: "MW" is not "mW") -> (common code, display name, description).
_UNITS: dict[str, tuple[str, str, str]] = {}


def _add(code: str, display: str, description: str, *spellings: str) -> None:
    for text in (display, *spellings):
        _UNITS[text.replace(" ", "")] = (code, display, description)


_add("CEL", "°C", "degree Celsius", "degC", "degc", "Celsius", "celsius", "C")
_add("FAH", "°F", "degree Fahrenheit", "degF", "degf", "fahrenheit")
_add("KEL", "K", "kelvin", "kelvin")
_add("BAR", "bar", "bar", "bar(g)", "barg")
_add("MBR", "mbar", "millibar")
_add("PAL", "Pa", "pascal")
_add("KPA", "kPa", "kilopascal")
_add("MPA", "MPa", "megapascal")
_add("PS", "psi", "pound-force per square inch")
_add("P1", "%", "percent", "percent", "pct", "%RH")
_add("MTR", "m", "metre", "meter", "metre")
_add("MMT", "mm", "millimetre")
_add("CMT", "cm", "centimetre")
_add("MTQ", "m³", "cubic metre", "m3")
_add("LTR", "l", "litre", "liter", "litre", "L")
_add("MLT", "ml", "millilitre", "mL")
_add("MQH", "m³/h", "cubic metre per hour", "m3/h", "m3h")
_add("MQS", "m³/s", "cubic metre per second", "m3/s")
_add("L2", "l/min", "litre per minute", "lpm", "L/min")
_add("KGM", "kg", "kilogram")
_add("TNE", "t", "tonne")
_add("KGS", "kg/s", "kilogram per second")
_add("WTT", "W", "watt")
_add("KWT", "kW", "kilowatt")
_add("MAW", "MW", "megawatt")
_add("KWH", "kWh", "kilowatt hour")
_add("AMP", "A", "ampere")
_add("4K", "mA", "milliampere")
_add("VLT", "V", "volt")
_add("HTZ", "Hz", "hertz")
_add("SEC", "s", "second", "sec")
_add("MIN", "min", "minute")
_add("HUR", "h", "hour")
_add("RPM", "r/min", "revolutions per minute", "rpm")
_add("MTS", "m/s", "metre per second")


def unit_id(code: str) -> int:
    """OPC 10000-8's UnitId of a UNECE common code: its characters packed big-endian."""
    value = 0
    for char in code.encode("ascii"):
        value = (value << 8) | char
    return value


def lookup(text: str) -> tuple[int, str, str]:
    """(UnitId, display name, description) for a contract unit; UnitId -1 when no UNECE code is known."""
    found = _UNITS.get(text.replace(" ", ""))
    if found is None:
        return -1, text, ""
    code, display, description = found
    return unit_id(code), display, description
