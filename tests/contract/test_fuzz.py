"""Fuzzing the loader and the rules: whatever the text, the only failure is a ContractError.

A contract is edited by hand by many people; a typo must never become a traceback in `seam check`,
and a contract that loads must never crash a rule or the document renderer.
"""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from otseam.contract import ContractError, parse_text
from otseam.contract.doc import render_html
from otseam.contract.init import example_text
from otseam.contract.rules import run
from otseam.contract.rules.registry import RULE_FAILED

EXAMPLE_LINES = example_text().splitlines(keepends=True)
YAML_NOISE = st.sampled_from(
    [":", "-", " ", "  ", "\t", "[", "]", "{", "}", "&a", "*a", "!!", "'", '"', "#", "|", ">", "?", ",", "\n",
     "0", "3.5", "-1", "1e999", "null", "~", "true", "ns=2;s=", "hr:", "co:99999", "/s", "ms", "GiB", "é", "\x00"]
)  # fmt: skip
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: Each example here dumps, loads, checks and renders a whole contract: fewer of them.
WHOLE = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
INTERVIEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _use(text: str) -> None:
    """Load, check and render; only ContractError may escape."""
    try:
        loaded = parse_text(text, "fuzz.yaml")
    except ContractError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.line >= 1 and problem.column >= 1 and problem.message
        return
    findings = run(loaded)
    assert not [f for f in findings if f.message.startswith(RULE_FAILED)]
    render_html(loaded, findings).encode("utf-8")  # what `seam doc` writes out must be encodable


@FAST
@given(st.text(max_size=400))
def test_random_text(text: str) -> None:
    _use(text)


@FAST
@given(st.lists(YAML_NOISE, max_size=60).map("".join))
def test_yaml_punctuation(text: str) -> None:
    _use(text)


@FAST
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(EXAMPLE_LINES) - 1),
            st.sampled_from(["drop", "dup", "noise", "indent", "dedent"]),
            YAML_NOISE,
        ),
        min_size=1,
        max_size=6,
    )
)
def test_mutated_example(edits: list[tuple[int, str, str]]) -> None:
    lines = list(EXAMPLE_LINES)
    for index, action, noise in edits:
        index %= len(lines)
        if action == "drop":
            del lines[index]
        elif action == "dup":
            lines.insert(index, lines[index])
        elif action == "noise":
            cut = len(lines[index]) // 2
            lines[index] = lines[index][:cut] + noise + lines[index][cut:]
        elif action == "indent":
            lines[index] = "  " + lines[index]
        else:
            lines[index] = lines[index].lstrip()
        if not lines:
            break
    _use("".join(lines))


@WHOLE
@given(
    st.sampled_from(["devices", "zones", "conduits", "sinks", "commands", "people", "objectives"]),
    st.integers(0, 4),
    st.sampled_from(["id", "level", "sl", "from", "to", "zone", "point", "owner", "driver", "points", "conduit"]),
    st.one_of(st.none(), st.integers(-5, 70000), st.floats(allow_nan=True), st.text(max_size=12), st.booleans()),
)
def test_changed_values_in_a_valid_contract(section: str, index: int, key: str, value: object) -> None:
    from tests.contract.helpers import example, to_text

    data = example()
    items = data.get(section) or []
    if items:
        target = items[index % len(items)]
        target[key] = value
    _use(to_text(data))


@INTERVIEW
@given(st.lists(st.text(max_size=30), min_size=0, max_size=40))
def test_interview_with_any_answers_writes_a_contract_that_passes_or_nothing(answers: list[str]) -> None:
    """Whatever people type (quotes, colons, '#', unicode), the interview either writes a contract that
    loads and passes `seam check`, or stops without writing anything."""
    from otseam.contract.init import AnswersEnded, interview

    queue = list(answers)

    def ask(question: str, default: str) -> str:
        if not queue:
            raise AnswersEnded("end of input")
        answer = queue.pop(0)
        # typer.prompt gives the default for an empty answer; one line per answer.
        return (answer or default).splitlines()[0] if (answer or default).strip() else ""

    try:
        text = interview(ask, lambda message: None)
    except AnswersEnded:
        return
    findings = [f for f in run(parse_text(text, "interview.yaml")) if f.severity != "info"]
    assert findings == []


_LINE = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=40).filter(
    lambda s: s.strip() != ""
)
_ID_TEXT = st.from_regex(r"\A[A-Za-z][A-Za-z0-9_-]{0,20}\Z")


@INTERVIEW
# Found by this test: ruamel.yaml wrote the role "?0" unquoted into a flow mapping, then refused it.
@example(ids=("A", "A"), texts=["0"] * 8 + ["?0", "0", "0"], rate=(1, "/s"), tolerance="none", patch="0")
@given(
    ids=st.tuples(_ID_TEXT, _ID_TEXT),
    texts=st.lists(_LINE, min_size=11, max_size=11),
    rate=st.tuples(st.integers(1, 500), st.sampled_from(["/s", "/min"])),
    tolerance=st.sampled_from(["none", "planned", "any"]),
    patch=_LINE,
)
def test_interview_with_valid_answers_always_passes_check(
    ids: tuple[str, str], texts: list[str], rate: tuple[int, str], tolerance: str, patch: str
) -> None:
    from otseam.contract.init import interview

    answers = [*ids, *texts, f"{rate[0]}{rate[1]}", tolerance, patch]
    given_answers = iter(answers)
    text = interview(lambda question, default: next(given_answers), lambda message: None)
    loaded = parse_text(text, "interview.yaml")
    assert [f for f in run(loaded) if f.severity != "info"] == []
    assert loaded.contract.objectives[0].problem == texts[0].strip()
    assert loaded.contract.site.path == [ids[0], ids[1]]
