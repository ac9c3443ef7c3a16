"""A small, fast block-style YAML writer for the sim's contract.

ruamel.yaml needs about a third of a second per thousand points; a scale-mode contract has up to
hundreds of thousands. The contract is plain data (mappings, lists, strings, numbers, booleans), so
this writer handles exactly that. Strings that could be read back as anything but the same string are
written double-quoted, with escapes for what YAML does not allow literally.
"""

from __future__ import annotations

import re
from typing import Any

_PLAIN = re.compile(r"^[A-Za-z](?:[A-Za-z0-9 _./()+,%'-]|:(?=[^ ]))*(?<![ :])\Z")
_UNIT_VALUE = re.compile(r"^\d+(?:\.\d+)?(?:ms|s|min|h|d|/s|/min|/h|/d|GiB|MiB|KiB|GB|MB|KB|B)\Z")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}


def scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    if (_PLAIN.match(text) and text.lower() not in _RESERVED) or _UNIT_VALUE.match(text):
        return text
    return _quoted(text)


def _printable(char: str) -> bool:
    """Characters YAML lets stand for themselves inside double quotes."""
    code = ord(char)
    return (
        0x20 <= code <= 0x7E
        or 0xA0 <= code <= 0xD7FF
        or (0xE000 <= code <= 0xFFFD and code != 0xFEFF)
        or 0x10000 <= code <= 0x10FFFF
    )


def _quoted(text: str) -> str:
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif _printable(char):
            out.append(char)
        elif ord(char) <= 0xFF:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(f"\\u{ord(char):04x}")
    out.append('"')
    return "".join(out)


def _lines(node: Any, indent: int, out: list[str]) -> None:
    pad = " " * indent
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, dict | list) and value:
                out.append(f"{pad}{scalar(key)}:")
                _lines(value, indent + 2, out)
            elif isinstance(value, dict | list):
                out.append(f"{pad}{scalar(key)}: {'{}' if isinstance(value, dict) else '[]'}")
            else:
                out.append(f"{pad}{scalar(key)}: {scalar(value)}")
        return
    for item in node:
        if isinstance(item, dict | list) and item:
            first = len(out)
            _lines(item, indent + 2, out)
            out[first] = f"{pad}- {out[first][indent + 2 :]}"
        else:
            out.append(f"{pad}- {scalar(item)}")


def dump(data: dict[str, Any]) -> str:
    out: list[str] = []
    _lines(data, 0, out)
    return "\n".join(out) + "\n"
