"""Every number a board maker builds to, taken from the chair config (and the protocol).

`board_numbers(config)` lists them as rows (what, value, where it comes from, what the board does
with it); `numbers_markdown(config)` renders the table of docs/board-protocol.md ("Numbers to
build to"), and a test checks that the document's table is this one for the reference chair.
Regenerate it after a change to the config's defaults::

    python -m core_rt.board.numbers

A chair with its own config (``chair --config chair.toml``) has its own numbers:
``numbers_markdown(load_config("chair.toml"))``.
"""

from __future__ import annotations

from dataclasses import dataclass

from core_rt.board.mailbox import DEFAULT_STALE_NS
from core_rt.board.protocol import (
    HELLO_RETRY_MS,
    SETPOINT_PERIOD_MAX_US,
    SETPOINT_PERIOD_MIN_US,
    STATUS_PERIOD_MAX_US,
    WATCHDOG_MAX_MS,
)
from core_rt.config import ChairConfig

CONTROLLER_SETPOINT_PERIOD_US = 2000
"""What the controller's link driver sends (HELLO's SETPOINT period field): 500 Hz."""
CONTROLLER_STALE_MS = DEFAULT_STALE_NS / 1e6
"""The controller's stale time: no confirmed round trip for this long and the tick's status is
stale (then `faults.link_lost_ms` more and the core latches ``link_lost``)."""


@dataclass(frozen=True, slots=True)
class Row:
    """One number of the table: what it is, its value with the unit, where it comes from (a
    `ChairConfig` key, or ``protocol`` / ``controller``), and what the board does with it."""

    what: str
    value: str
    source: str
    board: str


def _n(x: float) -> str:
    return f"{x:g}".replace("-", "−")


def board_numbers(config: ChairConfig) -> list[Row]:
    """The numbers a board needs for `config`, in the order of the document's table."""
    c, w, d = config.carriage, config.width, config.depth
    kn, tp, h, f, b = config.kneading, config.tapping, config.heater, config.faults, config.body
    oc = f.overcurrent_a
    te = f.tracking_error_max_mm
    scan_depth = d.level_mm(b.scan_depth_level)
    smallest = config.zones_for_shoulder(config.shoulder_for_height_mm(b.height_min_cm))
    scan_start = smallest[b.scan_start_zone][0]
    k = config.contour
    scan_from, scan_to = config.contour_scan_span_mm()
    rows = [
        # ---- the carriage and its track
        Row(
            "carriage track (encoder 0 = bottom end under the seat, + upward)",
            f"{_n(c.track_min_mm)} … {_n(c.track_max_mm)} mm",
            "`carriage.track_min_mm`, `carriage.track_max_mm`",
            "reports the carriage encoder in this frame, absolute, from its first STATUS",
        ),
        Row(
            "lower limit switch",
            f"closed at the bottom end stop, y = {_n(c.track_min_mm)} mm",
            "`carriage.track_min_mm`",
            "switches bit 0: closed while the carriage is at that stop, open elsewhere",
        ),
        Row(
            "upper limit switch",
            f"closed at the top end stop, y = {_n(c.track_max_mm)} mm",
            "`carriage.track_max_mm`",
            "switches bit 1: closed while the carriage is at that stop, open elsewhere",
        ),
        Row(
            "over-travel",
            f"{_n(f.overtravel_mm)} mm",
            "`faults.overtravel_mm`",
            "each switch closes before the encoder reads this far past its end; the controller "
            "faults on an encoder past an end by more, or on both switches closed",
        ),
        Row(
            "seat crease",
            f"y = {_n(c.seat_mm)} mm",
            "`carriage.seat_mm`",
            "the seat's fold on the track; the controller reads the arm contact only above it",
        ),
        Row(
            "carriage speed, acceleration, jerk",
            f"{_n(c.limits.v_max)} mm/s, {_n(c.limits.a_max)} mm/s², {_n(c.limits.j_max)} mm/s³",
            "`carriage.limits.v_max`, `.a_max`, `.j_max`",
            "the drive follows SETPOINTs up to these",
        ),
        Row(
            "carriage emergency braking",
            f"{_n(c.limits.estop_a_max)} mm/s², {_n(c.limits.estop_j_max)} mm/s³",
            "`carriage.limits.estop_a_max`, `.estop_j_max`",
            "the drive can brake this hard when the controller commands an e-stop",
        ),
        # ---- width and depth
        Row(
            "width (roller heads, centre to centre)",
            f"{_n(w.min_mm)} … {_n(w.max_mm)} mm",
            "`width.min_mm`, `width.max_mm`",
            "width encoder, absolute",
        ),
        Row(
            "width speed, acceleration; emergency",
            f"{_n(w.limits.v_max)} mm/s, {_n(w.limits.a_max)} mm/s²; "
            f"{_n(w.limits.estop_a_max)} mm/s²",
            "`width.limits.v_max`, `.a_max`, `.estop_a_max`",
            "the drive follows SETPOINTs up to these",
        ),
        Row(
            "depth (how far the heads protrude, 0 = retracted)",
            f"{_n(d.min_mm)} … {_n(d.max_mm)} mm; levels "
            + "/".join(_n(x) for x in d.levels_mm)
            + " mm",
            "`depth.min_mm`, `depth.max_mm`, `depth.levels_mm`",
            "depth encoder, absolute",
        ),
        Row(
            "depth speed, acceleration; emergency",
            f"{_n(d.limits.v_max)} mm/s, {_n(d.limits.a_max)} mm/s²; "
            f"{_n(d.limits.estop_a_max)} mm/s²",
            "`depth.limits.v_max`, `.a_max`, `.estop_a_max`",
            "the drive follows SETPOINTs up to these",
        ),
        Row(
            "park pose (carriage, width, depth)",
            f"{_n(c.park_mm)}, {_n(w.park_mm)}, {_n(d.min_mm)} mm",
            "`carriage.park_mm`, `width.park_mm`, `depth.min_mm`",
            "where the controller leaves the chair after a session; a board need not go there",
        ),
        Row(
            "tracking error, at most (carriage, width, depth)",
            f"{_n(te[0])}, {_n(te[1])}, {_n(te[2])} mm",
            "`faults.tracking_error_max_mm`",
            "encoder this far from the setpoint is a fault: the position loop keeps closer",
        ),
        Row(
            "stall",
            f"encoder follows < ¼ of ≥ {_n(f.stall_min_mm)} mm of setpoint travel "
            f"over {_n(f.stall_ms)} ms",
            "`faults.stall_min_mm`, `faults.stall_ms`",
            "report encoders as they read (never the setpoint): the controller finds stalls",
        ),
        # ---- the rate motors
        Row(
            "kneading rate",
            f"−{_n(kn.max_rpm)} … +{_n(kn.max_rpm)} rpm (+ clockwise); "
            f"{_n(kn.limits.a_max)} rpm/s, emergency {_n(kn.limits.estop_a_max)} rpm/s",
            "`kneading.max_rpm`, `kneading.limits.a_max`, `.estop_a_max`",
            "runs the kneading motor at the commanded rate; reports the measured rate",
        ),
        Row(
            "tapping rate",
            f"0 … {_n(tp.max_hz)} Hz; {_n(tp.limits.a_max)} Hz/s, "
            f"emergency {_n(tp.limits.estop_a_max)} Hz/s",
            "`tapping.max_hz`, `tapping.limits.a_max`, `.estop_a_max`",
            "runs the tapping motor at the commanded rate; reports the measured rate",
        ),
        # ---- the body scan
        Row(
            "body scan: heads forward, walking up",
            f"depth {_n(scan_depth)} mm (level {b.scan_depth_level}), "
            f"{_n(b.scan_speed_mm_s)} mm/s, from y ≈ {scan_start:.0f} mm "
            f"up to {_n(b.shoulder_max_mm)} mm",
            "`body.scan_depth_level`, `body.scan_speed_mm_s`, `body.scan_start_zone`, "
            "`body.shoulder_max_mm`",
            "arm contact (switches bit 2) closed while the heads press a seated back, open "
            "above the shoulders",
        ),
        Row(
            "body scan: the shoulder line",
            f"first contact loss above y = {_n(c.seat_mm + b.shoulder_min_above_seat_mm)} mm, "
            f"+ {_n(b.shoulder_offset_mm)} mm",
            "`carriage.seat_mm` + `body.shoulder_min_above_seat_mm`, `body.shoulder_offset_mm`",
            "report the contact raw in every STATUS (no latching, debounce ≤ 5 ms)",
        ),
        # ---- the contour scan (a board that measures the depth load)
        Row(
            "contour scan (HELLO_ACK DEPTH_LOAD set): following the skin",
            f"from y ≈ {scan_from:.0f} mm up to {scan_to:.0f} mm at {_n(k.speed_mm_s)} mm/s, "
            f"width {_n(w.medium_mm)} mm; the depth holds a load of "
            + " / ".join(f"{_n(round(p * k.load_a_per_mm * 1000))} mA" for p in k.touch_press_mm)
            + f" (a {_n(k.touch_press_mm[0])} / {_n(k.touch_press_mm[1])} mm touch of the "
            f"reference tissue), a sample every {_n(k.sample_mm)} mm",
            "`contour.speed_mm_s`, `contour.touch_press_mm`, `contour.load_a_per_mm`, "
            "`contour.sample_mm`",
            "the depth drive's load (STATUS offset 46) in every STATUS: what pressing adds, "
            f"≈ {_n(round(k.load_a_per_mm * 1000))} mA per mm into the reference tissue",
        ),
        Row(
            "contour scan: in contact",
            f"load ≥ {_n(round(k.contact_min_press_mm * k.load_a_per_mm * 1000))} mA; below "
            f"the shoulder line off the skin for more than {_n(k.gap_max_mm)} mm of track, or "
            f"the skin moving more than {_n(k.jump_max_mm)} mm between samples, fails the scan",
            "`contour.contact_min_press_mm`, `contour.gap_max_mm`, `contour.jump_max_mm`",
            "the load raw (filtered ≤ 5 ms), resolution ≤ 10 mA",
        ),
        Row(
            "contour scan: the shoulder line",
            f"where the neck begins: the first {_n(k.neck_min_mm)} mm of tissue softer than "
            f"{_n(k.neck_stiffness)} × the reference above y = "
            f"{_n(c.seat_mm + b.shoulder_min_above_seat_mm)} mm; once it is seen the "
            f"carriage walks on {_n(k.neck_confirm_mm)} mm more (never past the neck's top) "
            "before it brakes",
            "`contour.neck_stiffness`, `contour.neck_min_mm`, `contour.neck_confirm_mm`",
            "nothing of its own: the neck is the user's (a test body needs one, "
            "[The depth load and the contour scan](#the-depth-load-and-the-contour-scan))",
        ),
        Row(
            "seat occupancy",
            f"empty for {_n(f.occupant_ms)} ms ends the session",
            "`faults.occupant_ms`",
            "switches bit 3, raw (the controller debounces)",
        ),
        # ---- currents, supply, the pad
        Row(
            "motor current limits (carriage, width, depth, kneading, tapping)",
            ", ".join(_n(x) for x in oc) + f" A for {_n(f.overcurrent_ms)} ms",
            "`faults.overcurrent_a`, `faults.overcurrent_ms`",
            "measures each current beyond its limit (field up to 65.534 A); a hardware trip "
            "of its own sits above the limit and sets OVERCURRENT",
        ),
        Row(
            "supply voltage",
            f"{_n(f.supply_min_v)} … {_n(f.supply_max_v)} V for {_n(f.supply_ms)} ms",
            "`faults.supply_min_v`, `faults.supply_max_v`, `faults.supply_ms`",
            "measures the motor supply beyond both ends (field up to 65.534 V)",
        ),
        Row(
            "pad thermistor, valid range",
            f"{_n(h.thermistor_min_c)} … {_n(h.thermistor_max_c)} °C for {_n(f.thermistor_ms)} ms",
            "`heater.thermistor_min_c`, `heater.thermistor_max_c`, `faults.thermistor_ms`",
            "an open or shorted thermistor reads outside this range (or the sentinel)",
        ),
        Row(
            "pad over-temperature",
            f"{_n(h.trip_c)} °C (targets up to {_n(h.max_target_c)} °C)",
            "`heater.trip_c`, `heater.max_target_c`",
            "the controller trips here; the board's own thermal cut-off sits above it and "
            "sets OVERTEMP",
        ),
        # ---- the link
        Row(
            "SETPOINT period",
            f"{CONTROLLER_SETPOINT_PERIOD_US} µs (the controller); the board accepts "
            f"{SETPOINT_PERIOD_MIN_US} … {SETPOINT_PERIOD_MAX_US} µs",
            "protocol; HELLO field",
            "applies each SETPOINT as it arrives",
        ),
        Row(
            "STATUS period",
            f"at most {STATUS_PERIOD_MAX_US} µs; {config.loop.period_ns // 1000} µs is best "
            f"(the core ticks at {config.loop.tick_hz} Hz)",
            "protocol; `loop.tick_hz`",
            "sends a STATUS at least this often, always",
        ),
        Row(
            "HELLO repeat",
            f"every {HELLO_RETRY_MS} ms until answered",
            "protocol",
            "answers each HELLO within it",
        ),
        Row(
            "the board's watchdog",
            f"trips within {WATCHDOG_MAX_MS} ms of the last valid SETPOINT",
            "protocol; docs/chair.md §6",
            "outputs off, WATCHDOG bit; HELLO_ACK says the value (1 … 100)",
        ),
        Row(
            "stale status (the controller)",
            f"no confirmed round trip for {_n(CONTROLLER_STALE_MS)} ms",
            "controller",
            "keep round trips short: echo each SETPOINT in the next STATUS",
        ),
        Row(
            "link lost (the controller)",
            f"stale + {_n(f.link_lost_ms)} ms = "
            f"{_n(CONTROLLER_STALE_MS + f.link_lost_ms)} ms, inside "
            f"{_n(config.link.deadline_ms)} ms",
            "`faults.link_lost_ms`, `link.deadline_ms`",
            "then enable 0 on the next SETPOINT, or silence",
        ),
        Row(
            "goodbye (the controller)",
            f"enable-0 SETPOINTs until one is echoed, at most {_n(config.link.goodbye_ms)} ms",
            "`link.goodbye_ms`",
            "ON → READY, no trip",
        ),
    ]
    return rows


def numbers_markdown(config: ChairConfig) -> str:
    """The table of docs/board-protocol.md, "Numbers to build to"."""
    out = ["| number | value | from | the board |", "| --- | --- | --- | --- |"]
    for r in board_numbers(config):
        out.append(f"| {r.what} | {r.value} | {r.source} | {r.board} |")
    return "\n".join(out)


if __name__ == "__main__":  # pragma: no cover - `python -m core_rt.board.numbers` regenerates
    print(numbers_markdown(ChairConfig()))
