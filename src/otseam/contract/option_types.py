"""Field types the plugins' ``Options`` models share, so every plugin reads a duration or a file alike."""

from __future__ import annotations

import math
import os
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo

from otseam.contract.units import parse_duration


class PluginOptions(BaseModel):
    """The base of every plugin's ``Options``: a misspelt key is an error, never a silent default."""

    # allow_inf_nan: no option of any plugin means anything as NaN or infinity.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)


def _seconds(value: Any) -> float:
    """A number of seconds or a duration with a unit ("30s", "500ms")."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text such as '30s' or '500ms', not true/false")
    seconds = float(value) if isinstance(value, int | float) else parse_duration(value)
    if not math.isfinite(seconds):
        raise ValueError("a duration must be finite")
    return seconds


#: Seconds, written as a number or as "500ms", "30s", "5min".
Seconds = Annotated[float, BeforeValidator(_seconds)]


def _text(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


#: Text that is not empty (a path, a name, a host).
Text = Annotated[str, Field(strict=True), AfterValidator(_text)]


def environment_checked(info: ValidationInfo) -> bool:
    """Whether to check what lies outside the contract (files, environment variables).

    Yes when a plugin starts and when a contract file is checked on disk (`seam check`, `seam run`);
    no for contract text checked on its own (``parse_text``), which may be meant for another machine."""
    context = info.context
    return not (isinstance(context, dict) and context.get("environment") is False)


def _existing_file(value: str, info: ValidationInfo) -> str:
    """Files the plugin reads when it starts, relative to the contract file's directory (the context's
    ``base``) unless absolute. Returned resolved, so the plugin opens the very file checked here; a
    missing one is reported now, as `seam run` would."""
    context = info.context if isinstance(info.context, dict) else {}
    base = context.get("base")
    # Made absolute: from a relative base (`seam run seam-demo/seam.yaml`), a plugin joining it to the
    # contract's directory again would otherwise open seam-demo/seam-demo/...
    path = value if not base or os.path.isabs(value) else os.path.abspath(os.path.join(str(base), value))
    if not environment_checked(info):
        return path
    if not os.path.isfile(path):
        raise ValueError(f"no file at {path!r} (seam run on this machine would refuse it)")
    if not os.access(path, os.R_OK):
        raise ValueError(f"the file {path!r} is not readable by this user")
    return path


#: A file that must exist and be readable where the contract runs; relative to the contract file.
ExistingFile = Annotated[str, Field(strict=True), AfterValidator(_text), AfterValidator(_existing_file)]


#: A whole number; its range is given with ``Field(default, ge=..., le=...)``. true/false and "12" are refused.
Whole = Annotated[int, Field(strict=True)]

#: true or false, nothing else ("yes" and 1 are refused).
Flag = Annotated[bool, Field(strict=True)]
