"""Every detection fires on the traffic it describes, and stays quiet on ordinary traffic."""

from __future__ import annotations

import struct

import pytest

from otseam.contract.loader import ContractError, parse_text
from otseam.monitor.allowlist import Policy, PolicyError
from otseam.monitor.capture import CaptureStats, iter_frames
from otseam.monitor.engine import Monitor
from otseam.monitor.rules import RULES
from tests.monitor.pcapgen import (
    UA_POLICY_BASIC256SHA256,
    UA_POLICY_NONE,
    Conversation,
    mbap,
    pcap_bytes,
    ua_hello,
    ua_message,
    ua_open,
)

MASTER, ROGUE, PLC = "10.0.0.10", "10.0.0.66", "10.0.0.20"


def run(frames: list[bytes], policy: Policy | None = None, step: float = 0.01) -> Monitor:
    monitor = Monitor(policy)
    for frame in iter_frames(pcap_bytes(frames, step=step), CaptureStats()):
        monitor.process(frame)
    monitor.finish()
    assert monitor.stats.internal_errors == 0, monitor.stats.errors
    return monitor


def rules_of(monitor: Monitor) -> list[str]:
    return [a.rule.id for a in monitor.detector.alerts]


def exchange(conv: Conversation, pdu: bytes, reply: bytes | None = None, tid: int = 1, unit: int = 1) -> None:
    conv.c(mbap(tid, unit, pdu))
    conv.s(mbap(tid, unit, reply if reply is not None else pdu))


def test_every_rule_has_an_id_severity_and_description() -> None:
    for rule_id, rule in RULES.items():
        assert rule.id == rule_id and rule.description and rule.name
        assert rule.attack is None or rule.attack.startswith("T08")


def test_every_rule_names_an_attack_technique_but_the_ones_none_applies_to() -> None:
    # Malformed or unassigned bytes and an undeclared server are symptoms, not techniques:
    # docs/monitor.md says why each of these carries no ATT&CK for ICS id.
    without = {rule_id for rule_id, rule in RULES.items() if rule.attack is None}
    assert without == {"MB-016", "MB-017", "UA-003", "INV-001"}


def test_ordinary_polling_raises_nothing() -> None:
    conv = Conversation(client=MASTER, server=PLC).handshake()
    for i in range(50):
        exchange(conv, struct.pack("!BHH", 3, i, 2), struct.pack("!BBHH", 3, 4, 1, 2), tid=i)
    policy = Policy()
    policy.add_masters([MASTER])
    assert rules_of(run(conv.frames)) == []
    assert rules_of(run(conv.frames, policy)) == []


@pytest.mark.parametrize(
    ("pdu", "rule"),
    [
        (b"\x08\x00\x04\x00\x00", "MB-003"),
        (b"\x08\x00\x01\x00\x00", "MB-004"),
        (b"\x08\x00\x0a\x00\x00", "MB-005"),
        (b"\x2b\x0e\x01\x00", "MB-006"),
        (b"\x11", "MB-007"),
        (b"\x5a\x00\x30\x00", "MB-010"),
        (b"\x5a\x00\x33\x00", "MB-011"),
        (b"\x5a\x00\x41\x00", "MB-012"),
        (b"\x5a\x00\x02\x00", "MB-013"),
        (b"\x63", "MB-017"),
        (b"\x03\x00\x00\x00", "MB-016"),  # a read request two bytes short
    ],
)
def test_single_request_detections_need_no_allow_list(pdu: bytes, rule: str) -> None:
    conv = Conversation().handshake()
    exchange(conv, pdu)
    monitor = run(conv.frames)
    assert rule in rules_of(monitor)
    alert = next(a for a in monitor.detector.alerts if a.rule.id == rule)
    assert alert.frame == 3 and alert.src == conv.client and alert.dst == conv.server and alert.function == pdu[0]
    assert alert.as_dict()["attack"] == RULES[rule].attack


@pytest.mark.parametrize(
    ("code", "count", "rule"), [(1, 5, "MB-008"), (2, 5, "MB-009"), (6, 10, "MB-018"), (5, 10, "MB-018")]
)
def test_exception_bursts(code: int, count: int, rule: str) -> None:
    conv = Conversation().handshake()
    for i in range(count):
        exchange(conv, struct.pack("!BHH", 3, 1000 + i, 1), bytes([0x83, code]), tid=i)
    assert rules_of(run(conv.frames)) == [rule]
    fewer = Conversation().handshake()
    for i in range(count - 1):
        exchange(fewer, struct.pack("!BHH", 3, 1000 + i, 1), bytes([0x83, code]), tid=i)
    assert rules_of(run(fewer.frames)) == []


def test_repeated_writes_to_one_register() -> None:
    conv = Conversation().handshake()
    for i in range(20):
        exchange(conv, struct.pack("!BHH", 6, 40, i), tid=i)
    assert rules_of(run(conv.frames)) == ["MB-019"]
    # The same writes spread over minutes are an operator, not a brute force.
    assert rules_of(run(conv.frames, step=1.0)) == []


def test_non_modbus_on_502_and_malformed_headers() -> None:
    web = Conversation().handshake()
    web.c(b"GET / HTTP/1.1\r\nHost: plc\r\n\r\n" * 12)
    assert rules_of(run(web.frames)) == ["MB-014"]
    broken = Conversation().handshake()
    exchange(broken, b"\x03\x00\x00\x00\x01", b"\x03\x02\x00\x01")
    broken.c(struct.pack("!HHHB", 2, 7, 6, 1) + b"\x03\x00\x00\x00\x01")  # protocol id 7
    assert rules_of(run(broken.frames)) == ["MB-016"]
    oversized = Conversation().handshake()
    oversized.c(struct.pack("!HHHB", 1, 0, 300, 1) + bytes(299))  # a PDU of 299 bytes
    assert "MB-016" in rules_of(run(oversized.frames))


def test_modbus_on_an_unusual_port() -> None:
    conv = Conversation(sport=5020).handshake()
    exchange(conv, b"\x03\x00\x00\x00\x01", b"\x03\x02\x00\x01")
    monitor = run(conv.frames)
    assert rules_of(monitor) == ["MB-015"]
    assert monitor.stats.modbus_messages == 2


def test_unlisted_master_reads_and_writes() -> None:
    conv = Conversation(client=ROGUE, server=PLC).handshake()
    exchange(conv, b"\x03\x00\x00\x00\x01", b"\x03\x02\x00\x01", tid=1)
    exchange(conv, b"\x06\x00\x28\x00\x01", tid=2)
    policy = Policy()
    policy.add_masters([MASTER])
    assert rules_of(run(conv.frames, policy)) == ["MB-020", "MB-002", "MB-001"]
    assert rules_of(run(conv.frames)) == []  # without an allow-list these rules stay silent


CONTRACT = """
version: 1
site: {enterprise: acme, site: plant}
zones:
  - {id: cell, level: 1, sl: 2}
devices:
  - id: pump-plc
    driver: modbus
    endpoint: tcp://10.0.0.20:502
    zone: cell
    monitor:
      allowed_masters: [10.0.0.10]
    points:
      - {id: flow, address: "hr:0", type: uint16}
      - {id: setpoint, address: "hr:10", type: uint16, writable: true}
"""


def contract_policy(text: str = CONTRACT) -> Policy:
    policy = Policy()
    policy.add_contract(parse_text(text).contract)
    return policy


def test_contract_allow_list() -> None:
    policy = contract_policy()
    assert policy.declared["10.0.0.20"].functions == {3, 6, 16}
    good = Conversation(client=MASTER, server=PLC).handshake()
    exchange(good, b"\x03\x00\x00\x00\x01", b"\x03\x02\x00\x01", tid=1)
    exchange(good, b"\x06\x00\x0a\x00\x01", tid=2)
    assert rules_of(run(good.frames, policy)) == []
    odd = Conversation(client=MASTER, server=PLC).handshake()
    exchange(odd, b"\x05\x00\x00\xff\x00", tid=1)  # a coil write: the contract declares no coils
    assert rules_of(run(odd.frames, policy)) == ["MB-022"]
    rogue = Conversation(client=ROGUE, server=PLC).handshake()
    exchange(rogue, b"\x03\x00\x00\x00\x01", b"\x03\x02\x00\x01")
    monitor = run(rogue.frames, policy)
    assert rules_of(monitor) == ["MB-020", "MB-002"]
    assert "not an allowed master of device pump-plc" in monitor.detector.alerts[0].message
    other_port = Conversation(client=MASTER, server=PLC, sport=802).handshake()
    exchange(other_port, b"\x03\x00\x00\x00\x01", b"\x03\x02\x00\x01")
    assert rules_of(run(other_port.frames, policy))[0] == "MB-020"


def test_undeclared_device() -> None:
    conv = Conversation(client=MASTER, server="10.0.0.99").handshake()
    exchange(conv, b"\x03\x00\x00\x00\x01", b"\x03\x02\x00\x01")
    monitor = run(conv.frames, contract_policy())
    assert "INV-001" in rules_of(monitor)
    assert monitor.inventory.assets["10.0.0.99"].declared_as is None


def test_bad_contract_allow_lists_are_clear_errors_with_positions() -> None:
    with pytest.raises(ContractError, match=r"seam.yaml:12:\d+: .*'plc-gateway' is not an IP address"):
        contract_policy(CONTRACT.replace("[10.0.0.10]", "[plc-gateway]"))
    with pytest.raises(ContractError, match=r"monitor.allowed_functions\[0\]"):
        contract_policy(CONTRACT.replace("allowed_masters: [10.0.0.10]", "allowed_functions: [read]"))
    with pytest.raises(PolicyError, match="not an IP address"):
        Policy().add_masters(["10.0.0.300"])


def test_baseline_new_pair_and_function() -> None:
    policy = Policy()
    policy.add_baseline({(MASTER, PLC): {3}})
    new_pair = Conversation(client=ROGUE, server=PLC).handshake()
    exchange(new_pair, b"\x03\x00\x00\x00\x01", b"\x03\x02\x00\x01")
    assert rules_of(run(new_pair.frames, policy)) == ["MB-021", "MB-002"]
    new_function = Conversation(client=MASTER, server=PLC).handshake()
    exchange(new_function, b"\x10\x00\x00\x00\x01\x02\x00\x05", b"\x10\x00\x00\x00\x01")
    assert rules_of(run(new_function.frames, policy)) == ["MB-022"]


def ua_conversation(policy_uri: str, services: list[int], port: int = 4840, client: str = ROGUE) -> Conversation:
    conv = Conversation(client=client, server=PLC, sport=port).handshake()
    conv.c(ua_hello(f"opc.tcp://{PLC}:{port}"))
    conv.s(b"ACK\x46" + struct.pack("<I", 28) + struct.pack("<IIIII", 0, 65536, 65536, 0, 0))
    conv.c(ua_open(policy_uri))
    conv.s(ua_open(policy_uri, channel=1))
    for i, service in enumerate(services):
        conv.c(ua_message(service, request_id=10 + i))
    return conv


def test_opcua_changes_from_unlisted_client() -> None:
    policy = Policy()
    policy.add_masters([MASTER])
    conv = ua_conversation(UA_POLICY_NONE, [631, 673, 712, 488, 500])
    monitor = run(conv.frames, policy)
    assert [a.rule.id for a in monitor.detector.alerts if a.rule.id == "UA-001"] == ["UA-001"] * 4
    services = [m.service for _e, m in monitor.ua_messages if m.service]
    assert services[-5:] == ["ReadRequest", "WriteRequest", "CallRequest", "AddNodesRequest", "DeleteNodesRequest"]
    allowed = run(ua_conversation(UA_POLICY_NONE, [673], client=MASTER).frames, policy)
    assert [a.rule.id for a in allowed.detector.alerts] == []


def test_opcua_browse_sweep_and_unusual_port() -> None:
    monitor = run(ua_conversation(UA_POLICY_NONE, [527] * 25).frames)
    assert rules_of(monitor) == ["UA-002"]
    moved = run(ua_conversation(UA_POLICY_NONE, [631], port=14840).frames)
    assert rules_of(moved) == ["UA-004"]


def test_opcua_secured_channel_is_opaque() -> None:
    conv = ua_conversation(UA_POLICY_BASIC256SHA256, [])
    # Encrypted chunks: random-looking bodies that happen to start like a WriteRequest must not be read.
    conv.c(ua_message(673, request_id=99))
    policy = Policy()
    policy.add_masters([MASTER])
    monitor = run(conv.frames, policy)
    messages = [m for _e, m in monitor.ua_messages if m.message_type == "MSG"]
    assert messages and all(m.security == "secured" and m.service is None for m in messages)
    assert "UA-001" not in rules_of(monitor)


def test_opcua_garbage_on_4840() -> None:
    conv = Conversation(sport=4840).handshake()
    conv.c(b"XYZF" + struct.pack("<I", 16) + bytes(8))
    assert rules_of(run(conv.frames)) == ["UA-003"]


def test_alerts_fold_repeats() -> None:
    conv = Conversation().handshake()
    for i in range(30):
        exchange(conv, b"\x08\x00\x04\x00\x00", tid=i)
    monitor = run(conv.frames)
    assert rules_of(monitor) == ["MB-003"]
    assert monitor.detector.alerts[0].folded == 29


def test_writes_to_two_ports_of_one_host_are_two_alerts() -> None:
    """Two Modbus services on one address (a gateway's ports) are two targets: a write to the second is
    its own alert, not a fold into the first's, which would name the wrong port."""
    policy = Policy()
    policy.add_masters([MASTER])
    frames: list[bytes] = []
    for sport, cport in ((502, 40000), (503, 40001), (502, 40002)):
        conv = Conversation(client=ROGUE, server=PLC, sport=sport, cport=cport).handshake()
        exchange(conv, b"\x06\x00\x01\x00\x07")
        frames += conv.frames
    monitor = run(frames, policy)
    writes = [a for a in monitor.detector.alerts if a.rule.id == "MB-001"]
    assert [(a.dport, a.folded) for a in writes] == [(502, 1), (503, 0)]
