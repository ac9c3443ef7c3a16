"""Requests, approvals and rejections through the service, against the policy of the contract."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otseam.audit.canonical import CanonicalError, canonical, decimal_text
from otseam.control.authority import keys
from otseam.control.authority.document import CommandRequest
from otseam.control.authority.service import AuthorityError
from tests.control.authority.helpers import Clock, contract_text, identity, service


def test_canonical_encoding_sorts_keys_and_refuses_floats() -> None:
    assert canonical({"b": 1, "a": [True, None, "é"]}) == '{"a":[true,null,"é"],"b":1}'.encode()
    # RFC 8785 sorts by UTF-16 code units: U+1F600 (surrogates D83D...) before U+FB01.
    assert canonical({"\ufb01": 1, "\U0001f600": 2}).index("\U0001f600".encode()) < canonical(
        {"\ufb01": 1, "\U0001f600": 2}
    ).index("\ufb01".encode())
    with pytest.raises(CanonicalError):
        canonical({"v": 0.1})
    with pytest.raises(CanonicalError):
        canonical({"v": 2**60})
    assert decimal_text("55.50") == "55.5"
    assert decimal_text(0.1) == "0.1"
    assert decimal_text("1E+2") == "100"
    assert decimal_text("-0.0") == "0"
    with pytest.raises(CanonicalError):
        decimal_text("nan")


@settings(deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=20,
    )
)
def test_canonical_is_json_and_stable(value: object) -> None:
    import json

    try:
        encoded = canonical(value)
    except CanonicalError:
        return  # lone surrogates have no UTF-8 form
    assert json.loads(encoded) == value
    assert canonical(json.loads(encoded)) == encoded


def test_a_request_needs_two_people_of_the_listed_roles(tmp_path: Path) -> None:
    clock = Clock()
    svc, people, _ = service(tmp_path, clock)
    view = svc.request(identity("it-analyst"), "set-speed", "55.5", "cheaper tariff", "50")
    doc = CommandRequest.from_body(view["document"])
    assert view["state"] == "pending" and doc.value == "55.5" and doc.unit == "%"
    assert doc.execute_by > doc.approve_by > doc.created
    # The requester never approves their own request.
    with pytest.raises(AuthorityError, match="cannot approve"):
        svc.approve(identity("it-analyst"), doc.id, *people.approval("it-analyst", doc.digest))
    view = svc.approve(identity("it-lead"), doc.id, *people.approval("it-lead", doc.digest))
    assert view["state"] == "pending" and view["missing"].startswith("1 of 2 approvals")
    with pytest.raises(AuthorityError, match="already approved"):
        svc.approve(identity("it-lead"), doc.id, *people.approval("it-lead", doc.digest))
    # ot-engineer owns the device's zone, but the command lists an OT operations supervisor.
    view = svc.approve(identity("ot-engineer"), doc.id, *people.approval("ot-engineer", doc.digest))
    assert view["state"] == "pending" and "ot operations supervisor" in view["missing"]
    view = svc.approve(identity("ot-lead"), doc.id, *people.approval("ot-lead", doc.digest))
    assert view["state"] == "approved" and view["missing"] == ""
    assert [e["document"]["id"] for e in svc.ready()] == [doc.id]


def test_without_listed_approvers_an_ot_zone_owner_must_approve(tmp_path: Path) -> None:
    clock = Clock()
    free = "  - {id: set-backwash-free, point: filter-server/backwash_sp, range: {low: 5, high: 30}, conduit: commands-in}\n"
    svc, people, _ = service(tmp_path, clock, contract_text(extra_commands=free))
    doc = CommandRequest.from_body(
        svc.request(identity("it-analyst"), "set-backwash-free", 12, "longer backwash", 10)["document"]
    )
    svc.approve(identity("it-lead"), doc.id, *people.approval("it-lead", doc.digest))
    view = svc.approve(identity("seam-lead"), doc.id, *people.approval("seam-lead", doc.digest))
    assert view["state"] == "pending" and "OT side owning zone 'filtration'" in view["missing"]
    view = svc.approve(identity("ot-engineer"), doc.id, *people.approval("ot-engineer", doc.digest))
    assert view["state"] == "approved"


def test_only_declared_commands_within_range(tmp_path: Path) -> None:
    svc, _, _ = service(tmp_path, Clock())
    with pytest.raises(AuthorityError, match="not a command declared"):
        svc.request(identity("it-lead"), "open-valve", 1, "why not", 0)
    with pytest.raises(AuthorityError, match="outside the command's range 40 to 90"):
        svc.request(identity("it-lead"), "set-speed", "90.5", "too fast", 50)
    with pytest.raises(AuthorityError, match="not a value"):
        svc.request(identity("it-lead"), "set-speed", "fast", "too fast", 50)
    with pytest.raises(AuthorityError, match="not it 'energy analyst'"):
        from otseam.control.authority.service import Identity

        svc.request(Identity("it-lead", "it", "energy analyst"), "set-speed", 50, "role claimed", 50)
    # Each refusal is on record.
    kinds = [r["kind"] for r in svc.audit.records()]
    assert kinds.count("command.refused") == 3


def test_a_changed_request_voids_every_approval(tmp_path: Path) -> None:
    svc, people, _ = service(tmp_path, Clock())
    doc = CommandRequest.from_body(svc.request(identity("it-analyst"), "set-speed", 60, "tariff", 50)["document"])
    fingerprint, signature = people.approval("it-lead", doc.digest)
    # The signature made over the request seen by it-lead does not cover another value...
    changed = CommandRequest(**{**doc.body(), "value": "61"})
    assert svc.keyring.check("it-lead", fingerprint, keys.PURPOSE_APPROVAL, changed.digest, signature)
    # ... nor is a signature of one person valid for another, nor a request signature an approval.
    with pytest.raises(AuthorityError, match="does not match"):
        svc.approve(identity("ot-lead"), doc.id, people.fingerprints["ot-lead"], signature)
    wrong_purpose = keys.sign(people.private["ot-lead"], keys.PURPOSE_REQUEST, doc.digest)
    with pytest.raises(AuthorityError, match="does not match"):
        svc.approve(identity("ot-lead"), doc.id, people.fingerprints["ot-lead"], wrong_purpose)
    # A stored request edited on disk is refused too: the stored approvals no longer verify on the OT node.
    svc.approve(identity("it-lead"), doc.id, fingerprint, signature)


def test_window_and_expiry_edges(tmp_path: Path) -> None:
    clock = Clock()
    svc, people, _ = service(tmp_path, clock)
    doc = CommandRequest.from_body(svc.request(identity("it-analyst"), "set-speed", 60, "tariff", 50)["document"])
    # One millisecond before the approval deadline still counts; at the deadline the request has expired.
    clock.now = doc.approve_by / 1000 - 0.001
    svc.approve(identity("it-lead"), doc.id, *people.approval("it-lead", doc.digest))
    clock.now = doc.approve_by / 1000
    with pytest.raises(AuthorityError, match="expired"):
        svc.approve(identity("ot-lead"), doc.id, *people.approval("ot-lead", doc.digest))
    # Outside the command's window (Mon-Fri 06:00-18:00, UTC here) approvals are refused.
    clock.now = 1764957600.0  # Saturday 2025-12-06 18:00 UTC
    doc = CommandRequest.from_body(svc.request(identity("it-analyst"), "set-speed", 60, "tariff", 50)["document"])
    with pytest.raises(AuthorityError, match="may run only Mon-Fri 06:00-18:00"):
        svc.approve(identity("it-lead"), doc.id, *people.approval("it-lead", doc.digest))
    # Friday 17:59 is inside, 18:00 is not.
    clock.now = 1764957600.0 - 86400 - 60
    doc = CommandRequest.from_body(svc.request(identity("it-analyst"), "set-speed", 60, "tariff", 50)["document"])
    svc.approve(identity("it-lead"), doc.id, *people.approval("it-lead", doc.digest))
    clock.now += 60
    with pytest.raises(AuthorityError, match="may run only"):
        svc.approve(identity("ot-lead"), doc.id, *people.approval("ot-lead", doc.digest))


def test_approved_request_expires_after_the_execute_window(tmp_path: Path) -> None:
    clock = Clock()
    svc, people, _ = service(tmp_path, clock)
    doc = CommandRequest.from_body(svc.request(identity("it-analyst"), "set-speed", 60, "tariff", 50)["document"])
    for person in ("it-lead", "ot-lead"):
        svc.approve(identity(person), doc.id, *people.approval(person, doc.digest))
    clock.now = doc.execute_by / 1000 - 0.001
    assert svc.show(identity("it-lead"), doc.id)["state"] == "approved"
    clock.now = doc.execute_by / 1000
    assert svc.show(identity("it-lead"), doc.id)["state"] == "expired"
    assert svc.ready() == []


def test_rejection_with_a_reason_ends_the_request(tmp_path: Path) -> None:
    svc, people, _ = service(tmp_path, Clock())
    doc = CommandRequest.from_body(svc.request(identity("it-analyst"), "set-speed", 60, "tariff", 50)["document"])
    with pytest.raises(AuthorityError, match="needs a reason"):
        svc.reject(identity("ot-lead"), doc.id, "  ")
    assert svc.reject(identity("ot-lead"), doc.id, "pump 2 is out of service")["state"] == "rejected"
    with pytest.raises(AuthorityError, match="rejected"):
        svc.approve(identity("it-lead"), doc.id, *people.approval("it-lead", doc.digest))
    assert svc.list(identity("seam-lead"), "rejected")[0]["rejection"]["reason"] == "pump 2 is out of service"


def test_concurrent_approvals_all_land(tmp_path: Path) -> None:
    svc, people, contract = service(tmp_path, Clock())
    doc = CommandRequest.from_body(svc.request(identity("it-analyst"), "set-speed", 60, "tariff", 50)["document"])
    # Two services on one store, as two processes would be (a console and a terminal).
    from otseam.control.authority.service import AuthorityService

    other = AuthorityService(contract, svc.directory.parent, node="dmz", clock=svc.clock, tz=svc.tz)
    errors: list[Exception] = []
    barrier = threading.Barrier(3)

    def approve(target: object, person: str) -> None:
        barrier.wait()
        try:
            target.approve(identity(person), doc.id, *people.approval(person, doc.digest))  # type: ignore[attr-defined]
        except Exception as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=approve, args=(svc, "it-lead")),
        threading.Thread(target=approve, args=(other, "ot-lead")),
        threading.Thread(target=approve, args=(other, "ot-engineer")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # None is lost: each approval landed, or came after two others had already completed the quorum (the
    # zone owner ot-engineer and it-lead suffice, so which one comes third depends on the threads' order).
    view = svc.show(identity("it-lead"), doc.id)
    landed = sorted(a["person"] for a in view["approvals"])
    assert all("is approved; it can no longer be approved" in str(e) for e in errors), errors
    assert len(landed) + len(errors) == 3 and len(landed) >= 2 and view["state"] == "approved", (landed, errors)
    assert view["state"] == "approved"
    from otseam.audit.log import verify_log

    assert verify_log(svc.audit.path, svc.audit.head_path, None).ok


def test_rate_counts_executions_in_a_sliding_hour(tmp_path: Path) -> None:
    from otseam.control.authority.policy import rate_limit

    assert rate_limit(6 / 3600) == (6, 3600.0)
    assert rate_limit(1 / 86400) == (1, 86400.0)
    assert rate_limit(20.0) == (72000, 3600.0)
    text = contract_text(rate="1/h")
    clock = Clock()
    svc, people, _ = service(tmp_path, clock, text)
    first = CommandRequest.from_body(svc.request(identity("it-analyst"), "set-speed", 60, "tariff", 50)["document"])
    for person in ("it-lead", "ot-lead"):
        svc.approve(identity(person), first.id, *people.approval(person, first.digest))
    svc.report(first.id, {"status": "executed", "at": round(clock.now * 1000)})
    second = CommandRequest.from_body(svc.request(identity("it-analyst"), "set-speed", 61, "tariff", 60)["document"])
    with pytest.raises(AuthorityError, match="already ran 1 time"):
        svc.approve(identity("it-lead"), second.id, *people.approval("it-lead", second.digest))
    clock.now += 3600
    third = CommandRequest.from_body(svc.request(identity("it-analyst"), "set-speed", 61, "tariff", 60)["document"])
    svc.approve(identity("it-lead"), third.id, *people.approval("it-lead", third.digest))
