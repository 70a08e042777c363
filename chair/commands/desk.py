"""`CommandDesk`: the one place where a remote's command becomes a controller call and a reply
(docs/mqtt.md, "Commands and replies"; docs/web.md).

Every remote (the MQTT bridge, the web remote's WebSocket) hands the raw payload to the desk and
sends back what it answers. So both speak exactly the same commands, with the same checks
(`parse_command`), the same refusals, one idempotency window per chair (an ``id`` seen from
either side within 10 minutes is not executed twice) and one "busy" rule: one command at a time
reaches the controller, except ``estop``, which is never refused as busy.

The desk also fans the controller's state changes and events out to the remotes, on the event
loop's thread (the controller may call back from any thread), and adds ``preset`` to the state.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chair.api import CommandError, ControllerAPI
from chair.commands.parse import BadCommand, Command, parse_command
from chair.requests import short_repr
from core_rt.config import ChairConfig

log = logging.getLogger("chair.commands")

IDEMPOTENCY_S = 600.0
"""A command id seen within this window is answered from memory, not executed again."""
IDEMPOTENCY_MAX_IDS = 10_000
"""Memory bound of the id window (oldest forgotten first)."""

NOT_EXCLUSIVE = frozenset({"estop", "preset", "users", "status"})
"""Actions that never wait for another command: an e-stop is never refused as busy, a preset only
touches the desk, ``users`` and ``status`` only read."""

Reply = dict[str, Any]
StateListener = Callable[[dict[str, Any]], None]
EventListener = Callable[[dict[str, Any]], None]


@dataclass
class _Seen:
    """A command id within the idempotency window: the future of its reply."""

    t: float
    reply: asyncio.Future[Reply]


class CommandDesk:
    """Commands from every remote, executed one at a time on one controller.

    Call `attach()` once on the event loop before the first `submit()`; listeners added with
    `watch()` get the state payload (with ``preset``) on every change and every event.
    """

    def __init__(self, controller: ControllerAPI, config: ChairConfig | None = None) -> None:
        self.controller = controller
        self.config = config if config is not None else ChairConfig()
        self.preset: dict[str, Any] = {"program": None, "minutes": None, "user": None}
        """What a ``start`` without a program, minutes or user takes (Home Assistant's selectors
        and start button set it with ``preset``)."""
        self._seen: collections.OrderedDict[str, _Seen] = collections.OrderedDict()
        self._busy = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._state_listeners: list[StateListener] = []
        self._event_listeners: list[EventListener] = []
        self._program_listeners: list[Callable[[list[str]], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._latest_state: dict[str, Any] | None = None

    # ---- life cycle and listeners --------------------------------------------------------------

    def attach(self) -> None:
        """Bind to the running loop and to the controller's callbacks (once; again is a no-op)."""
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        programs = self.programs()
        # Until told otherwise, a start without a program starts the first one, for the
        # program's own default length.
        self.preset = {"program": programs[0] if programs else None, "minutes": None, "user": None}
        self.controller.on_change(self._on_change)
        self.controller.on_event(self._on_event)

    def watch(
        self,
        on_state: StateListener | None = None,
        on_event: EventListener | None = None,
        on_programs: Callable[[list[str]], None] | None = None,
    ) -> Callable[[], None]:
        """Call `on_state(state payload)` on every change, `on_event(event)` on every event and
        `on_programs(names)` when a program was delivered or removed, on the loop's thread;
        returns the function that stops it."""
        pairs: list[tuple[list[Any], Any]] = [
            (self._state_listeners, on_state),
            (self._event_listeners, on_event),
            (self._program_listeners, on_programs),
        ]
        for listeners, listener in pairs:
            if listener is not None:
                listeners.append(listener)

        def unwatch() -> None:
            for listeners, listener in pairs:
                with contextlib.suppress(ValueError):
                    if listener is not None:
                        listeners.remove(listener)

        return unwatch

    def state_payload(self, state: dict[str, Any] | None = None) -> dict[str, Any]:
        """The controller's state (now, or `state`) with the desk's ``preset``."""
        if state is None:
            try:
                state = self.controller.state()
            except Exception:
                log.exception("controller.state() failed")
                state = self._latest_state or {"state": None}
        return {**state, "preset": dict(self.preset)}

    def programs(self) -> list[str]:
        try:
            return list(self.controller.programs())
        except Exception:
            log.exception("controller.programs() failed")
            return []

    # ---- commands ------------------------------------------------------------------------------

    def submit(self, payload: bytes) -> asyncio.Future[Reply]:
        """Take one command payload; the future of its reply.

        Refusals before the controller (a bad payload, ``busy``, an id seen before) and
        ``status`` come back as a future already done, so a flood of bad commands costs no
        task. The same ``id`` while its first execution runs gets that execution's future."""
        loop = self._loop or asyncio.get_running_loop()
        try:
            cmd = parse_command(payload, self.config)
        except BadCommand as e:
            log.debug("refused command (%s): %s", e.code, e.message)  # a flood must not flood logs
            return _done(loop, self.reply(e.id, e.action, e))
        if cmd.action == "status":
            return _done(loop, self.reply(cmd.id, cmd.action))
        if cmd.id is not None:
            self._forget_old()
            seen = self._seen.get(cmd.id)
            if seen is not None:
                log.info("command id %r seen before: not executed again", cmd.id)
                return seen.reply
        exclusive = cmd.action not in NOT_EXCLUSIVE
        if exclusive and self._busy:
            error = CommandError("busy", "another command is being executed; try again")
            return _done(loop, self.reply(cmd.id, cmd.action, error))
        future: asyncio.Future[Reply] = loop.create_future()
        if cmd.id is not None:
            self._seen[cmd.id] = _Seen(time.monotonic(), future)
        if exclusive:
            self._busy = True
        task = loop.create_task(self._execute(cmd, exclusive, future), name=f"cmd-{cmd.action}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return future

    def reply(
        self, cmd_id: str | None, action: str | None, error: CommandError | None = None
    ) -> Reply:
        """A reply as every remote sends it: ``id``, ``action``, ``ok``, ``state``, ``error``."""
        return {
            "id": cmd_id,
            "action": action,
            "ok": error is None,
            "state": self.state_payload(),
            "error": None if error is None else {"code": error.code, "message": error.message},
        }

    async def _execute(self, cmd: Command, exclusive: bool, future: asyncio.Future[Reply]) -> None:
        error: CommandError | None = None
        extra: dict[str, Any] = {}
        try:
            extra = await self._dispatch(cmd) or {}
        except CommandError as e:
            error = e
        except Exception as e:
            log.exception("controller failed on %s", cmd.action)
            error = CommandError("internal", f"{cmd.action} failed: {type(e).__name__}: {e}")
        finally:
            if exclusive:
                self._busy = False
        if error is None:
            log.info("command %s done (id %s)", cmd.action, cmd.id)
        else:
            log.info("command %s refused (%s): %s", cmd.action, error.code, error.message)
        if not future.done():
            future.set_result({**self.reply(cmd.id, cmd.action, error), **extra})

    async def _dispatch(self, cmd: Command) -> dict[str, Any] | None:
        """Execute `cmd`; what its reply carries besides the usual fields (``users``)."""
        ctl, a = self.controller, cmd.args
        match cmd.action:
            case "start":
                program = a.get("program") or self.preset.get("program")
                if not program:
                    raise CommandError("bad_field", "start needs a program (none preset)")
                self._check_program(program)
                await ctl.start(
                    program,
                    minutes=a.get("minutes", self.preset.get("minutes")),
                    intensity=a.get("intensity"),
                    heat=a.get("heat"),
                    zone_intensity=a.get("zone_intensity"),
                    manual=a.get("manual"),
                    **self._user_of(a),
                )
            case "pause":
                await ctl.pause()
            case "resume":
                await ctl.resume()
            case "stop":
                await ctl.stop()
            case "estop":
                await ctl.estop()
            case "reset":
                await ctl.reset()
            case "set":
                await ctl.set(
                    intensity=a.get("intensity"),
                    heat=a.get("heat"),
                    zone_intensity=a.get("zone_intensity"),
                    manual=a.get("manual"),
                )
            case "move":
                await ctl.move(a["mm"])
            case "adjust_shoulder":
                await ctl.adjust_shoulder(a["mm"])
            case "preset":
                if "program" in a:
                    self._check_program(a["program"])
                self.preset.update(a)
                if a.get("user") == "":
                    self.preset["user"] = None
                self._state_changed(ctl.state())
            case "install_program" | "remove_program":
                deliver = getattr(ctl, cmd.action, None)
                if deliver is None:
                    raise CommandError("no_store", "this chair keeps no delivered programs")
                arg = a["toml"] if cmd.action == "install_program" else a["program"]
                done = await deliver(arg)
                names = self.programs()
                for listener in list(self._program_listeners):
                    try:
                        listener(names)
                    except Exception:
                        log.exception("program listener %r", listener)
                return {"program": done}
            case "users":
                users = getattr(ctl, "users", None)
                if users is None:
                    raise CommandError("no_store", "this chair keeps no user profiles")
                return {"users": await users()}
            case _:  # parse_command admits only ACTIONS
                raise CommandError("unknown_action", f"unknown action {cmd.action!r}")
        return None

    def _user_of(self, args: dict[str, Any]) -> dict[str, Any]:
        """The start's user (else the preset one) as a keyword, none when there is none (a
        controller without user profiles is not asked about them)."""
        user = args.get("user") or self.preset.get("user")
        return {} if not user else {"user": user}

    def _check_program(self, program: str) -> None:
        programs = self.programs()
        if program not in programs:
            raise CommandError(
                "unknown_program",
                f"no program {short_repr(program)}; one of {', '.join(programs)}",
            )

    def _forget_old(self) -> None:
        horizon = time.monotonic() - IDEMPOTENCY_S
        while self._seen:
            oldest = next(iter(self._seen.values()))
            if oldest.t >= horizon and len(self._seen) < IDEMPOTENCY_MAX_IDS:
                break
            if not oldest.reply.done() and oldest.t >= horizon:
                break  # still executing: keep it
            self._seen.popitem(last=False)

    # ---- controller callbacks (may come from any thread; never block) --------------------------

    def _post(self, fn: Callable[[dict[str, Any]], None], arg: dict[str, Any]) -> None:
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            fn(arg)
        else:
            with contextlib.suppress(RuntimeError):  # loop closed: nobody to tell
                loop.call_soon_threadsafe(fn, copy.deepcopy(arg))

    def _on_change(self, state: dict[str, Any]) -> None:
        try:
            self._post(self._state_changed, state)
        except Exception:
            log.exception("on_change")

    def _on_event(self, event: dict[str, Any]) -> None:
        try:
            self._post(self._event, event)
        except Exception:
            log.exception("on_event")

    def _state_changed(self, state: dict[str, Any]) -> None:
        self._latest_state = state
        payload = self.state_payload(state)
        for listener in list(self._state_listeners):
            try:
                listener(payload)
            except Exception:  # one remote's bug must not starve the others
                log.exception("state listener %r", listener)

    def _event(self, event: dict[str, Any]) -> None:
        for listener in list(self._event_listeners):
            try:
                listener(event)
            except Exception:
                log.exception("event listener %r", listener)


def _done(loop: asyncio.AbstractEventLoop, reply: Reply) -> asyncio.Future[Reply]:
    future: asyncio.Future[Reply] = loop.create_future()
    future.set_result(reply)
    return future
