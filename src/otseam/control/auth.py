"""Signing in, sessions, API tokens, CSRF, throttling and lockout.

* A session is a random 256-bit id in an HttpOnly, SameSite=Strict cookie (Secure under TLS), kept in
  memory only: restarting the node signs everyone out, which is the safe direction. It ends after
  ``control.session_idle`` without a request and ``control.session_max`` in any case, when the user is
  removed, their password changes or their role changes.
* Requests that change something and come with the cookie must carry the session's CSRF token in the
  ``X-CSRF-Token`` header; a page of another site can make the browser send the cookie, not read the
  token. Requests with an API token (``Authorization: Bearer seam_...``) carry no cookie and need none.
* Five wrong passwords for one user within 15 minutes lock that user for 15 minutes (IEC 62443-3-3
  SR 1.11); twenty failures from one address within 15 minutes make it wait. Every sign-in, failure and
  lockout is an ``audit.login`` event in the journal.
* TOTP (RFC 6238, pyotp) is asked for when the user enrolled one or the contract requires it of them;
  a code is accepted once.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import pyotp

from otseam.contract.models import Contract
from otseam.control.roles import GRANTS, Permission, Role, totp_required
from otseam.control.users import Token, User, UserStore

COOKIE = "seam_session"
CSRF_HEADER = "X-CSRF-Token"
WINDOW = 15 * 60.0
USER_FAILURES = 5
ADDRESS_FAILURES = 20
LOCKOUT = 15 * 60.0


@dataclass(slots=True)
class Session:
    id: str
    user: str
    role: Role
    csrf: str
    created: float
    last_seen: float
    password_changed: float


@dataclass(slots=True, frozen=True)
class Identity:
    user: str
    person: str
    role: Role
    #: What this request may do: the role's grants, narrowed to the token's scopes for a token.
    permissions: frozenset[Permission]
    session: Session | None = None
    token: Token | None = None

    def may(self, permission: Permission) -> bool:
        return permission in self.permissions


class LoginRefused(Exception):
    """The sign-in failed; ``status`` is the HTTP status, the message is safe to show."""

    def __init__(self, status: int, message: str, retry_after: float | None = None, needs_totp: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.needs_totp = needs_totp


@dataclass(slots=True)
class _Failures:
    times: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


class Authenticator:
    def __init__(
        self, store: UserStore, contract: Callable[[], Contract], clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.contract = contract
        self.clock = clock
        self.sessions: dict[str, Session] = {}
        self._users: dict[str, _Failures] = {}
        self._addresses: dict[str, _Failures] = {}
        self._used_codes: dict[str, int] = {}

    # --- signing in ---------------------------------------------------------------------------------

    def login(self, name: str, password: str, code: str | None, address: str) -> Session:
        """Everything in one call (blocking for the argon2 verification): for callers without a loop."""
        self.admit(name, address)
        return self.complete(name, self.store.verify(name, password), code, address)

    async def login_async(self, name: str, password: str, code: str | None, address: str) -> Session:
        """The same on the event loop: only the password verification (argon2, deliberately slow) runs
        in a worker thread; throttling, sessions and codes stay on the loop, which owns them."""
        import asyncio

        self.admit(name, address)
        user = await asyncio.to_thread(self.store.verify, name, password)
        return self.complete(name, user, code, address)

    def admit(self, name: str, address: str) -> None:
        """Raise LoginRefused when the address is throttled or the account locked."""
        now = self.clock()
        self._expire_sessions(now)
        by_address = self._failures(self._addresses, address, now)
        if len(by_address.times) >= ADDRESS_FAILURES:
            wait = by_address.times[0] + WINDOW - now
            raise LoginRefused(429, "too many failed sign-ins from this address; try again later", wait)
        by_user = self._failures(self._users, name, now)
        if by_user.locked_until > now:
            raise LoginRefused(
                429,
                "this account is locked after repeated failed sign-ins; try again later",
                by_user.locked_until - now,
            )

    def complete(self, name: str, user: User | None, code: str | None, address: str) -> Session:
        """After the password check: count a failure, or check the second factor and open a session."""
        now = self.clock()
        by_address = self._failures(self._addresses, address, now)
        by_user = self._failures(self._users, name, now)
        if by_user.locked_until > now:  # locked by a concurrent failure while the password was checked
            raise LoginRefused(429, "this account is locked after repeated failed sign-ins; try again later")
        if user is None:
            self._fail(by_user, by_address, now)
            raise LoginRefused(401, "wrong user name or password")
        contract = self.contract()
        person = contract.person(user.person)
        if person is None:
            raise LoginRefused(403, f"{name} is tied to person {user.person}, who is no longer in the contract")
        if user.totp is not None or totp_required(person, contract):
            if user.totp is None:
                raise LoginRefused(
                    403, f"the contract requires a second factor of {name}: enrol one with 'seam user totp'"
                )
            if not code:
                raise LoginRefused(401, "enter the code from your authenticator app", needs_totp=True)
            if not self._check_code(user, code, now):
                self._fail(by_user, by_address, now)
                raise LoginRefused(401, "wrong or already used code", needs_totp=True)
        by_user.times.clear()
        session = Session(
            secrets.token_urlsafe(32),
            user.name,
            user.role,
            secrets.token_urlsafe(32),
            now,
            now,
            user.password_changed,
        )
        self.sessions[session.id] = session
        return session

    def _check_code(self, user: User, code: str, now: float) -> bool:
        assert user.totp is not None
        totp = pyotp.TOTP(user.totp)
        code = code.strip().replace(" ", "")
        for step in (0, -1, 1):
            at = now + step * totp.interval
            counter = int(at // totp.interval)
            if hmac.compare_digest(totp.at(at), code) and counter > self._used_codes.get(user.name, -1):
                self._used_codes[user.name] = counter
                return True
        return False

    def _failures(self, table: dict[str, _Failures], key: str, now: float) -> _Failures:
        entry = table.setdefault(key, _Failures())
        while entry.times and entry.times[0] < now - WINDOW:
            entry.times.popleft()
        if len(table) > 10_000:  # bounded: forget the quietest entries, never the locked ones
            for stale in [k for k, v in table.items() if not v.times and v.locked_until <= now][:5000]:
                del table[stale]
        return entry

    def _fail(self, by_user: _Failures, by_address: _Failures, now: float) -> None:
        by_user.times.append(now)
        by_address.times.append(now)
        if len(by_user.times) >= USER_FAILURES:
            by_user.locked_until = now + LOCKOUT
            by_user.times.clear()

    def locked(self, name: str) -> bool:
        entry = self._users.get(name)
        return entry is not None and entry.locked_until > self.clock()

    def logout(self, session: Session) -> None:
        self.sessions.pop(session.id, None)

    def end_sessions(self, user: str) -> int:
        ended = [sid for sid, s in self.sessions.items() if s.user == user]
        for sid in ended:
            del self.sessions[sid]
        return len(ended)

    # --- each request -------------------------------------------------------------------------------

    def from_session(self, session_id: str, *, touch: bool = True) -> Identity | None:
        session = self.sessions.get(session_id)
        if session is None:
            return None
        now = self.clock()
        settings = self.contract().control
        if now - session.last_seen > settings.session_idle or now - session.created > settings.session_max:
            del self.sessions[session_id]
            return None
        user = self.store.get(session.user)
        if user is None or user.role != session.role or user.password_changed != session.password_changed:
            del self.sessions[session_id]
            return None
        person = self.contract().person(user.person)
        if person is None:
            del self.sessions[session_id]
            return None
        if touch:
            session.last_seen = now
        return Identity(user.name, user.person, user.role, GRANTS[user.role], session=session)

    def from_token(self, text: str) -> Identity | None:
        token = self.store.check_token(text)
        if token is None:
            return None
        user = self.store.get(token.user)
        if user is None or self.contract().person(user.person) is None:
            return None
        permissions = GRANTS[user.role] & frozenset(token.scopes)
        # A token never manages tokens: a leaked one cannot mint itself a successor.
        permissions -= {Permission.TOKENS}
        return Identity(user.name, user.person, user.role, permissions, token=token)

    def _expire_sessions(self, now: float) -> None:
        settings = self.contract().control
        for sid in [
            sid
            for sid, s in self.sessions.items()
            if now - s.last_seen > settings.session_idle or now - s.created > settings.session_max
        ]:
            del self.sessions[sid]


def csrf_ok(session: Session, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(session.csrf.encode(), given.encode("utf-8", "replace"))
