"""The contract reference, generated from the pydantic models: every key, its type, its default and what
it means (the ``#:`` comment above the field in the source), for the contract and for each plugin's
``options``.

``python -m otseam.contract.reference docs/contract-reference.md`` rewrites the page; a test fails when
the page and the models differ, so the reference cannot drift from the code.
"""

from __future__ import annotations

import ast
import enum
import importlib
import inspect
import re
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from otseam.contract import models

PLUGIN_KINDS = ("drivers", "sources", "sinks")

#: What a key means, where the model has no ``#:`` comment for it (keyed "Model.field").
MEANINGS: dict[str, str] = {
    "Contract.version": "The contract format's version; always 1 for now.",
    "Contract.site": "Where this interface is: the ISA-95 path that roots every topic and browse path.",
    "Contract.people": "Everyone named anywhere else: owners, approvers, console users.",
    "Contract.zones": "The security zones (IEC 62443-3-2) the devices and nodes sit in.",
    "Contract.conduits": "The paths between zones, with direction, protocols and ports: nothing else may cross.",
    "Contract.nodes": "The machines Seam runs on; `seam run --node ID` runs what is placed on one of them.",
    "Contract.devices": "The PLCs and servers polled, their limits and their points.",
    "Contract.sources": "Parts that bring records in without polling a device: the diode's receiving end, "
    "the command path, passive capture, a Sparkplug host.",
    "Contract.sinks": "Where records go: historians, the diode's sending end, replicas, MQTT, PostgreSQL.",
    "Contract.commands": "The only writes into the plant Seam may make, each with its range, rate, window "
    "and approvers.",
    "Contract.objectives": "Why the interface exists, and what success and failure look like to each side.",
    "Contract.computed": "Points computed from other points on the node (windows, counters, rates, conditions).",
    "Contract.journal": "Limits of each node's durable journal.",
    "Contract.control": "The console's banner, session limits and second factor.",
    "Site.enterprise": "ISA-95 enterprise.",
    "Site.site": "ISA-95 site.",
    "Site.area": "ISA-95 area.",
    "Site.line": "ISA-95 line or cell.",
    "Person.id": "How the rest of the contract names this person.",
    "Person.name": "Full name, as shown in the console and the interface document.",
    "Person.side": "Which team the person belongs to: the plant (`ot`), IT (`it`) or the interface (`seam`).",
    "Person.role": "Their job, as command approvers are matched against it (e.g. `control engineer`).",
    "Person.contact": "Phone, e-mail or rota: how to reach them when the interface needs them.",
    "Zone.id": "How devices, nodes and conduits name the zone.",
    "Zone.name": "A name people recognise.",
    "Zone.level": "Purdue level (0-5; 3.5 is the IT/OT DMZ).",
    "Zone.owner": "The person accountable for the zone.",
    "Conduit.id": "How sources, sinks and commands name the conduit.",
    "Conduit.from": "The zone the conduit starts in (for one-way conduits, the sending side).",
    "Conduit.to": "The zone it ends in.",
    "Conduit.direction": "`one-way` (a diode: nothing comes back) or `two-way`.",
    "Conduit.protocols": "The protocols allowed on it.",
    "Conduit.ports": "The TCP or UDP ports allowed on it.",
    "Conduit.owner": "The person accountable for the conduit.",
    "Node.id": "The node's name, given to `seam run --node`.",
    "Node.zone": "The zone the machine sits in.",
    "Device.id": "The device's name: the first part of every point key (`device/point`).",
    "Device.driver": "The driver that polls it: `modbus`, `opcua` or `generator`.",
    "Device.unit": "Modbus unit id (slave address).",
    "Device.zone": "The zone the device sits in.",
    "Device.owner": "The person accountable for the device (normally the OT side).",
    "Device.vendor": "Manufacturer, for the inventory and the interface document.",
    "Device.model": "Model, for the inventory and the interface document.",
    "Device.poll": "How often the device is read.",
    "Device.constraints": "What the device can bear: request rate, pauses, connections, restarts.",
    "Device.points": "The values read from the device.",
    "Constraints.max_request_rate": "Most requests per second Seam may send to the device.",
    "Constraints.pause_between_requests": "Least time between two requests.",
    "Constraints.pause_after_connect": "Time to wait after connecting before the first request.",
    "Constraints.timeout": "How long to wait for an answer.",
    "Constraints.max_connections": "Most connections Seam may hold open to the device.",
    "Constraints.restart_tolerance": "How a restart of the device is treated.",
    "Constraints.patch_window": "When the device may be restarted or patched.",
    "Constraints.notes": "Anything else the device's owner wants known.",
    "MonitorPolicy.allowed_masters": "Hosts allowed to talk to the device, beyond the Seam node.",
    "MonitorPolicy.allowed_functions": "Protocol functions allowed (Modbus function codes).",
    "Point.id": "The point's name: the second part of its key (`device/point`).",
    "Point.type": "The value's type in the device: `bool`, `int16`, `uint16`, `int32`, `uint32`, `float32`, "
    "`float64`, `string`...",
    "Point.byte_order": "Word and byte order of multi-register values: `ABCD`, `CDAB`, `BADC`, `DCBA`.",
    "Point.scale": "Raw to engineering units: `value = raw * factor + offset`.",
    "Point.clamp": "Clamp values outside `range` to it (otherwise they are marked out of range).",
    "Point.unit": "Engineering unit (UCUM or plain text).",
    "Point.deadband": "Changes smaller than this are not recorded as new values.",
    "Point.alarms": "Limits on the value, with hysteresis and delay.",
    "Point.writable": "The point may be the target of a declared command. Reading never needs it.",
    "Scaling.factor": "Multiplier.",
    "Scaling.offset": "Added after the multiplier.",
    "Range.low": "Lowest valid value.",
    "Range.high": "Highest valid value.",
    "Deadband.absolute": "In engineering units.",
    "Deadband.percent": "In percent of the point's range.",
    "Alarm.id": "The alarm's name.",
    "Alarm.kind": "`high`, `low`, `high-high`, `low-low`...",
    "Alarm.limit": "The limit, in engineering units.",
    "Alarm.hysteresis": "How far back past the limit the value must go to clear.",
    "Alarm.delay": "How long the condition must hold before it is raised.",
    "Alarm.severity": "How urgent.",
    "Alarm.message": "What the alarm says to the person who sees it.",
    "SourceSpec.id": "The source's name.",
    "SourceSpec.owner": "The person accountable for it.",
    "SourceSpec.options": "The source type's own options (see Plugin options below).",
    "SinkSpec.id": "The sink's name (its cursor in the journal).",
    "SinkSpec.owner": "The person accountable for it.",
    "SinkSpec.options": "The sink type's own options (see Plugin options below).",
    "Command.id": "The command's name, given to `seam command request`.",
    "Command.description": "What the change is for, as the approvers read it.",
    "Command.range": "The values that may be written (within the point's own range).",
    "Command.conduit": "The conduit the command crosses (two-way, into the OT node's zone).",
    "Command.approvers": "Who must approve: one person of each listed side and role, never the requester.",
    "Command.owner": "The person accountable for the command (normally the OT side).",
    "ApproverSpec.side": "The approver's side.",
    "ApproverSpec.role": "The approver's role, exactly as in `people`.",
    "Objective.id": "The objective's name.",
    "Objective.success": "What success looks like to each side.",
    "Objective.failure": "What failure looks like to each side.",
    "Objective.owner": "The person accountable for it.",
    "SideView.ot": "As the OT side sees it.",
    "SideView.it": "As the IT side sees it.",
    "ComputedPoint.id": "The point's name; its key is `computed/<id>`.",
    "ComputedPoint.expression": "An arithmetic or logical expression over `inputs`.",
    "ComputedPoint.window": "An aggregate of one point over a window of time.",
    "ComputedPoint.counter": "A total, run time or count that survives restarts.",
    "ComputedPoint.rate": "The rate of change of one point.",
    "ComputedPoint.condition": "An alarm over several points.",
    "ComputedPoint.type": "The result's type.",
    "ComputedPoint.unit": "The result's engineering unit.",
    "ComputedPoint.range": "The result's valid range.",
    "ComputedPoint.deadband": "Changes smaller than this are not recorded as new values.",
    "ComputedPoint.heartbeat": "Report at least this often even without a change.",
    "ComputedPoint.alarms": "Limits on the result, with hysteresis and delay.",
    "ComputedPoint.consumers": "Who uses the value on the IT side.",
    "WindowSpec.function": "The aggregate: `avg`, `min`, `max`, `count`, `stddev`, `first`, `last`, `sum`.",
    "WindowSpec.length": "The window's length.",
    "CounterSpec.of": "The input point's key.",
    "RateSpec.of": "The input point's key.",
    "RateSpec.per": "The time unit of the result (`1s`, `1min`, `1h`).",
    "ConditionSpec.when": "The expression that raises the alarm.",
    "ConditionSpec.clear": "The expression that clears it (default: `when` is false).",
    "ConditionSpec.delay": "How long `when` must hold before the alarm is raised.",
    "ConditionSpec.clear_delay": "How long `clear` must hold before it clears.",
    "ConditionSpec.severity": "`info`, `low`, `medium`, `high` or `critical`.",
    "ConditionSpec.message": "What the alarm says to the person who sees it.",
    "Journal.max_size": "Most disk the journal may use; the oldest segments go first.",
    "Journal.max_age": "Oldest record kept.",
}


#: Keys that mean the same wherever they appear in the contract's own models.
GENERIC: dict[str, str] = {
    "description": "Free text for people: the console and the interface document show it.",
    "owner": "The person accountable for it.",
}


def _comments(cls: type) -> dict[str, str]:
    """Field name → the ``#:`` comment lines just above it in the class body (a field declared on the
    line right after a commented one shares its comment when the comment names it: ``cert``, ``key``,
    ``ca`` under "This node's certificate and key, and the CA")."""
    try:
        source, _ = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return {}
    text = inspect.cleandoc("".join(source)) if source and source[0].startswith(" ") else "".join(source)
    tree = ast.parse(text)
    lines = text.splitlines()
    found: dict[str, str] = {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    previous: tuple[str, int] | None = None
    for node in body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            comment: list[str] = []
            index = node.lineno - 2
            while index >= 0 and lines[index].strip().startswith("#:"):
                comment.insert(0, lines[index].strip()[2:].strip())
                index -= 1
            text_of = " ".join(comment)
            name = node.target.id
            above = found[previous[0]] if previous is not None and previous[1] == node.lineno - 1 else ""
            if not text_of and above and re.search(rf"\b{re.escape(name)}\b", above, re.IGNORECASE):
                text_of = above
            found[node.target.id] = text_of
            previous = (node.target.id, node.end_lineno or node.lineno)
        else:
            previous = None
    return found


def _annotations(cls: type) -> dict[str, str]:
    """Field name → its annotation as written in the source."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        for name, value in getattr(klass, "__annotations__", {}).items():
            out[name] = value if isinstance(value, str) else getattr(value, "__name__", str(value))
    return out


def _type_text(annotation: str) -> str:
    # Annotated[...] carries validators; the reader wants the type. Keep it short and literal.
    text = annotation.replace("typing.", "")
    if text.startswith("Annotated["):
        depth, end = 0, len(text)
        for index, char in enumerate(text[len("Annotated[") :], start=len("Annotated[")):
            if char in "[(":
                depth += 1
            elif char in "])":
                depth -= 1
            elif char == "," and depth == 0:
                end = index
                break
        rest = text[end:]
        text = text[len("Annotated[") : end] + (rest[rest.rfind("]") + 1 :] if "]" in rest else "")
    return text.replace("|", "\\|")


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        try:
            value: Any = field.default_factory()  # type: ignore[call-arg]
        except TypeError:
            return "(computed)"
    else:
        value = field.default
    if value is None or value is PydanticUndefined:
        return "—"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, BaseModel):
        return "(defaults below)"
    if isinstance(value, str):
        return f"`{value!r}`" if value else "`''`"
    return f"`{value!r}`".replace("|", "\\|")


def _nested(annotation: Any) -> Iterator[type]:
    """The models and enums a field's type refers to."""
    origin = typing.get_origin(annotation)
    if origin is not None or isinstance(annotation, types.UnionType):
        for arg in typing.get_args(annotation):
            yield from _nested(arg)
        return
    if isinstance(annotation, type) and (issubclass(annotation, BaseModel) or issubclass(annotation, enum.Enum)):
        yield annotation


def _model_section(cls: type[BaseModel], title: str, level: str = "##", more: str = "") -> list[str]:
    doc = inspect.getdoc(cls) or ""
    if cls.__doc__ is None or doc == inspect.getdoc(BaseModel) or doc.startswith("Usage docs"):
        doc = ""
    comments = _comments(cls)
    written = _annotations(cls)
    out = [f"{level} {title}", ""]
    if doc:
        out += [doc.split("\n\n")[0].replace("\n", " "), ""]
    if more:
        out += [more, ""]
    out += ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, field in cls.model_fields.items():
        key = field.alias or name
        kind = _type_text(written.get(name, str(field.annotation)))
        meaning = (
            comments.get(name)
            or field.description
            or MEANINGS.get(f"{cls.__name__}.{key}")
            or MEANINGS.get(f"{cls.__name__}.{name}")
            or (GENERIC.get(name, "") if cls.__module__ == models.__name__ else "")
        )
        meaning = meaning.replace("|", "\\|")
        out.append(f"| `{key}` | `{kind}` | {_default(field)} | {meaning} |")
    return [*out, ""]


def _enum_section(cls: type[enum.Enum]) -> list[str]:
    values = ", ".join(f"`{member.value}`" for member in cls)
    return [f"## `{cls.__name__}`", "", f"One of: {values}.", ""]


def _contract_models() -> list[type]:
    """Contract, then every model and enum it refers to, depth first in field order."""
    order: list[type] = []
    stack: list[type] = [models.Contract]
    while stack:
        cls = stack.pop(0)
        if cls in order:
            continue
        order.append(cls)
        if issubclass(cls, BaseModel):
            found = [t for f in cls.model_fields.values() for t in _nested(f.annotation) if t not in order]
            stack = list(dict.fromkeys(found)) + stack
    return order


def _plugins(root: Path) -> Iterator[tuple[str, str, type[BaseModel]]]:
    for kind in PLUGIN_KINDS:
        for folder in sorted((root / kind).iterdir()):
            if not (folder / "options.py").is_file():
                continue
            module = importlib.import_module(f"otseam.{kind}.{folder.name}.options")
            options = getattr(module, "Options", None)
            if isinstance(options, type) and issubclass(options, BaseModel):
                yield kind, folder.name, options


def render() -> str:
    root = Path(models.__file__).resolve().parent.parent
    out = [
        "# Contract reference",
        "",
        "<!-- Generated by `python -m otseam.contract.reference docs/contract-reference.md` from the pydantic",
        "     models (src/otseam/contract/models.py and each plugin's options.py). Do not edit by hand. -->",
        "",
        "Every key `seam.yaml` accepts, with its type, default and meaning. Unknown keys are errors. Durations",
        "are written `500ms`, `2s`, `5min`, `1h`, `7d`; rates `20/s`, `4/h`. How the sections fit together, with",
        "examples: [contract.md](contract.md); what they mean for a plant: [concepts.md](concepts.md).",
        "",
    ]
    for cls in _contract_models():
        if issubclass(cls, BaseModel):
            title = "The contract (top level)" if cls is models.Contract else f"`{cls.__name__}`"
            computed = cls.__name__ in ("ComputedPoint", "WindowSpec", "CounterSpec", "RateSpec", "ConditionSpec")
            out += _model_section(
                cls, title, more="Explained with examples in [compute.md](compute.md)." if computed else ""
            )
        elif issubclass(cls, enum.Enum):
            out += _enum_section(cls)
    out += [
        "# Plugin options",
        "",
        "The `options` mapping of a device (by its `driver`), a source or a sink (by its `type`).",
        "`seam check` validates them without loading the plugin.",
        "",
    ]
    for kind, name, options in _plugins(root):
        readme = f"src/otseam/{kind}/{name}/README.md"
        out += _model_section(options, f"{kind[:-1]} `{name}`", "##", f"More, with a sample: `{readme}`.")
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m otseam.contract.reference OUTPUT.md", file=sys.stderr)
        return 2
    Path(argv[0]).write_text(render(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
