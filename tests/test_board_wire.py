"""The controller's C wire (core_rt/include/board_wire.h) held to the Python reference.

Two implementations of docs/board-protocol.md live in the project: `core_rt.board.protocol`
(pure Python, the reference a board maker's test bench can use) and board_wire.h (what the link's
C loop speaks). They must agree byte for byte on what they send and counter for counter on what
they drop, for any input.
"""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from core_rt.board.mailbox import (
    wire_crc16,
    wire_decode,
    wire_hello_frame,
    wire_setpoint_frame,
    wire_status,
)
from core_rt.board.protocol import (
    BOARD_TO_CONTROLLER,
    CONTROLLER_TO_BOARD,
    FrameDecoder,
    Hello,
    HelloAck,
    Setpoint,
    Status,
    crc16,
    encode,
)

values = st.one_of(
    st.floats(-3e6, 3e6, allow_nan=False),
    st.sampled_from([0.0, -0.0, 0.0005, -0.0005, 0.0015, 1e12, -1e12, math.inf, -math.inf]),
    st.just(math.nan),
)
duties = st.one_of(st.floats(-0.5, 1.5, allow_nan=False), st.just(math.nan))


@given(st.binary(max_size=200))
def test_crc_agrees(data: bytes) -> None:
    assert wire_crc16(data) == crc16(data)


@settings(max_examples=300)
@given(
    tx=st.integers(0, 0xFFFF),
    seq=st.integers(0, 0xFFFFFFFF),
    pos=st.tuples(values, values, values),
    vel=st.tuples(values, values, values),
    knead=values,
    tap=values,
    duty=duties,
    enable=st.booleans(),
    flags=st.integers(0, 255),
)
def test_setpoint_frames_are_byte_for_byte_the_references(
    tx: int,
    seq: int,
    pos: tuple[float, float, float],
    vel: tuple[float, float, float],
    knead: float,
    tap: float,
    duty: float,
    enable: bool,
    flags: int,
) -> None:
    """Saturation, rounding (half to even), sentinels for NaN, duty 0..65534: all the same."""
    sp = {
        "seq": seq,
        "pos_mm": pos,
        "vel_mm_s": vel,
        "knead_rpm": knead,
        "tap_hz": tap,
        "heater_duty": duty,
        "enable": enable,
        "flags": flags,
    }
    ref = encode(Setpoint(**sp), tx)  # type: ignore[arg-type]
    assert wire_setpoint_frame(tx, sp) == ref


@given(
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.integers(0, 2**32 - 1),
)
def test_hello_frames_agree(tx: int, version: int, period: int, nonce: int) -> None:
    ref = encode(Hello(version=version, setpoint_period_us=period, nonce=nonce), tx)
    assert wire_hello_frame(tx, version, period, nonce) == ref


def _same(a: object, b: object) -> bool:
    """Equal, NaN equal to NaN (a sentinel decodes to NaN on both sides)."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


@settings(max_examples=300)
@given(st.binary(min_size=48, max_size=48))
def test_status_payloads_decode_alike(payload: bytes) -> None:
    """Any 48 bytes, every field (the depth load at offset 46 too) and every sentinel: the C
    unpacking the link's loop uses gives the reference's values."""
    ref = Status.unpack(payload)
    got = wire_status(payload)
    for name, value in got.items():
        assert _same(value, getattr(ref, name)), name


def test_the_depth_load_in_the_c_wire() -> None:
    """mA on the wire: 0.48 A, the largest reading, and the sentinel (a board that does not
    measure it)."""
    assert wire_status(Status(depth_load_a=0.48).pack())["depth_load_a"] == 0.48
    assert wire_status(Status(depth_load_a=65.534).pack())["depth_load_a"] == 65.534
    assert math.isnan(wire_status(Status().pack())["depth_load_a"])


def _stream(rng: random.Random, n: int) -> bytes:
    """Frames of every kind with damage: bit flips, cuts, garbage, repeats, reordering."""
    out = bytearray()
    seq = rng.randrange(1 << 16)
    frames: list[bytes] = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.5:
            msg: object = Status(echo_seq=rng.randrange(1 << 32), pos_mm=(1.0, 2.0, 3.0))
        elif kind < 0.6:
            msg = HelloAck(nonce=rng.randrange(1 << 32), board_id="b")
        elif kind < 0.7:
            msg = Setpoint(seq=rng.randrange(1, 1 << 31))
        else:
            msg = Hello(nonce=rng.randrange(1 << 32))
        f = bytearray(encode(msg, seq))  # type: ignore[arg-type]
        seq = (seq + rng.choice((1, 1, 1, 2, 5, 0, -3, 40000))) & 0xFFFF
        damage = rng.random()
        if damage < 0.05:
            f[rng.randrange(len(f))] ^= 1 << rng.randrange(8)
        elif damage < 0.08:
            f = f[: rng.randrange(len(f))]
        elif damage < 0.11:
            f[2] = rng.choice((0, 65, 255, 45))  # a wrong LEN
        elif damage < 0.14:
            f = bytearray(rng.randbytes(rng.randrange(1, 30))) + f
        elif damage < 0.16:
            f = bytearray(b"\xa5") + f
        frames.append(bytes(f))
        if frames and rng.random() < 0.05:
            frames.append(rng.choice(frames))
    for f in frames:
        out += f
    return bytes(out)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), st.booleans())
def test_the_decoders_deliver_the_same_frames_and_count_the_same_drops(
    seed: int, board_to_controller: bool
) -> None:
    rng = random.Random(seed)
    data = _stream(rng, rng.randrange(1, 60))
    cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randrange(0, 8)))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    ref = FrameDecoder(expect=BOARD_TO_CONTROLLER if board_to_controller else CONTROLLER_TO_BOARD)
    want = []
    for c in chunks:
        want += [(f.type, f.seq, f.msg.pack()) for f in ref.feed(c)]
    got, counters = wire_decode(chunks, board_to_controller)
    assert got == want  # type, link SEQ and payload (frames that pass the CRC are intact)
    ref_counters = {k: v for k, v in ref.counters.items() if k != "bad_input"}
    assert counters == ref_counters
