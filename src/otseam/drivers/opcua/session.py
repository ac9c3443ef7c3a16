"""One OPC UA session to one server, re-activated rather than leaked across link losses.

A session lives on the server until it is closed or times out. A client that simply reconnects after a
dropped link leaves the old session behind, and after a few outages the server answers
BadTooManySessions. So, following OPC UA Part 4 (6.7), when the link drops we keep the session's token
and, on the next connection, re-activate that same session on the new secure channel; only if the server
no longer knows it (it restarted, or the session timed out) do we create a new one. An orderly stop
closes the session (and its subscriptions) on the server.

Built on asyncua's public client steps (connect_socket, send_hello, open_secure_channel,
create_session, activate_session) rather than its ``connect()``, whose own reconnect supervisor would
compete with the driver's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from asyncua.client.client import Client
from asyncua.crypto import security_policies, uacrypto
from cryptography import x509

from otseam.drivers.opcua._ua import ua
from otseam.drivers.opcua.config import Settings

log = logging.getLogger("otseam.drivers.opcua")

APPLICATION_URI = "urn:otseam:seam:client"


class Session:
    def __init__(self, url: str, options: Settings, timeout: float, label: str) -> None:
        self.url = url
        self.options = options
        self.timeout = timeout
        self.label = label
        self.client = Client(url, timeout=timeout)
        self.client.name = self.client.description = "Seam"
        self.client.application_uri = APPLICATION_URI
        self.client.product_uri = "urn:otseam:seam"
        self.client.session_timeout = round(options.session_timeout * 1000)
        self._security_ready = False
        self._username: str | None = None
        self._password: str | None = None
        self._token: ua.NodeId | None = None
        self._renew: asyncio.Task[None] | None = None
        #: Set when the transport goes away under us (socket closed by the peer).
        self.lost = asyncio.Event()
        self.sessions_created = 0
        self.sessions_reactivated = 0

    # --- security ------------------------------------------------------------------------------

    async def _configure_security(self) -> None:
        security = self.options.security
        if security.username:
            self._username = security.username
            password = security.password()
            if password is None:
                raise PermissionError(
                    f"the password for user {security.username!r} is not available "
                    f"({'environment variable ' + security.password_env if security.password_env else 'password file'})"
                )
            self._password = password
        if security.policy == "None" or self._security_ready:
            self._security_ready = True
            return
        certificate = await uacrypto.load_certificate(security.certificate)
        # asyncua checks that the certificate names this client's application URI: use the one it names.
        with contextlib.suppress(x509.ExtensionNotFound):
            names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            uris = names.get_values_for_type(x509.UniformResourceIdentifier)
            if uris:
                self.client.application_uri = uris[0]
        policy: type[security_policies.SecurityPolicy] = getattr(security_policies, f"SecurityPolicy{security.policy}")
        mode = getattr(ua.MessageSecurityMode, security.mode)
        await self.client.set_security(
            policy,
            security.certificate,
            security.private_key,
            server_certificate=security.server_certificate or None,
            mode=mode,
        )
        self._security_ready = True

    # --- open, lose, close ---------------------------------------------------------------------

    async def open(self) -> bool:
        """Connect and activate a session; True when the previous session was re-activated."""
        await self._configure_security()
        client = self.client
        client.uaclient.clear_disconnect_request()
        self.lost.clear()
        await client.connect_socket()
        protocol = client.uaclient.protocol
        try:
            await client.send_hello()
            await client.open_secure_channel()
            reused = False
            if self._token is not None:
                reused = await self._reactivate(self._token)
            if not reused:
                await client.create_session()
                try:
                    await client.activate_session(self._username, self._password)
                except BaseException:
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(self.timeout):
                            await client.uaclient.close_session(True)
                    raise
                self.sessions_created += 1
            self._token = client.uaclient.session.authentication_token
        except BaseException:
            client.disconnect_socket()
            raise
        if protocol is not None:
            previous = protocol.on_connection_lost

            def on_lost(exc: Exception | None) -> None:
                self.lost.set()
                if previous is not None:
                    previous(exc)

            protocol.on_connection_lost = on_lost
        self._renew = asyncio.get_running_loop().create_task(self._renew_channel(), name=f"opcua-renew {self.label}")
        return reused

    async def _reactivate(self, token: ua.NodeId) -> bool:
        session = self.client.uaclient.session
        session.restore_authentication_token(token)
        try:
            await self.client.activate_session(self._username, self._password)
        except ua.UaStatusCodeError as exc:
            log.info("%s: the server no longer knows our session (%s); creating a new one", self.label, exc)
            session.reset_authentication_token()
            self._token = None
            return False
        self.sessions_reactivated += 1
        return True

    async def _renew_channel(self) -> None:
        """Renew the secure channel at 75% of its lifetime (OPC UA Part 4, 5.5.2)."""
        client = self.client
        while True:
            await asyncio.sleep(max(1.0, client.secure_channel_timeout * 0.75 / 1000))
            try:
                await client.open_secure_channel(renew=True)
                client.uaclient.revolve_security_token()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s: renewing the secure channel failed (%s); reconnecting", self.label, exc)
                self.lost.set()
                return

    async def _stop_renew(self) -> None:
        task, self._renew = self._renew, None
        if task is None or task.done():
            return
        task.cancel()
        # asyncio.wait raises neither the renewal's own CancelledError nor its error, and unlike
        # suppressing CancelledError around ``await task`` it never swallows a cancellation aimed at us
        # (a driver stopped at this moment would otherwise run on).
        done, _ = await asyncio.wait({task}, timeout=self.timeout)
        if not done:
            log.warning("%s: the secure channel renewal did not stop within %gs; leaving it", self.label, self.timeout)

    async def drop(self) -> None:
        """The link is gone (or hangs): drop the socket, keep the session's token for re-activation."""
        await self._stop_renew()
        client = self.client
        client.disconnect_socket()
        # Marks the session closed locally only (no socket): its publish loop stops, the token stays ours.
        token = client.uaclient.session.authentication_token
        with contextlib.suppress(Exception):
            await client.uaclient.session.close_session(False)
        if token is not None and not token.is_null():
            self._token = token

    async def close(self) -> None:
        """Orderly end: close the session on the server (deleting its subscriptions), then the channel.

        Each request waits at most the device timeout: a server or link that stops answering must not
        hold up a stopping gateway. Past it the connection is abandoned (the socket aborted) and the
        server drops the session when its timeout runs out.
        """
        await self._stop_renew()
        client = self.client
        step = "CloseSession"
        try:
            if client.uaclient.protocol is not None and not client.uaclient.protocol.is_closed:
                async with asyncio.timeout(self.timeout):
                    await client.uaclient.close_session(True)
                step = "CloseSecureChannel"
                async with asyncio.timeout(self.timeout):
                    await client.close_secure_channel()
        except TimeoutError:
            log.warning("%s: no answer to %s within %gs; abandoning the connection", self.label, step, self.timeout)
            self._abort_transport()
        except Exception as exc:  # the server may be gone already; the socket is closed below anyway
            log.debug("%s: closing the session: %s", self.label, exc)
        finally:
            client.disconnect_socket()
            self._token = None

    def _abort_transport(self) -> None:
        """Drop the socket without flushing: a peer that stopped reading would keep a closing one open."""
        protocol = self.client.uaclient.protocol
        transport = getattr(protocol, "transport", None)
        if isinstance(transport, asyncio.Transport):
            transport.abort()

    @property
    def uasession(self) -> Any:
        return self.client.uaclient.session
