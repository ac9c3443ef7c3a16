"""Architecture rules (ARCH-*): zones, conduits and the direction data and commands may take."""

from __future__ import annotations

from collections.abc import Iterator

from otseam.contract.loader import LoadedContract
from otseam.contract.models import Direction
from otseam.contract.rules.registry import Hit, Severity, rule
from otseam.contract.rules.topology import DMZ_LEVEL, conduit_levels, is_it, is_ot, reachable, sink_data_zones

#: Protocols that need packets to flow back (answers to requests, TCP acknowledgements): they cannot
#: work over a link that only forwards, and listing one on a one-way conduit means someone expects a
#: path back that must not exist.
REQUEST_RESPONSE_PROTOCOLS = frozenset(
    {"modbus", "modbus-tcp", "modbus-rtu", "opcua", "opc-ua", "opc.tcp", "s7", "enip", "ethernet-ip", "cip",
     "dnp3", "bacnet", "http", "https", "ssh", "rdp", "smb", "sql", "postgres", "mqtt"}
)  # fmt: skip


@rule(
    "ARCH-001",
    Severity.ERROR,
    "No conduit joins the enterprise (level 4-5) directly to the plant (level 0-3)",
    "route the traffic through a zone at level 3.5 (the DMZ): one conduit OT → DMZ, another DMZ → IT",
)
def no_direct_it_ot_conduit(loaded: LoadedContract) -> Iterator[Hit]:
    contract = loaded.contract
    for i, conduit in enumerate(contract.conduits):
        levels = conduit_levels(contract, conduit)
        if levels is None:
            continue
        low, high = sorted(levels)
        if is_ot(low) and is_it(high):
            yield Hit(
                ("conduits", i),
                f"conduit '{conduit.id}' joins zone '{conduit.from_zone}' (level {levels[0]:g}) directly to "
                f"zone '{conduit.to_zone}' (level {levels[1]:g})",
            )


@rule(
    "ARCH-002",
    Severity.ERROR,
    "Every flow between OT and IT ends in the DMZ (level 3.5)",
    "let OT data leave into a level-3.5 zone, and let commands enter OT only from a level-3.5 zone",
)
def flows_end_in_dmz(loaded: LoadedContract) -> Iterator[Hit]:
    contract = loaded.contract
    for i, sink in enumerate(contract.sinks):
        conduit = contract.conduit(sink.conduit)
        dst = contract.zone(conduit.to_zone) if conduit else None
        src = contract.zone(conduit.from_zone) if conduit else None
        # A sink that starts in the DMZ (on a DMZ node, fed by a diode) carries data that stopped there.
        if dst is None or (src is not None and src.level == DMZ_LEVEL):
            continue
        data_levels = [z.level for z in (contract.zone(zid) for zid in sink_data_zones(contract, sink)) if z]
        if any(is_ot(level) for level in data_levels) and not is_ot(dst.level) and dst.level != DMZ_LEVEL:
            yield Hit(
                ("sinks", i, "conduit"),
                f"sink '{sink.id}' carries OT data into zone '{dst.id}' (level {dst.level:g}) without "
                "stopping in the DMZ",
            )
    for i, command in enumerate(contract.commands):
        conduit = contract.conduit(command.conduit)
        src = contract.zone(conduit.from_zone) if conduit else None
        found = contract.find_point(command.point)
        target = contract.zone(found[0].zone) if found else None
        if src is None or target is None:
            continue
        if is_ot(target.level) and not is_ot(src.level) and src.level != DMZ_LEVEL:
            yield Hit(
                ("commands", i, "conduit"),
                f"command '{command.id}' enters OT from zone '{src.id}' (level {src.level:g}), not from the DMZ",
            )


@rule(
    "ARCH-003",
    Severity.ERROR,
    "No command crosses a one-way conduit",
    "a one-way conduit (or diode) has no path back by design: send the command through a two-way conduit",
)
def no_command_over_one_way(loaded: LoadedContract) -> Iterator[Hit]:
    contract = loaded.contract
    for i, command in enumerate(contract.commands):
        conduit = contract.conduit(command.conduit)
        if conduit and conduit.direction == Direction.ONE_WAY:
            yield Hit(
                ("commands", i, "conduit"),
                f"command '{command.id}' is routed over one-way conduit '{conduit.id}'",
            )


@rule(
    "ARCH-004",
    Severity.ERROR,
    "A diode is one-way and points from OT toward IT (to a higher Purdue level)",
    "set 'direction: one-way' and make 'from' the OT-side zone and 'to' the zone nearer IT",
)
def diode_is_one_way_out(loaded: LoadedContract) -> Iterator[Hit]:
    contract = loaded.contract
    for i, conduit in enumerate(contract.conduits):
        if conduit.transport.strip().lower() != "diode":
            continue
        if conduit.direction != Direction.ONE_WAY:
            yield Hit(("conduits", i, "direction"), f"diode conduit '{conduit.id}' is declared {conduit.direction}")
        levels = conduit_levels(contract, conduit)
        # Upward from inside OT: out of the plant toward IT. A diode between two OT levels (a safety
        # system feeding supervisory) is common and fine; a diode into OT from above never is.
        if levels and not (is_ot(levels[0]) and levels[1] > levels[0]):
            yield Hit(
                ("conduits", i, "from"),
                f"diode conduit '{conduit.id}' runs from level {levels[0]:g} to level {levels[1]:g}; a diode "
                "lets data out of OT, never into it",
            )


@rule(
    "ARCH-005",
    Severity.ERROR,
    "A one-way conduit lists no request/response protocol",
    "remove the protocol, or carry the data with a one-way transport (the diode) instead",
)
def one_way_protocols(loaded: LoadedContract) -> Iterator[Hit]:
    for i, conduit in enumerate(loaded.contract.conduits):
        if conduit.direction != Direction.ONE_WAY:
            continue
        for j, protocol in enumerate(conduit.protocols):
            if protocol.strip().lower() in REQUEST_RESPONSE_PROTOCOLS:
                yield Hit(
                    ("conduits", i, "protocols", j),
                    f"one-way conduit '{conduit.id}' lists '{protocol}', which needs answers to flow back",
                )


@rule(
    "ARCH-006",
    Severity.ERROR,
    "A conduit joins two different declared zones",
    "name zones declared under 'zones:' in 'from' and 'to'",
)
def conduit_zones_exist(loaded: LoadedContract) -> Iterator[Hit]:
    contract = loaded.contract
    for i, conduit in enumerate(contract.conduits):
        for key, zone_id in (("from", conduit.from_zone), ("to", conduit.to_zone)):
            if contract.zone(zone_id) is None:
                yield Hit(("conduits", i, key), f"conduit '{conduit.id}' names zone '{zone_id}', which is not declared")
        if conduit.from_zone == conduit.to_zone:
            yield Hit(("conduits", i, "to"), f"conduit '{conduit.id}' starts and ends in zone '{conduit.to_zone}'")


@rule(
    "ARCH-007",
    Severity.ERROR,
    "A zone with target SL 3 or 4 has no two-way conduit to a lower-SL zone without a justification",
    "make the conduit one-way, or write in 'justification:' why the two-way path is needed and how it is guarded",
)
def high_sl_two_way(loaded: LoadedContract) -> Iterator[Hit]:
    contract = loaded.contract
    for i, conduit in enumerate(contract.conduits):
        if conduit.direction != Direction.TWO_WAY or conduit.justification.strip():
            continue
        src, dst = contract.zone(conduit.from_zone), contract.zone(conduit.to_zone)
        if src is None or dst is None:
            continue
        high, low = (src, dst) if src.security_level >= dst.security_level else (dst, src)
        if high.security_level >= 3 and low.security_level < high.security_level:
            yield Hit(
                ("conduits", i, "direction"),
                f"two-way conduit '{conduit.id}' joins zone '{high.id}' (SL {high.security_level}) to zone "
                f"'{low.id}' (SL {low.security_level}) without a justification",
            )


@rule(
    "ARCH-008",
    Severity.ERROR,
    "A sink's conduit exists and leads out of the zones its data comes from",
    "name a declared conduit whose 'from' zone the sink's devices can reach, or drop 'conduit' for a local sink",
)
def sink_conduit_leaves_data_zone(loaded: LoadedContract) -> Iterator[Hit]:
    contract = loaded.contract
    for i, sink in enumerate(contract.sinks):
        if sink.conduit is None:
            continue
        conduit = contract.conduit(sink.conduit)
        if conduit is None:
            yield Hit(
                ("sinks", i, "conduit"), f"sink '{sink.id}' names conduit '{sink.conduit}', which is not declared"
            )
            continue
        for zone_id in sorted(sink_data_zones(contract, sink)):
            if not reachable(contract, zone_id, conduit.from_zone):
                yield Hit(
                    ("sinks", i, "conduit"),
                    f"sink '{sink.id}' carries data from zone '{zone_id}', but conduit '{conduit.id}' starts in "
                    f"zone '{conduit.from_zone}', which that data cannot reach",
                )


@rule(
    "ARCH-009",
    Severity.ERROR,
    "A command names its conduit, and that conduit leads to the zone of the device it writes",
    "set 'conduit:' to the declared conduit the command enters OT by; its 'to' zone must reach the device's zone",
)
def command_conduit_reaches_device(loaded: LoadedContract) -> Iterator[Hit]:
    contract = loaded.contract
    for i, command in enumerate(contract.commands):
        if command.conduit is None:
            yield Hit(("commands", i), f"command '{command.id}' does not say which conduit it crosses")
            continue
        conduit = contract.conduit(command.conduit)
        if conduit is None:
            yield Hit(
                ("commands", i, "conduit"),
                f"command '{command.id}' names conduit '{command.conduit}', which is not declared",
            )
            continue
        found = contract.find_point(command.point)
        if found is None:
            continue
        device = found[0]
        if contract.zone(device.zone) and not reachable(contract, conduit.to_zone, device.zone):
            yield Hit(
                ("commands", i, "conduit"),
                f"command '{command.id}' crosses conduit '{conduit.id}' into zone '{conduit.to_zone}', from which "
                f"device '{device.id}' in zone '{device.zone}' cannot be reached",
            )


@rule(
    "ARCH-010",
    Severity.ERROR,
    "No two-way conduit joins the DMZ (level 3.5) to level 2 or below",
    "end the conduit in a level-3 zone (site operations), which reaches the cell through a conduit of its own; "
    "or carry the data out of the cell one way, through a diode",
)
def dmz_two_way_below_level_3(loaded: LoadedContract) -> Iterator[Hit]:
    # Purdue: the DMZ exchanges data with level 3 and level 4 only. A two-way path from the DMZ into a
    # control cell puts the cell one compromised DMZ host away from the outside (IEC 62443-3-2 keeps
    # such paths to conduits whose ends are the zones that need them).
    contract = loaded.contract
    for i, conduit in enumerate(contract.conduits):
        if conduit.direction != Direction.TWO_WAY:
            continue
        levels = conduit_levels(contract, conduit)
        if levels is None or DMZ_LEVEL not in levels:
            continue
        other = levels[1] if levels[0] == DMZ_LEVEL else levels[0]
        if other <= 2:
            yield Hit(
                ("conduits", i),
                f"two-way conduit '{conduit.id}' joins the DMZ to zone "
                f"'{conduit.to_zone if levels[0] == DMZ_LEVEL else conduit.from_zone}' at level {other:g}",
            )


#: Transports that authenticate both ends and encrypt, or cannot carry anything back at all.
PROTECTED_TRANSPORTS = frozenset({"tls", "mtls", "dtls", "ssh", "ipsec", "wireguard", "vpn", "diode"})


@rule(
    "ARCH-011",
    Severity.WARNING,
    "A conduit that crosses into or out of the DMZ is authenticated and encrypted",
    "set 'transport:' to tls (or ssh, ipsec, wireguard), or carry the data one way through a diode",
)
def boundary_conduit_protected(loaded: LoadedContract) -> Iterator[Hit]:
    # IEC 62443-3-2 ZCR: the conduits between zones of different trust are where protection is applied.
    # Cleartext across the OT/IT boundary lets anyone on either network read and forge what crosses.
    contract = loaded.contract
    for i, conduit in enumerate(contract.conduits):
        levels = conduit_levels(contract, conduit)
        if levels is None or DMZ_LEVEL not in levels or levels[0] == levels[1]:
            continue
        if conduit.transport.strip().lower() not in PROTECTED_TRANSPORTS:
            yield Hit(
                ("conduits", i, "transport"),
                f"conduit '{conduit.id}' crosses the DMZ boundary over '{conduit.transport}', which neither "
                "authenticates nor encrypts",
            )


#: Transports that have ports: for these a two-way conduit lists the ports it opens.
IP_TRANSPORTS = frozenset({"tcp", "udp", "tls", "mtls", "dtls", "mqtt", "http", "https"})


@rule(
    "ARCH-012",
    Severity.WARNING,
    "Every conduit lists the protocols it carries, and a two-way IP conduit the ports it opens",
    "list them under 'protocols:' and 'ports:' - the firewall between the zones opens exactly these",
)
def conduit_channels_listed(loaded: LoadedContract) -> Iterator[Hit]:
    # IEC 62443-3-2 asks for each conduit's communication channels to be documented. An empty list
    # reads as "anything may cross", which no firewall rule and no reviewer can check.
    for i, conduit in enumerate(loaded.contract.conduits):
        if not conduit.protocols:
            yield Hit(("conduits", i), f"conduit '{conduit.id}' lists no protocol")
        elif (
            conduit.direction == Direction.TWO_WAY
            and conduit.transport.strip().lower() in IP_TRANSPORTS
            and not conduit.ports
        ):
            yield Hit(("conduits", i), f"two-way conduit '{conduit.id}' lists no port")
