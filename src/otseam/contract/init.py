"""`seam init`: the example contract, and the conversation both teams should have before writing one.

The example is the water works in ``example.yaml`` (shipped with the package, comments and all). The
interactive mode asks the questions OT and IT must answer together (what the interface is for, who owns
what, what failure means to each side, what the plant tolerates) and writes the answers into that
example, keeping its comments, so the result is a contract that already passes `seam check`.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.scalarstring import SingleQuotedScalarString

from otseam.contract.loader import UNPRINTABLE
from otseam.contract.models import RestartTolerance
from otseam.contract.units import format_duration, parse_rate


def example_text() -> str:
    return resources.files("otseam.contract").joinpath("example.yaml").read_text(encoding="utf-8")


#: The diode key the example's diode_send sink and diode_receive source name (beside the contract:
#: relative paths in options are relative to the contract file).
EXAMPLE_KEY = "seam-diode.key"


def example_key(contract: Path) -> Path:
    """Where `seam init` writes the key the example names, for the contract written at ``contract``."""
    return contract.parent / EXAMPLE_KEY


#: Asks one question: (question, default) → answer; an empty default means none is offered. The CLI
#: passes typer.prompt; tests drive the CLI.
Ask = Callable[[str, str], str]
#: Says something to the person answering (section headings, corrections).
Say = Callable[[str], None]

_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}\Z")


class AnswersEnded(Exception):
    """The person stopped answering (end of input) before the questions were done."""


@dataclass(frozen=True, slots=True)
class Question:
    text: str
    default: str
    #: Returns an error message for a bad answer, or None.
    validate: Callable[[str], str | None] | None = None


def _not_empty(answer: str) -> str | None:
    return None if answer.strip() else "please answer: an empty answer leaves the question open"


def _valid_id(answer: str) -> str | None:
    if _ID.match(answer.strip()):
        return None
    return "use a short id: a letter, then letters, digits, '-' or '_' (e.g. riverside-water)"


def _valid_rate(answer: str) -> str | None:
    try:
        rate = parse_rate(answer)
    except ValueError as exc:
        return str(exc)
    return None if rate > 0 else "a rate must be more than zero"


def _valid_tolerance(answer: str) -> str | None:
    choices = [t.value for t in RestartTolerance]
    return None if answer.strip() in choices else f"answer one of: {', '.join(choices)}"


def _plain_text(answer: str) -> str | None:
    """Control characters (a pasted escape sequence, a stray byte) cannot stand in a contract."""
    if UNPRINTABLE.search(answer) or any(char in answer for char in "\t\r\n\x85\u2028\u2029"):
        return "please answer in plain text: the answer holds a control character"
    return None


def _ask(ask: Ask, say: Say, question: Question) -> str:
    """Ask until the answer is valid. A bounded number of tries: piped input must not loop forever."""
    for _ in range(5):
        answer = ask(question.text, question.default).strip()
        error = _plain_text(answer) or (question.validate(answer) if question.validate else None)
        if error is None:
            return answer
        say(f"  {error}")
    raise AnswersEnded(f"no usable answer to: {question.text}")


#: A plain scalar starting with one of these is read back as something else, or not at all: ruamel.yaml
#: writes ``?0`` unquoted inside a flow mapping and then refuses to read it (found by the fuzz test).
_INDICATORS = "-?:,[]{}#&*!|>'\"%@`"


def _text(answer: str) -> str:
    """A person's free-text answer, quoted where YAML would not give it back as written."""
    if answer[:1] in _INDICATORS:
        quoted: str = SingleQuotedScalarString(answer)
        return quoted
    return answer


def interview(ask: Ask, say: Say) -> str:
    """Ask the questions and return the example contract with the answers written in."""
    yaml = YAML(typ="rt")
    yaml.width = 100
    yaml.preserve_quotes = True
    doc: Any = yaml.load(example_text())
    people = {p["id"]: p for p in doc["people"]}
    objective = doc["objectives"][0]
    plc = doc["devices"][0]

    def q(text: str, default: object, validate: Callable[[str], str | None] | None = _not_empty) -> str:
        return _text(_ask(ask, say, Question(text, str(default), validate)))

    say("1. Why this interface exists (write it together: OT and IT in the same room)")
    doc["site"]["enterprise"] = q("Company id (used in every topic)", doc["site"]["enterprise"], _valid_id)
    doc["site"]["site"] = q("Site id", doc["site"]["site"], _valid_id)
    # No example answers offered here: these are the plant's own words or nothing.
    objective["problem"] = q("What problem does this interface solve?", "")
    objective["success"]["ot"] = q("What does success look like for OT?", "")
    objective["success"]["it"] = q("What does success look like for IT?", "")
    objective["failure"]["ot"] = q("What does failure look like for OT?", "")
    objective["failure"]["it"] = q("What does failure look like for IT?", "")

    say("2. Who owns what")
    for person_id, side in (("ot-lead", "OT"), ("it-lead", "IT"), ("seam-lead", "the interface (seam owner)")):
        person = people[person_id]
        person["name"] = q(f"Who answers for {side}? (name)", person["name"])
        person["role"] = q("Their role (it names who approves commands)", person["role"])
    # The example command is approved by the two leads: keep the approver roles in step with their answers.
    for approver in doc["commands"][0]["approvers"]:
        lead = people["ot-lead"] if approver["side"] == "ot" else people["it-lead"]
        approver["role"] = lead["role"]

    say("3. What the plant tolerates (the OT owner of the pump PLC answers)")
    limits = plc["constraints"]
    rate_text = q("Most requests per second the pump PLC accepts (e.g. 10/s)", limits["max_request_rate"], _valid_rate)
    limits["max_request_rate"] = rate_text
    limits["restart_tolerance"] = q(
        "May it be restarted: none (only in an outage), planned, or any", limits["restart_tolerance"], _valid_tolerance
    )
    limits["patch_window"] = q("When may it be patched?", limits["patch_window"])
    # One request per point per poll is the conservative estimate `seam check` uses: if the answer is
    # tighter than the example's polling, slow the polling down rather than write a failing contract.
    needed = len(plc["points"]) / parse_rate(rate_text)
    if needed > 1.0:
        poll = math.ceil(needed * 10) / 10
        plc["poll"] = format_duration(poll)
        say(f"  polling of the pump PLC slowed to every {plc['poll']} to stay within {rate_text}")

    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()
