"""asyncua's ``ua`` namespace, loosely typed.

It gathers its names with star imports and no ``__all__``, which strict mypy reads as "not exported",
and its constructors take NewType integers (``Int16``, ``UInt32``). Typing it as ``Any`` here, once,
keeps the driver's own code strictly checked without a cast at every call.
"""

from __future__ import annotations

import importlib
from typing import Any

ua: Any = importlib.import_module("asyncua.ua")
#: asyncua's binary codec, for the requests the driver sends without asyncua's session methods.
ua_binary: Any = importlib.import_module("asyncua.ua.ua_binary")
