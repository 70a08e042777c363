"""The words of a session's life (docs/chair.md §4): its states and its events, defined once.

Everything that names a session state or event — the session, the controller, MQTT, the CLI, the
tests — imports it from here. Both enums are `StrEnum`s, so a member *is* its JSON string::

    idle → scanning → adjusting → running ⇄ paused → settling → idle
    any state → fault | estop   (latched in the core until reset)
"""

from __future__ import annotations

from enum import StrEnum


class SessionState(StrEnum):
    """The chair's state as users see it (the ``state`` field of state and telemetry)."""

    IDLE = "idle"
    SCANNING = "scanning"
    ADJUSTING = "adjusting"
    RUNNING = "running"
    PAUSED = "paused"
    SETTLING = "settling"
    FAULT = "fault"
    ESTOP = "estop"

    @property
    def latched(self) -> bool:
        """A fault or an e-stop: nothing moves until a reset."""
        return self in LATCHED

    @property
    def in_session(self) -> bool:
        """A session is under way and can be stopped (scanning … paused)."""
        return self in IN_SESSION


IN_SESSION = frozenset(
    {SessionState.SCANNING, SessionState.ADJUSTING, SessionState.RUNNING, SessionState.PAUSED}
)
"""States of a session that a stop settles."""
MOVING = IN_SESSION | {SessionState.SETTLING}
"""States in which the chair moves for a session (telemetry flows at its full rate)."""
LATCHED = frozenset({SessionState.FAULT, SessionState.ESTOP})
"""Latched states: left only by a reset."""


class SessionEvent(StrEnum):
    """What happened (the ``event`` field of ``<base>/event``, docs/mqtt.md)."""

    SESSION_STARTED = "session_started"
    SHOULDER_DETECTED = "shoulder_detected"
    STEP_STARTED = "step_started"
    SESSION_FINISHED = "session_finished"
    FAULT = "fault"
    ESTOP = "estop"
    RESET = "reset"
