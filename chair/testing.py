"""Test hooks: a controller whose simulated clock the tests can hold still.

Nothing in the product uses this module. The state-matrix tests need to keep a transient state
(scanning, adjusting, settling) still while they send commands, and to latch a fault on demand;
`TestingController` adds exactly that to the real controller, on the simulated chair with a paced
clock (`HeldClockDriver`)::

    ctl = TestingController.create(ChairConfig(), speed=600)
    await ctl.advance_until("adjusting")   # run the clock, hold it the moment adjusting begins
    await ctl.adjust_shoulder(20)          # a command lets the held clock run `GRACE_S`
"""

from __future__ import annotations

from collections.abc import Callable

from chair.controller import Controller
from chair.driver import CoreDriver
from chair.lifecycle import SessionState

GRACE_S = 3.0
"""Simulated seconds a command may use while the clock is held."""


class HeldClockDriver(CoreDriver):
    """A paced driver whose clock can be held: while held, core time runs only within granted
    time; `hold_when` holds it at the first chunk boundary where the predicate is true."""

    held = False
    _grace_until_ns = 0
    hold_when: Callable[[], bool] | None = None

    def hold(self) -> None:
        """Stop simulated time where it is; `grant` lets it run a little (for commands)."""
        self.held = True
        self._grace_until_ns = self.core.now_ns

    def release(self) -> None:
        self.held = False
        self.re_anchor()  # no catching up on the held wall time
        self.interrupt()

    def grant(self, seconds: float) -> None:
        """With the clock held, allow `seconds` of simulated time from now."""
        self._grace_until_ns = max(self._grace_until_ns, self.core.now_ns + int(seconds * 1e9))
        self.interrupt()

    def _clock_limit_ns(self) -> int:
        if self.hold_when is not None and self.hold_when():
            self.hold_when = None
            self.hold()
        limit = super()._clock_limit_ns()
        return min(limit, self._grace_until_ns) if self.held else limit

    def _due_in_s(self, now_ns: int) -> float | None:
        if self.held and self._grace_until_ns <= now_ns:
            return None  # held and no time granted: only a grant or a release moves it
        return super()._due_in_s(now_ns)


class TestingController(Controller):
    """The real controller with a holdable clock and a fault on demand (tests only)."""

    __test__ = False  # not a pytest test class
    driver_class = HeldClockDriver

    @property
    def _clock(self) -> HeldClockDriver:
        assert isinstance(self.driver, HeldClockDriver)
        return self.driver

    def _kick(self) -> None:
        super()._kick()
        if self._clock.held:
            self._clock.grant(GRACE_S)

    def hold(self) -> None:
        """Freeze simulated time: the controller stays in its state; commands still apply."""
        self._clock.hold()

    def release(self) -> None:
        self._clock.release()

    async def advance_until(self, state: str, timeout: float = 30.0) -> None:
        """Let simulated time run until the controller is in `state`, then hold it there."""
        target = SessionState(state)
        self._clock.hold_when = lambda: self.state_name == target
        self._clock.release()
        try:
            await self.wait_for_state({target}, timeout_s=timeout, what=f"advance to {target}")
        finally:
            self._clock.hold_when = None
        self._clock.hold()

    async def inject_fault(self, code: str = "board") -> None:
        """Latch a fault from above (the core's controlled stop follows)."""
        self.core.raise_fault(code)
        self._kick()
        await self.wait_for_state({SessionState.FAULT}, what="inject a fault")
