"""The command conduit: the OT node fetches approved requests from the DMZ node, and reports back.

The DMZ node runs the :class:`Outbox`, a mutual-TLS listener that answers two questions: "what is
approved and waiting?" and "here is what happened to request X". The OT node runs the
:class:`Fetcher`, which opens the connection (the OT node never listens for the IT side), checks what
it receives against its own contract and keyring (executor.py), executes, and reports. One JSON
message per line, at most 4 MiB.

Nothing executes unless the contract declares the conduit, two-way, and (when the conduit lists
ports) the port the fetcher connects to; a one-way conduit never carries a command.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
from typing import Any

from otseam.contract.models import Contract, Direction
from otseam.control.authority.executor import Executor
from otseam.control.authority.pki import peer_name
from otseam.control.authority.policy import PolicyError
from otseam.control.authority.service import AuthorityError, AuthorityService

log = logging.getLogger("otseam.control.authority")

MAX_MESSAGE = 4 * 1024 * 1024


async def _send(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    writer.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
    await writer.drain()


async def _receive(reader: asyncio.StreamReader, within: float) -> dict[str, Any]:
    async with asyncio.timeout(within):
        line = await reader.readline()
    if not line:
        raise ConnectionError("the peer closed the connection")
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("a message is a JSON object")
    return message


def conduit_problem(contract: Contract, conduit_id: str, port: int | None) -> str | None:
    conduit = contract.conduit(conduit_id)
    if conduit is None:
        return f"conduit '{conduit_id}' is not declared in the contract; no command executes"
    if conduit.direction is not Direction.TWO_WAY:
        return f"conduit '{conduit_id}' is one-way; a command never crosses it"
    if port is not None and conduit.ports and port not in conduit.ports:
        return f"port {port} is not among the ports of conduit '{conduit_id}' ({', '.join(map(str, conduit.ports))})"
    return None


class Outbox:
    """The DMZ node's end: serves approved requests to OT nodes whose certificate names are allowed."""

    def __init__(
        self,
        service: AuthorityService,
        context: ssl.SSLContext,
        host: str,
        port: int,
        allowed_peers: set[str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.service = service
        self.context = context
        self.host = host
        self.port = port
        self.allowed_peers = allowed_peers
        self.timeout = timeout
        self._server: asyncio.Server | None = None
        self._handlers: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, ssl=self.context, limit=MAX_MESSAGE
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            # Closing a connection ends its handler (its next read sees the end): no task is cancelled.
            for writer in list(self._handlers.values()):
                writer.close()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = peer_name(writer.get_extra_info("ssl_object"))
        task = asyncio.current_task()
        if task is not None:
            self._handlers[task] = writer
            task.add_done_callback(lambda done: self._handlers.pop(done, None))
        try:
            if self.allowed_peers is not None and peer not in self.allowed_peers:
                log.warning("command conduit: refused a connection from %r (not an allowed OT node)", peer)
                await _send(writer, {"ok": False, "error": f"'{peer}' is not an OT node allowed here"})
                return
            while True:
                try:
                    message = await _receive(reader, self.timeout)
                except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
                    return
                await _send(writer, self._answer(peer, message))
        except (ValueError, OSError) as exc:
            log.warning("command conduit: %s: %s", peer or "unknown peer", exc)
        finally:
            writer.close()

    def _answer(self, peer: str, message: dict[str, Any]) -> dict[str, Any]:
        op = message.get("op")
        if op == "fetch":
            return {"ok": True, "requests": self.service.ready()}
        if op == "report":
            outcome = message.get("outcome")
            if not isinstance(outcome, dict) or not isinstance(message.get("id"), str):
                return {"ok": False, "error": "a report names an id and an outcome"}
            try:
                self.service.report(message["id"], {**outcome, "node": peer or outcome.get("node", "")})
            except AuthorityError as exc:
                return {"ok": False, "error": str(exc)}
            return {"ok": True}
        return {"ok": False, "error": f"unknown operation {op!r}"}


class Fetcher:
    """The OT node's end: connects out, fetches, executes, reports; every ``interval`` seconds."""

    def __init__(
        self,
        executor: Executor,
        conduit: str,
        host: str,
        port: int,
        context: ssl.SSLContext,
        interval: float = 2.0,
        timeout: float = 30.0,
    ) -> None:
        problem = conduit_problem(executor.contract, conduit, port)
        if problem:
            raise PolicyError(problem)
        executor.conduit = conduit
        self.executor = executor
        self.host = host
        self.port = port
        self.context = context
        self.interval = interval
        self.timeout = timeout
        self.server_name = host
        #: Why the last round failed; "" once a round succeeded. Health shows it.
        self.last_error = "not connected yet"

    async def run_once(self) -> list[dict[str, Any]]:
        """One round: every approved request fetched, executed (or refused) and reported."""
        async with asyncio.timeout(self.timeout):
            reader, writer = await asyncio.open_connection(
                self.host, self.port, ssl=self.context, server_hostname=self.server_name, limit=MAX_MESSAGE
            )
        outcomes = []
        try:
            await _send(writer, {"op": "fetch"})
            answer = await _receive(reader, self.timeout)
            if not answer.get("ok"):
                raise ConnectionError(f"the DMZ node refused: {answer.get('error')}")
            for item in answer.get("requests") or []:
                if not self.executor.concerns(item):
                    continue
                outcome = await self.executor.execute(item)
                outcomes.append(outcome)
                await _send(writer, {"op": "report", "id": outcome["id"], "outcome": outcome})
                reply = await _receive(reader, self.timeout)
                if not reply.get("ok"):
                    log.warning("command conduit: report of %s not taken: %s", outcome["id"], reply.get("error"))
        finally:
            writer.close()
        return outcomes

    async def run(self) -> None:
        """Until cancelled; a DMZ node that is away is retried with backoff, never an error of ours."""
        failures = 0
        while True:
            try:
                await self.run_once()
                failures, self.last_error = 0, ""
                await asyncio.sleep(self.interval)
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, ValueError, ssl.SSLError) as exc:
                failures += 1
                message = str(exc) or type(exc).__name__
                if message != self.last_error:
                    log.warning("command conduit to %s:%d: %s", self.host, self.port, message)
                self.last_error = message
                await asyncio.sleep(min(60.0, self.interval * 2 ** min(failures, 5)) * random.uniform(0.5, 1.0))
