"""``seam discover opcua URL``: browse an OPC UA server and draft the contract section of its variables.

Polite: one session, browsing only (Browse, BrowseNext and Read of a few attributes per variable),
bounded by ``max_nodes``. Security as the server requires it: its endpoints are asked first (no
session needed for that); with no certificate given, only an endpoint without security can be used,
and if the server offers none the message names the policies it requires. The draft is deliberately
incomplete: device name, zone, owner, point names and what each point means are for a person who
knows the plant, and every such place says TODO.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from asyncua.client.client import Client
from asyncua.crypto import security_policies, uacrypto
from cryptography import x509

from otseam.drivers.opcua._ua import ua

#: OPC UA built-in DataType id -> contract point type.
TYPES: dict[int, str] = {
    1: "bool",
    4: "int16",
    5: "uint16",
    6: "int32",
    7: "uint32",
    8: "int64",
    9: "uint64",
    10: "float32",
    11: "float64",
    12: "string",
    # SByte, Byte: the contract has no 8-bit types; the 16-bit ones hold them.
    2: "int16",
    3: "uint16",
}
_POLICY_NAMES = {
    "http://opcfoundation.org/UA/SecurityPolicy#None": "None",
    "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256": "Basic256Sha256",
    "http://opcfoundation.org/UA/SecurityPolicy#Aes128_Sha256_RsaOaep": "Aes128Sha256RsaOaep",
    "http://opcfoundation.org/UA/SecurityPolicy#Aes256_Sha256_RsaPss": "Aes256Sha256RsaPss",
}
_MODES = {1: "None", 2: "Sign", 3: "SignAndEncrypt"}


class DiscoveryError(Exception):
    """Discovery cannot go on; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Credentials:
    certificate: str = ""
    private_key: str = ""
    server_certificate: str = ""
    policy: str = ""
    mode: str = ""
    username: str = ""
    password: str | None = None


@dataclass(slots=True)
class FoundVariable:
    node_id: str
    path: list[str]
    datatype: str
    type: str | None
    description: str = ""
    unit: str = ""
    range: tuple[float, float] | None = None
    writable: bool = False


@dataclass(slots=True)
class Found:
    url: str
    policy: str
    mode: str
    offered: list[tuple[str, str]]
    variables: list[FoundVariable] = field(default_factory=list)
    truncated: bool = False
    browsed: int = 0


async def endpoints(url: str, answer_within: float) -> list[tuple[str, str, int]]:
    """(policy, mode, security level) of each endpoint the server offers."""
    client = Client(url, timeout=answer_within)
    found = []
    for endpoint in await client.connect_and_get_server_endpoints():
        policy = _POLICY_NAMES.get(endpoint.SecurityPolicyUri, endpoint.SecurityPolicyUri.rsplit("#", 1)[-1])
        found.append((policy, _MODES.get(int(endpoint.SecurityMode), "?"), int(endpoint.SecurityLevel)))
    return found


def choose(offered: list[tuple[str, str, int]], credentials: Credentials) -> tuple[str, str]:
    """The endpoint to use: the one asked for, else the most secure one we can use."""
    usable = [(p, m, level) for p, m, level in offered if p in _POLICY_NAMES.values()]
    if credentials.policy:
        mode = credentials.mode or ("None" if credentials.policy == "None" else "SignAndEncrypt")
        if not any(p == credentials.policy and m == mode for p, m, _ in usable):
            listed = ", ".join(f"{p}/{m}" for p, m, _ in offered)
            raise DiscoveryError(f"the server does not offer {credentials.policy}/{mode}; it offers {listed}")
        return credentials.policy, mode
    if credentials.certificate:
        secure = [(level, p, m) for p, m, level in usable if p != "None"]
        if secure:
            _level, policy, mode = max(secure)
            return policy, mode
    if any(p == "None" for p, _m, _ in usable):
        return "None", "None"
    required = ", ".join(sorted({f"{p}/{m}" for p, m, _ in offered}))
    raise DiscoveryError(
        f"the server requires security ({required}): give this client's --certificate and --private-key "
        "(the server must trust that certificate) and, if it asks for a login, --username and --password-file"
    )


async def _secure(client: Client, credentials: Credentials, policy: str, mode: str) -> None:
    if policy == "None":
        return
    if not (credentials.certificate and credentials.private_key):
        raise DiscoveryError(f"{policy}/{mode} needs --certificate and --private-key")
    certificate = await uacrypto.load_certificate(credentials.certificate)
    with contextlib.suppress(x509.ExtensionNotFound):
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = names.get_values_for_type(x509.UniformResourceIdentifier)
        if uris:
            client.application_uri = uris[0]
    await client.set_security(
        getattr(security_policies, f"SecurityPolicy{policy}"),
        credentials.certificate,
        credentials.private_key,
        server_certificate=credentials.server_certificate or None,
        mode=getattr(ua.MessageSecurityMode, mode),
    )


async def discover(
    url: str,
    credentials: Credentials,
    *,
    max_nodes: int = 10_000,
    answer_within: float = 10.0,
    progress: Callable[[str], None] = lambda line: None,
) -> Found:
    offered = await endpoints(url, answer_within)
    policy, mode = choose(offered, credentials)
    progress(f"endpoints: {', '.join(sorted({f'{p}/{m}' for p, m, _ in offered}))}; using {policy}/{mode}")
    client = Client(url, timeout=answer_within)
    await _secure(client, credentials, policy, mode)
    if credentials.username:
        client.set_user(credentials.username)
        client.set_password(credentials.password or "")
    found = Found(url, policy, mode, [(p, m) for p, m, _ in offered])
    async with client:
        await _browse(client, found, max_nodes, progress)
    return found


async def _browse(client: Client, found: Found, max_nodes: int, progress: Callable[[str], None]) -> None:
    objects = client.nodes.objects
    queue: list[tuple[Any, list[str]]] = [(objects, [])]
    seen: set[str] = set()
    last_report = time.monotonic()
    while queue:
        node, path = queue.pop(0)
        try:
            children = await node.get_children_descriptions(refs=ua.ObjectIds.HierarchicalReferences)
        except ua.UaError:
            continue
        for child in children:
            key = child.NodeId.to_string()
            if key in seen:
                continue
            seen.add(key)
            # Namespace 0 is the server's own description (Server object, types): not plant data.
            if child.NodeId.NamespaceIndex == 0:
                continue
            found.browsed += 1
            if found.browsed > max_nodes:
                found.truncated = True
                return
            name = child.BrowseName.Name or key
            if child.NodeClass == ua.NodeClass.Variable:
                variable = await _describe(client, child.NodeId, [*path, name])
                if variable is not None:
                    found.variables.append(variable)
                    # A variable's own children (EURange, EngineeringUnits...) were read just now.
                    continue
            if child.NodeClass in (ua.NodeClass.Object, ua.NodeClass.Variable):
                queue.append((client.get_node(child.NodeId), [*path, name]))
        if time.monotonic() - last_report > 1.0:
            last_report = time.monotonic()
            progress(f"browsed {found.browsed} nodes, {len(found.variables)} variables so far")


async def _describe(client: Client, node_id: Any, path: list[str]) -> FoundVariable | None:
    node = client.get_node(node_id)
    attributes = [ua.AttributeIds.DataType, ua.AttributeIds.Description, ua.AttributeIds.AccessLevel]
    try:
        values = await node.read_attributes(attributes)
    except ua.UaError:
        return None
    datatype_id = values[0].Value.Value if values[0].Value is not None else None
    description = values[1].Value.Value if values[1].Value is not None else None
    access = values[2].Value.Value if values[2].Value is not None else 0
    datatype = "?"
    point_type = None
    if datatype_id is not None:
        if datatype_id.NamespaceIndex == 0 and isinstance(datatype_id.Identifier, int):
            point_type = TYPES.get(datatype_id.Identifier)
            datatype = ua.ObjectIdNames.get(datatype_id.Identifier, datatype_id.to_string())
        else:
            datatype = datatype_id.to_string()
    variable = FoundVariable(
        node_id=node_id.to_string(),
        path=path,
        datatype=datatype,
        type=point_type,
        description=(description.Text or "") if description is not None else "",
        writable=bool(int(access or 0) & ua.AccessLevel.CurrentWrite.mask),
    )
    with contextlib.suppress(ua.UaError):
        for prop in await node.get_properties():
            name = (await prop.read_browse_name()).Name
            if name == "EngineeringUnits":
                eu = await prop.read_value()
                text = getattr(getattr(eu, "DisplayName", None), "Text", None)
                variable.unit = str(text or "")
            elif name == "EURange":
                rng = await prop.read_value()
                if rng is not None and hasattr(rng, "Low"):
                    variable.range = (float(rng.Low), float(rng.High))
    return variable


# --- the draft -------------------------------------------------------------------------------------


def _q(text: str) -> str:
    """A YAML scalar that can hold anything: JSON strings are valid YAML."""
    return json.dumps(text, ensure_ascii=False)


def _point_id(path: list[str], taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9_]+", "_", "_".join(path[-2:]).lower()).strip("_") or "point"
    if not base[0].isalpha():
        base = f"p_{base}"
    candidate, n = base[:60], 2
    while candidate in taken:
        candidate, n = f"{base[:56]}_{n}", n + 1
    taken.add(candidate)
    return candidate


def render_draft(found: Found, command: str) -> str:
    lines = [
        f"# Draft written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "# Nothing here is known to be right: complete every TODO with the people who own the equipment,",
        "# remove the points nobody needs, then run `seam check`.",
        f"# The server offers: {', '.join(f'{p}/{m}' for p, m in sorted(set(found.offered)))}.",
        "devices:",
        "  - id: TODO_device  # TODO: a name the plant uses for this server or the machine behind it",
        "    driver: opcua",
        f"    endpoint: {found.url}",
        "    zone: TODO  # TODO: the zone (Purdue level) this server sits in",
        "    owner: TODO  # TODO: the OT person responsible for it",
        "    poll: 1s  # TODO: how fresh the values need to be",
    ]
    options: list[str] = []
    if found.policy != "None":
        options += [
            f"      security_policy: {found.policy}",
            f"      security_mode: {found.mode}",
            "      certificate: TODO  # TODO: this client's certificate (the server must trust it)",
            "      private_key: TODO",
        ]
    if options:
        lines += ["    options:", *options]
    if found.truncated:
        lines.append(f"    # browsing stopped after {found.browsed - 1} nodes (--max-nodes): there is more")
    if not found.variables:
        lines.append("    points: []  # nothing readable was found under Objects")
        return "\n".join(lines) + "\n"
    lines.append("    points:")
    taken: set[str] = set()
    skipped = 0
    for variable in found.variables:
        where = "/".join(variable.path)
        if variable.type is None:
            skipped += 1
            lines.append(
                f"      # {where}: {variable.node_id}, DataType {variable.datatype}: not a scalar type Seam reads"
            )
            continue
        lines.append(f"      # {where}" + ("  (writable on the server)" if variable.writable else ""))
        lines += [
            f"      - id: {_point_id(variable.path, taken)}  # TODO: a name the plant uses",
            f"        address: {_q(variable.node_id)}",
            f"        type: {variable.type}  # the server's DataType: {variable.datatype}",
        ]
        if variable.unit:
            lines.append(f"        unit: {_q(variable.unit)}")
        if variable.range is not None:
            low, high = variable.range
            lines.append(f"        range: {{low: {low:g}, high: {high:g}}}")
        if variable.description:
            lines.append(f"        description: {_q(variable.description)}")
    if skipped:
        lines.append(f"      # {skipped} variable(s) above have types the contract has no type for")
    return "\n".join(lines) + "\n"
