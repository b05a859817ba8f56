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


class LinkState(enum.Enum):
    CONNECTING = "connecting"  # opening the transport
    HANDSHAKING = "handshaking"  # transport open, waiting for the device's identity
    UP = "up"  # handshake done, heartbeats answered: requests may flow
    DOWN = "down"  # lost or failed; a reconnect is scheduled
    CLOSED = "closed"  # closed by its owner, final


_ALLOWED: dict[LinkState, frozenset[LinkState]] = {
    LinkState.CONNECTING: frozenset({LinkState.HANDSHAKING, LinkState.DOWN, LinkState.CLOSED}),
    LinkState.HANDSHAKING: frozenset({LinkState.UP, LinkState.DOWN, LinkState.CLOSED}),
    LinkState.UP: frozenset({LinkState.DOWN, LinkState.CLOSED}),
    LinkState.DOWN: frozenset({LinkState.CONNECTING, LinkState.CLOSED}),
    LinkState.CLOSED: frozenset(),
}


def check_transition(old: LinkState, new: LinkState) -> None:
    """Raise `InvalidStateTransition` (a bug, never a device problem) for a forbidden change."""
    if new not in _ALLOWED[old]:
        raise InvalidStateTransition(f"link state {old.value} -> {new.value} is not allowed")
