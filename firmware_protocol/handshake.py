"""Session negotiation of one link end: HELLO, WELCOME, resume or fresh start, the probe timer.

Pure bookkeeping for ``Link``: what this side offers, what was agreed (version, the peer's frame
limit and window, features, session id), whether a HELLO or WELCOME resumes the session, and
when to repeat HELLO (device) or HELLO_REQUEST (gateway). The link decides what happens to its
sequence space and writes the frames (PROTOCOL.md "Handshake" and "Resync").
"""

from __future__ import annotations

from dataclasses import replace

from .constants import Role
from .link_config import LinkConfig
from .messages import Hello, HelloRequest, Message, Welcome


class Handshake:
    """What one link end knows of its session. Device: ``own_hello`` is its facts; gateway:
    ``session_id`` is fixed for the life of the link."""

    def __init__(
        self, role: Role, config: LinkConfig, hello: Hello | None, session_id: int | None
    ) -> None:
        self.role = role
        self.config = config
        if role is Role.DEVICE:
            if hello is None:
                raise ValueError("a device link needs its HELLO facts")
            self.own_hello: Hello | None = hello
            self.session_id = 0
        else:
            if session_id is None or not 0 < session_id <= 0xFFFFFFFF:
                raise ValueError("a gateway link needs a non-zero u32 session_id")
            self.own_hello = None
            self.session_id = session_id
        # What the current session agreed (the preferred version before the first one).
        self.version = config.versions[0]
        self.features = 0
        self.peer_max_frame: int | None = None
        self.peer_window = 1
        self.peer_hello: Hello | None = None  # gateway: the HELLO accepted last
        self.welcome: Welcome | None = None  # both: the WELCOME of the current session
        self.last_session = 0  # device: session id of the last WELCOME accepted this boot
        self.peer_boot_id = 0  # gateway: boot id of the device of the current session
        self.attempt = 0  # device: handshake attempt number, echoed in WELCOME
        # The probe (HELLO or HELLO_REQUEST) timer.
        self.next_probe: float | None = None
        self._probe_interval = config.hello_interval
        self.last_hello_request = -1e300

    # --- probing --------------------------------------------------------------------------------

    def begin(self) -> None:
        """A new handshake attempt: probe at the initial interval again."""
        self.attempt = (self.attempt + 1) & 0xFFFFFFFF
        self._probe_interval = self.config.hello_interval

    def probe(self, now: float, *, reschedule: bool = True) -> Message:
        """The HELLO (device) or HELLO_REQUEST (gateway) to send now; with ``reschedule``, the
        next one is due after an interval that doubles up to the heartbeat period, so an absent
        peer costs little."""
        message: Message
        if self.role is Role.DEVICE:
            message = self.hello_to_send()
        else:
            message = HelloRequest()
            self.last_hello_request = now
        if reschedule:
            self.next_probe = now + self._probe_interval
            self._probe_interval = min(self._probe_interval * 2, self.config.heartbeat_interval)
        return message

    def settled(self) -> None:
        """Up or refused: no more probes."""
        self.next_probe = None

    def hello_to_send(self) -> Hello:
        """Device: its facts, completed with this side's limits and session state."""
        assert self.own_hello is not None
        return replace(
            self.own_hello,
            versions=self.config.versions,
            max_frame=self.config.max_frame,
            window=self.config.window,
            last_session=self.last_session,
            attempt=self.attempt,
            features=self.config.features,
        )

    # --- gateway --------------------------------------------------------------------------------

    def repeats_session(self, hello: Hello) -> bool:
        """A repeat of the HELLO that opened this session (our WELCOME was lost or crossed
        it): the WELCOME is repeated and all sequence state kept."""
        return hello == self.peer_hello and self.welcome is not None

    def is_stale(self, hello: Hello) -> bool:
        """An older handshake attempt of this boot, delayed in the transport: answering it
        could reset one side only."""
        last = self.peer_hello
        return last is not None and hello.boot_id == last.boot_id and hello.attempt < last.attempt

    def common_version(self, hello: Hello) -> int | None:
        """The newest version both sides speak, None if there is none."""
        common = set(hello.versions) & set(self.config.versions)
        return max(common) if common else None

    def resumes(self, hello: Hello, version: int) -> bool:
        """The device of the current session, still in it, at the same version."""
        return (
            self.peer_boot_id == hello.boot_id
            and hello.last_session == self.session_id
            and self.version == version
        )

    def accept_hello(self, hello: Hello, version: int, resume: bool) -> Welcome:
        """Open (or resume) the session ``hello`` asks for; returns the WELCOME to send."""
        self.version = version
        self.peer_boot_id = hello.boot_id
        self.peer_hello = hello
        self.peer_max_frame = hello.max_frame
        self.peer_window = hello.window
        self.welcome = Welcome(
            version=version,
            session_id=self.session_id,
            max_frame=self.config.max_frame,
            window=self.config.window,
            resume=resume,
            heartbeat_ms=round(self.config.heartbeat_interval * 1000),
            link_lost_ms=round(self.config.link_lost_timeout * 1000),
            attempt=hello.attempt,
            features=hello.features & self.config.features,
        )
        self.features = self.welcome.features
        return self.welcome

    # --- device ---------------------------------------------------------------------------------

    def answers_this_attempt(self, welcome: Welcome) -> bool:
        """False for a WELCOME to an earlier HELLO of ours, delayed or duplicated."""
        return welcome.attempt == self.attempt

    def welcome_resumes(self, welcome: Welcome) -> bool:
        """The gateway resumes the session this device was in."""
        return welcome.resume and welcome.session_id == self.last_session

    def accept_welcome(self, welcome: Welcome) -> None:
        """Enter the session ``welcome`` opens (or resumes)."""
        self.version = welcome.version
        self.session_id = self.last_session = welcome.session_id
        self.peer_max_frame = welcome.max_frame
        self.peer_window = welcome.window
        self.features = welcome.features & self.config.features
        self.welcome = welcome
