"""What the remote-control layer (MQTT, the web remote) may ask of the controller, and nothing
more.

`chair.controller.Controller` implements this protocol on top of sessions; the MQTT daemon
(`chair.mqtt`) only talks to it through these methods, so remote control can never reach past the
session's own checks.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, Protocol

from chair.lifecycle import SessionState

# Stable error codes of command replies (documented in docs/mqtt.md).
ERROR_CODES: dict[str, str] = {
    "bad_json": "payload is not valid JSON (UTF-8)",
    "not_object": "payload is not a JSON object",
    "too_large": "payload over 4 KiB",
    "missing_action": "no 'action' field",
    "unknown_action": "action is not one of the documented actions",
    "bad_field": "a field has the wrong type or an unknown field was given",
    "out_of_range": "a value is outside its allowed range",
    "unknown_program": "no such program",
    "invalid_program": "a delivered program file fails `chair validate`'s verification, or its "
    "name is a built-in's (docs/programs.md, Delivered programs)",
    "unknown_zone": "a zone name that is not one of the body's zones (docs/chair.md §2)",
    "not_allowed": "the action is not allowed in the current state",
    "not_manual": "manual settings or a move outside a manual session (docs/chair.md §8)",
    "unknown_user": "no user profile of that name (docs/chair.md §9)",
    "no_store": "the chair's database is off: no user profiles (docs/chair.md §9)",
    "busy": "another command is being executed",
    "rate_limited": "the web remote's page sent more commands per second than it may "
    "(docs/web.md, Limits)",
    "timeout": "the chair did not reach the command's outcome in time (it is reported; watch the "
    "state)",
    "internal": "the controller could not execute the command (reported, nothing changed)",
}


class CommandError(Exception):
    """A refused command: `code` is one of ERROR_CODES, `message` is for humans."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ControllerAPI(Protocol):
    """The controller as remote control sees it. All methods validate and raise CommandError."""

    def state(self) -> dict[str, Any]:
        """The state payload of docs/interfaces.md §3 (state, program, step, technique, zone,
        elapsed_s, remaining_s, intensity, zone_intensity, manual, heat{level,target_c,
        temp_c}, shoulder_mm, fault, session_id), the same keys in every state. In a session:
        the intensity and heat level it runs at, `target_c` that level's target; between
        sessions: what a `set` chose for the next session, None when nothing was (docs/mqtt.md,
        State)."""

    def telemetry(self) -> dict[str, Any] | None:
        """The latest telemetry sample (docs/interfaces.md §2 fields), None when nothing has run."""

    def programs(self) -> list[str]:
        """Names of the programs `start` accepts."""

    def on_change(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Call `callback(state)` whenever the state payload changes."""

    def on_event(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Call `callback({"event": name, ...})` for every `SessionEvent`."""

    async def start(
        self,
        program: str,
        minutes: float | None = None,
        intensity: int | None = None,
        heat: str | None = None,
        zone_intensity: dict[str, int] | None = None,
        manual: dict[str, Any] | None = None,
        user: str | None = None,
    ) -> None: ...

    async def pause(self) -> None: ...

    async def resume(self) -> None: ...

    async def stop(self) -> None:
        """Settle the running session (heater off, heads parked, carriage to park)."""

    async def estop(self) -> None: ...

    async def reset(self) -> None: ...

    async def set(
        self,
        intensity: int | None = None,
        heat: str | None = None,
        zone_intensity: dict[str, int] | None = None,
        manual: dict[str, Any] | None = None,
    ) -> None: ...

    async def move(self, mm: float) -> None:
        """Manual mode: move the area's centre (docs/chair.md §8)."""

    async def adjust_shoulder(self, mm: float) -> None: ...

    async def wait_session(self, timeout_s: float | None = None) -> None:
        """Wait until no session is open (its `session_finished` out); CommandError("timeout")."""

    async def wait_for_state(
        self,
        done: Callable[[SessionState], bool] | Collection[SessionState],
        *,
        timeout_s: float = ...,
        what: str = ...,
    ) -> SessionState:
        """Wait for a state (checked now and at every transition); CommandError("timeout")."""
