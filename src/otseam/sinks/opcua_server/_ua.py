"""asyncua's ``ua`` namespace, loosely typed (as in the OPC UA driver: star imports without ``__all__``
read as "not exported" by strict mypy, and NewType integers in every constructor)."""

from __future__ import annotations

import importlib
from typing import Any

ua: Any = importlib.import_module("asyncua.ua")
