"""A small contract with one writable Modbus point and one OPC UA point, people on both sides, and the
keys of each person, for the authority's tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from otseam.contract.models import Side
from otseam.control.authority import keys
from otseam.control.authority.service import AuthorityService, Identity
from otseam.control.authority.store import Signature

#: Wednesday 2026-12-02 10:00 UTC: inside a Mon-Fri 06:00-18:00 window.
WEDNESDAY_10 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC).timestamp()

PEOPLE = {
    "ot-lead": ("ot", "operations supervisor"),
    "ot-engineer": ("ot", "control engineer"),
    "it-lead": ("it", "data platform lead"),
    "it-analyst": ("it", "energy analyst"),
    "seam-lead": ("seam", "interface owner"),
}


def contract_text(
    modbus_port: int = 1502,
    opcua_port: int = 4840,
    command_port: int = 8443,
    *,
    direction: str = "two-way",
    window: str = "Mon-Fri 06:00-18:00",
    rate: str = "6/h",
    byte_order: str = "CDAB",
    point_type: str = "float32",
    address: str = "hr:2000",
    extra_points: str = "",
    extra_commands: str = "",
    readback: str = "2s",
    tolerance: float = 0.0,
) -> str:
    people = "\n".join(
        f"  - {{id: {pid}, name: {pid}, side: {side}, role: {role}}}" for pid, (side, role) in PEOPLE.items()
    )
    return f"""\
version: 1
site: {{enterprise: riverside, site: north}}
people:
{people}
seam_owner: seam-lead
zones:
  - {{id: pumping, level: 2, sl: 3, owner: ot-engineer}}
  - {{id: filtration, level: 1, sl: 3, owner: ot-engineer}}
  - {{id: supervisory, level: 3, sl: 3, owner: ot-lead}}
  - {{id: dmz, level: 3.5, sl: 2, owner: seam-lead}}
  - {{id: enterprise, level: 4, sl: 1, owner: it-lead}}
conduits:
  - {{id: pumping-poll, from: pumping, to: supervisory, direction: two-way, protocols: [modbus], ports: [{modbus_port}], owner: ot-engineer}}
  - {{id: filtration-poll, from: filtration, to: supervisory, direction: two-way, protocols: [opcua], ports: [{opcua_port}], owner: ot-engineer}}
  - id: commands-in
    from: dmz
    to: supervisory
    direction: {direction}
    transport: tls
    protocols: [seam-command]
    ports: [{command_port}]
    owner: seam-lead
    justification: approved setpoint changes only, mutual TLS
devices:
  - id: pump-plc
    driver: modbus
    endpoint: tcp://127.0.0.1:{modbus_port}
    unit: 1
    zone: pumping
    owner: ot-engineer
    points:
      - id: speed_sp
        address: {address}
        type: {point_type}
        byte_order: {byte_order}
        unit: "%"
        range: {{low: 0, high: 100}}
        writable: true
{extra_points}
  - id: filter-server
    driver: opcua
    endpoint: opc.tcp://127.0.0.1:{opcua_port}/seam/test
    zone: filtration
    owner: ot-engineer
    points:
      - id: backwash_sp
        address: ns=2;s=BackwashSetpoint
        type: float64
        unit: min
        range: {{low: 0, high: 60}}
        writable: true
commands:
  - id: set-speed
    point: pump-plc/speed_sp
    range: {{low: 40, high: 90}}
    rate: {rate}
    window: "{window}"
    conduit: commands-in
    owner: ot-lead
    readback_timeout: {readback}
    tolerance: {tolerance}
    approvers:
      - {{side: ot, role: operations supervisor}}
      - {{side: it, role: data platform lead}}
  - id: set-backwash
    point: filter-server/backwash_sp
    range: {{low: 5, high: 30}}
    conduit: commands-in
    owner: ot-lead
    approvers:
      - {{side: ot, role: control engineer}}
      - {{side: it, role: data platform lead}}
{extra_commands}
"""


def identity(person: str) -> Identity:
    side, role = PEOPLE[person]
    return Identity(person, Side(side), role)


@dataclass
class Clock:
    now: float = WEDNESDAY_10

    def __call__(self) -> float:
        return self.now


@dataclass
class People:
    """Every person's private key, enrolled in a node's keyring."""

    private: dict[str, Ed25519PrivateKey]
    fingerprints: dict[str, str]

    def approval(self, person: str, digest: str) -> tuple[str, str]:
        return self.fingerprints[person], keys.sign(self.private[person], keys.PURPOSE_APPROVAL, digest)

    def signature(self, person: str, purpose: str, digest: str) -> Signature:
        return Signature(person, self.fingerprints[person], keys.sign(self.private[person], purpose, digest))


def enroll_all(directory: Path, tmp: Path) -> People:
    keyring = keys.Keyring(directory)
    private, prints = {}, {}
    for person in PEOPLE:
        path = tmp / f"{person}.key"
        if not path.exists():
            keys.generate(person, path)
        private[person] = keys.load_private(path)
        public, named = keys.parse_public((tmp / f"{person}.key.pub").read_text())
        assert named == person
        prints[person] = keyring.enroll(public, person).fingerprint
    return People(private, prints)


def service(
    tmp: Path, clock: Clock, text: str | None = None, node: str = "dmz"
) -> tuple[AuthorityService, People, Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    contract = tmp / "seam.yaml"
    if text is not None or not contract.exists():
        contract.write_text(text if text is not None else contract_text())
    data = tmp / node
    svc = AuthorityService(contract, data, node=node, clock=clock, tz=UTC)
    people = enroll_all(svc.directory, tmp)
    return svc, people, contract
