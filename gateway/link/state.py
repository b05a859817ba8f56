"""The session's connection state, with the transitions it may take.

    CONNECTING ──► HANDSHAKING ──► UP
        ▲   │           │           │
        │   ▼           ▼           ▼
        └── DOWN ◄──────┴───────────┘        (any state) ──► CLOSED (final)

DOWN means "between attempts": the port vanished, the handshake failed or heartbeats stopped;
the session waits out its backoff and goes back to CONNECTING. CLOSED is the owner's decision.
"""

from __future__ import annotations

import enum

from gateway.errors import InvalidStateTransition


class SessionState(enum.Enum):
    CONNECTING = "connecting"  # opening the transport
    HANDSHAKING = "handshaking"  # transport open, waiting for the device's identity
    UP = "up"  # handshake done, heartbeats answered: requests may flow
    DOWN = "down"  # lost or failed; a reconnect is scheduled
    CLOSED = "closed"  # closed by its owner, final


_ALLOWED: dict[SessionState, frozenset[SessionState]] = {
    SessionState.CONNECTING: frozenset(
        {SessionState.HANDSHAKING, SessionState.DOWN, SessionState.CLOSED}
    ),
    SessionState.HANDSHAKING: frozenset({SessionState.UP, SessionState.DOWN, SessionState.CLOSED}),
    SessionState.UP: frozenset({SessionState.DOWN, SessionState.CLOSED}),
    SessionState.DOWN: frozenset({SessionState.CONNECTING, SessionState.CLOSED}),
    SessionState.CLOSED: frozenset(),
}


def check_transition(old: SessionState, new: SessionState) -> None:
    """Raise `InvalidStateTransition` (a bug, never a device problem) for a forbidden change."""
    if new not in _ALLOWED[old]:
        raise InvalidStateTransition(f"link state {old.value} -> {new.value} is not allowed")
