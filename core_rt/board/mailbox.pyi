# Type stub of the compiled board-link seam (core_rt/board/mailbox.pyx).
from collections.abc import Mapping, Sequence
from typing import Any

from core_rt.hardware import Hardware

SETPOINT_FIELDS: tuple[str, ...]
STATUS_FIELDS: tuple[str, ...]
DEFAULT_STALE_NS: int

SetpointTuple = tuple[
    int,
    int,
    int,
    tuple[float, float, float],
    tuple[float, float, float],
    float,
    float,
    float,
    bool,
]

class LinkHardware(Hardware):
    @property
    def stale_ns(self) -> int: ...
    def __init__(self, *, stale_ns: int = ...) -> None: ...
    def take_setpoint(self) -> SetpointTuple | None: ...
    def put_status(
        self, status: Mapping[str, Any] | Sequence[Any], confirmed_ns: int, received_ns: int = 0
    ) -> None: ...
    def link_counters(self) -> dict[str, int]: ...

def now_ns() -> int: ...
def exchange_once(
    hw: LinkHardware, setpoint: Mapping[str, Any] | None = None
) -> tuple[int, dict[str, Any]]: ...
