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
    def _io_configure(
        self,
        *,
        period_ns: int,
        hello_retry_ns: int,
        max_age_ns: int,
        force_off_ns: int,
        goodbye_ns: int,
        engage_tol_mm: float,
        engage_max_speed_mm_s: float,
        engage_max_rpm: float,
        engage_max_hz: float,
    ) -> None: ...
    def _io_run(self, fd: int, is_socket: bool, nonce: int, tx_seq: int) -> int: ...
    def _io_stop(self, stop: bool = True) -> None: ...
    def io_outcome(self) -> dict[str, Any]: ...
    def io_counters(self) -> dict[str, Any]: ...
    def io_rx_live(self) -> dict[str, int]: ...
    def io_rtt_ns(self) -> list[int]: ...
    def io_gap_histograms(self) -> tuple[float, list[int], list[int]]: ...

def now_ns() -> int: ...
def exchange_once(
    hw: LinkHardware, setpoint: Mapping[str, Any] | None = None
) -> tuple[int, dict[str, Any]]: ...
