"""The REST API of a real `seam run` on the generator: live values, history, alerts, the stream."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

from otseam.control.routes import ROUTES
from tests.control.node import Client
from tests.core.seamrun import SeamRun


def signed_in(node: SeamRun, user: str) -> Client:
    client = Client(f"http://127.0.0.1:{node.port}")
    reply = client.login(user)
    assert reply.status == 200, reply.body
    return client


def events(client: Client, path: str, limit: int) -> Iterator[tuple[str, object]]:
    """Server-sent events from ``path``, as (event, data), reading at most ``limit`` of them."""
    cookie = "; ".join(f"{c.name}={c.value}" for c in client.jar)
    request = urllib.request.Request(client.base + path, headers={"Cookie": cookie})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        kind, data = "", ""
        seen = 0
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "" and kind:
                yield kind, json.loads(data)
                kind, data = "", ""
                seen += 1
                if seen >= limit:
                    return


def test_points_have_live_values_that_change(node: SeamRun) -> None:
    client = signed_in(node, "ivan")
    first: dict[str, object] = {}

    def changed() -> bool:
        items = {p["key"]: p for p in client.get("/api/v1/points").json()["items"]}
        if not first:
            first.update({k: v["value"] for k, v in items.items()})
            return False
        flow = items["gen1/flow"]
        return flow["value"] != first["gen1/flow"] and flow["quality"] == "good" and flow["age"] < 5

    node.wait_for(changed, "a live value to change")
    page = client.get("/api/v1/points?limit=1&offset=1").json()
    assert page["total"] == 2 and [p["key"] for p in page["items"]] == ["gen1/flow"]
    assert client.get("/api/v1/points?quality=nonsense").status == 400
    assert client.get("/api/v1/points?limit=0").status == 400


def test_the_stream_sends_a_snapshot_then_values_and_ticks(node: SeamRun) -> None:
    client = signed_in(node, "ivan")
    kinds: dict[str, int] = {}
    values: list[float] = []
    for kind, data in events(client, "/api/v1/stream?points=gen1/flow", 40):
        kinds[kind] = kinds.get(kind, 0) + 1
        if kind in ("snapshot", "values"):
            assert isinstance(data, list)
            for _quality, _source_ts, _report_ts, points, group_values in data:
                assert set(points) == {"gen1/flow"}  # filtered to what was asked
                values.extend(group_values)
        if kinds.get("tick", 0) >= 2 and len(set(values)) >= 3:
            break
    assert kinds.get("snapshot") == 1 and kinds.get("values", 0) >= 1 and kinds.get("tick", 0) >= 2
    assert len(set(values)) >= 3


def test_the_stream_needs_a_session(node: SeamRun) -> None:
    assert Client(f"http://127.0.0.1:{node.port}").get("/api/v1/stream").status == 401


def test_history_raw_and_bucketed(node: SeamRun) -> None:
    client = signed_in(node, "ivan")

    def enough() -> bool:
        return len(client.get("/api/v1/points/gen1/level/history?from=-10min").json()["ts"]) >= 20

    node.wait_for(enough, "history in the historian")
    raw = client.get("/api/v1/points/gen1/level/history?from=-10min").json()
    assert len(raw["ts"]) == len(raw["value"]) == len(raw["quality"]) and raw["ts"] == sorted(raw["ts"])
    assert all(0 <= v <= 100 for v in raw["value"])
    bucketed = client.get("/api/v1/points/gen1/level/history?from=-10min&bucket=1s").json()
    assert bucketed["bucket"] == 1.0 and sum(bucketed["count"]) >= 10
    assert all(lo <= avg <= hi for lo, avg, hi in zip(bucketed["min"], bucketed["avg"], bucketed["max"], strict=True))
    limited = client.get("/api/v1/points/gen1/level/history?from=-10min&limit=5").json()
    assert len(limited["ts"]) == 5 and limited["truncated"] > 0
    assert client.get("/api/v1/points/gen1/nosuch/history").status == 404
    assert client.get("/api/v1/points/gen1/level/history?from=yesterday").status == 400
    assert client.get("/api/v1/points/gen1/level/history?bucket=0s").status == 400


def test_alarms_are_listed_and_acknowledged_with_a_comment(node: SeamRun) -> None:
    operator = signed_in(node, "olga")
    viewer = signed_in(node, "ivan")

    def raised() -> list[dict[str, object]]:
        items = operator.get("/api/v1/alerts?unacknowledged=true").json()["items"]
        return [a for a in items if a["kind"] == "alarm" and a["data"]["state"] == "raised"]

    node.wait_for(lambda: bool(raised()), "an alarm", within=30)
    alarm = raised()[0]
    offset = alarm["offset"]
    assert viewer.request("POST", f"/api/v1/alerts/{offset}/ack", {"comment": "seen"}).status == 403
    assert operator.request("POST", f"/api/v1/alerts/{offset}/ack", {"comment": "  "}).status == 400
    reply = operator.request("POST", f"/api/v1/alerts/{offset}/ack", {"comment": "level checked on site"})
    assert reply.status == 200
    assert reply.json()["acknowledged"]["user"] == "olga"
    assert reply.json()["acknowledged"]["comment"] == "level checked on site"
    assert operator.request("POST", f"/api/v1/alerts/{offset}/ack", {"comment": "again"}).status == 409
    assert operator.request("POST", "/api/v1/alerts/123456789/ack", {"comment": "x"}).status == 404
    assert all(a["offset"] != offset for a in raised())
    cleared = [a for a in operator.get("/api/v1/alerts").json()["items"] if a["data"].get("state") == "cleared"]
    if cleared:  # a clearing is information, not something to acknowledge
        assert not cleared[0]["needs_ack"]
        reply = operator.request("POST", f"/api/v1/alerts/{cleared[0]['offset']}/ack", {"comment": "x"})
        assert reply.status == 409

    def audited() -> bool:
        items = viewer.get("/api/v1/events?kind=audit.alert.ack").json()["items"]
        return any(e["data"]["data"]["offset"] == offset and e["data"]["actor"] == "olga" for e in items)

    node.wait_for(audited, "the acknowledgement in the journal")


def test_zones_conduits_and_the_contract(node: SeamRun) -> None:
    client = signed_in(node, "ivan")
    zones = client.get("/api/v1/zones").json()["items"]
    assert [z["level"] for z in zones] == sorted(z["level"] for z in zones)
    assert {z["id"]: z["health"] for z in zones}["cell"] == "ok"

    def carried() -> bool:
        conduits = {c["id"]: c for c in client.get("/api/v1/conduits").json()["items"]}
        return conduits["cell-dmz"]["flow"] == "declared-and-seen" and conduits["cell-dmz"]["rate"] > 0

    node.wait_for(carried, "traffic on the conduit")
    assert client.get("/api/v1/contract").json()["site"]["site"] == "plant1"
    document = client.get("/api/v1/contract/document")
    assert document.status == 200 and b"Seam interface" in document.body


def test_the_openapi_document_lists_every_api_route(node: SeamRun) -> None:
    client = signed_in(node, "ivan")
    document = client.get("/api/v1/openapi.json").json()
    assert document["openapi"].startswith("3.")
    for route in ROUTES:
        if route.api:
            assert route.method.lower() in document["paths"][route.path]
    assert Client(f"http://127.0.0.1:{node.port}").get("/api/v1/openapi.json").status == 401


def test_security_headers(node: SeamRun) -> None:
    client = signed_in(node, "ivan")
    reply = client.get("/api/v1/points")
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert reply.headers["Cache-Control"] == "no-store"
    page = client.get("/")
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]


def test_a_computed_point_is_listed_with_its_lineage(tmp_path: object) -> None:
    """Both teams see what a computed number is made of and who owns its formula (issue: edge processing)."""
    from pathlib import Path

    from tests.control.node import CONTRACT, start_node

    computed = """\
computed:
  - id: flow_ls
    expression: "$gen1/flow / 3.6"
    type: float64
    unit: L/s
    owner: erik
    description: outlet flow in litres per second
"""
    workdir = Path(str(tmp_path))
    node = start_node(workdir, CONTRACT + computed)
    try:
        client = signed_in(node, "ivan")

        def listed() -> dict[str, object] | None:
            items = {p["key"]: p for p in client.get("/api/v1/points?device=computed").json()["items"]}
            point = items.get("computed/flow_ls")
            return point if point and point.get("quality") == "good" else None

        node.wait_for(lambda: listed() is not None, "the computed point with a good value")
        point = listed()
        assert point is not None
        assert point["lineage"] == {
            "kind": "expression",
            "formula": "$gen1/flow / 3.6",
            "inputs": ["gen1/flow"],
            "sources": ["gen1/flow"],
            "owner": "erik",
        }
        assert point["unit"] == "L/s" and isinstance(point["value"], float)
    finally:
        node.stop()
