"""The board protocol (core_rt.board.protocol): frames, CRC, messages and the total decoder."""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core_rt.board.protocol import (
    ACK_FLAG_DEPTH_LOAD,
    BOARD_TO_CONTROLLER,
    CONTROLLER_TO_BOARD,
    COUNTERS,
    ECHO_NONE,
    EXAMPLES,
    HEATER_DUTY_FULL,
    MAX_PAYLOAD,
    PROTOCOL_VERSION,
    SETPOINT_SEQ_MAX,
    SP_FLAG_PRIMING,
    SYNC,
    TYPE_HELLO,
    TYPE_SETPOINT,
    TYPE_STATUS,
    Frame,
    FrameDecoder,
    Hello,
    HelloAck,
    Message,
    Setpoint,
    Status,
    crc16,
    encode,
    encode_frame,
    next_setpoint_seq,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "board-protocol.md"


def crc16_reference(data: bytes) -> int:
    """CRC-16/CCITT-FALSE bit by bit, straight from its definition."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


# ---- CRC ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "crc"),
    [
        (b"123456789", 0x29B1),  # the catalogue's check value for CRC-16/CCITT-FALSE
        (b"", 0xFFFF),
        (b"A", 0xB915),
        (bytes(range(256)), crc16_reference(bytes(range(256)))),
    ],
)
def test_crc16_is_ccitt_false(data: bytes, crc: int) -> None:
    assert crc16(data) == crc
    assert crc16_reference(data) == crc


@given(st.binary(max_size=300), st.integers(0, 300))
def test_crc16_matches_the_bitwise_definition_and_runs_incrementally(data: bytes, cut: int) -> None:
    assert crc16(data) == crc16_reference(data)
    assert crc16(data[cut:], crc16(data[:cut])) == crc16(data)


# ---- frames and messages ------------------------------------------------------------------------

finite = st.floats(-1e4, 1e4, allow_nan=False)
pos3 = st.tuples(finite, finite, finite)
setpoints = st.builds(
    Setpoint,
    seq=st.integers(0, 2**32 - 1),
    pos_mm=pos3,
    vel_mm_s=pos3,
    knead_rpm=st.floats(-100, 100),
    tap_hz=st.floats(0, 20),
    heater_duty=st.floats(0, 1),
    enable=st.booleans(),
)
statuses = st.builds(
    Status,
    echo_seq=st.integers(0, 2**32 - 1),
    board_time_us=st.integers(0, 2**32 - 1),
    pos_mm=pos3,
    knead_rpm=st.floats(-100, 100),
    tap_hz=st.floats(0, 20),
    current_a=st.tuples(*[st.floats(0, 60)] * 5),
    thermistor_c=st.floats(-300, 300),
    supply_v=st.floats(0, 60),
    switches=st.integers(0, 15),
    outputs=st.integers(0, 3),
    board_faults=st.integers(0, 0xFFFF),
    depth_load_a=st.one_of(st.just(math.nan), st.floats(0, 60)),
)
hellos = st.builds(
    Hello,
    version=st.integers(0, 0xFFFF),
    setpoint_period_us=st.integers(0, 0xFFFF),
    nonce=st.integers(0, 2**32 - 1),
)
acks = st.builds(
    HelloAck,
    version=st.integers(0, 0xFFFF),
    watchdog_ms=st.integers(0, 0xFFFF),
    nonce=st.integers(0, 2**32 - 1),
    status_period_us=st.integers(0, 0xFFFF),
    flags=st.integers(0, 0xFFFF),
    board_id=st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=16),
)
messages = st.one_of(setpoints, statuses, hellos, acks)


def close_enough(a: Message, b: Message) -> None:
    """`b` is `a` after the wire's fixed-point rounding."""
    assert type(a) is type(b)
    for name in a.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, tuple):
            assert len(x) == len(y)
            for u, v in zip(x, y, strict=True):
                assert v == pytest.approx(u, abs=0.0051, nan_ok=True)  # finest unit: 0.01 °C
        elif isinstance(x, float):
            tol = 1 / 65534 if name == "heater_duty" else 0.0051
            assert y == pytest.approx(x, abs=tol, nan_ok=True), name
        else:
            assert y == x, name


@given(messages, st.integers(0, 0xFFFF))
def test_every_message_round_trips_through_a_frame(msg: Message, seq: int) -> None:
    frame = encode(msg, seq)
    assert frame[:2] == SYNC and frame[2] == len(msg.pack()) <= MAX_PAYLOAD
    out = FrameDecoder().feed(frame)
    assert len(out) == 1 and out[0].seq == seq and out[0].type == msg.TYPE
    close_enough(msg, out[0].msg)
    assert encode(out[0].msg, seq) == frame  # decoded values are exact on the wire grid


def test_payloads_are_fixed_size_little_endian() -> None:
    sp = Setpoint(seq=0x01020304, pos_mm=(1.0, 0.0, 0.0), enable=True)
    raw = sp.pack()
    assert len(raw) == 40 and raw[:4] == b"\x04\x03\x02\x01"
    assert struct.unpack_from("<i", raw, 4)[0] == 1000  # 1 mm = 1000 µm
    assert len(Status().pack()) == 48
    assert len(Hello().pack()) == 8 and len(HelloAck().pack()) == 28


def test_missing_readings_travel_as_sentinels_and_decode_to_nan() -> None:
    s = Status(
        thermistor_c=math.nan,
        supply_v=math.nan,
        current_a=(math.nan, 1.0, 0, 0, 0),
        pos_mm=(math.nan, 1.0, 2.0),
    )
    (f,) = FrameDecoder().feed(encode(s, 1))
    assert isinstance(f.msg, Status)
    assert math.isnan(f.msg.thermistor_c) and math.isnan(f.msg.supply_v)
    assert math.isnan(f.msg.current_a[0]) and f.msg.current_a[1] == 1.0
    assert math.isnan(f.msg.pos_mm[0])
    sp = Setpoint(pos_mm=(math.nan, 0, 0))
    (g,) = FrameDecoder().feed(encode(sp, 1))
    assert isinstance(g.msg, Setpoint) and not g.msg.is_valid()


def test_the_depth_load_travels_in_ma_after_the_board_faults() -> None:
    """Version 3 (docs/board-protocol.md, STATUS): a u16 at offset 46 in mA, saturating at
    65534 mA, the sentinel 0xFFFF when not measured; HELLO_ACK flag bit 0 says it is."""
    raw = Status(depth_load_a=0.48, board_faults=0x0102).pack()
    assert struct.unpack_from("<HH", raw, 44) == (0x0102, 480)
    assert struct.unpack_from("<H", Status(depth_load_a=70.0).pack(), 46)[0] == 0xFFFE
    assert struct.unpack_from("<H", Status().pack(), 46)[0] == 0xFFFF  # not measured
    (f,) = FrameDecoder().feed(encode(Status(depth_load_a=1.234), 3))
    assert isinstance(f.msg, Status) and f.msg.depth_load_a == 1.234
    assert math.isnan(Status.unpack(Status().pack()).depth_load_a)
    assert HelloAck(flags=ACK_FLAG_DEPTH_LOAD).measures_depth_load
    assert not HelloAck(flags=0).measures_depth_load and ACK_FLAG_DEPTH_LOAD == 1


def test_full_heater_power_is_not_the_missing_value_sentinel() -> None:
    # protocol 2: a command's valid values never equal a sentinel (docs/board-protocol.md)
    raw = Setpoint(seq=1, heater_duty=1.0, enable=True).pack()
    assert struct.unpack_from("<H", raw, 36)[0] == HEATER_DUTY_FULL == 0xFFFE
    (f,) = FrameDecoder().feed(encode(Setpoint(seq=1, heater_duty=1.0, enable=True), 1))
    assert isinstance(f.msg, Setpoint) and f.msg.heater_duty == 1.0 and f.msg.is_valid()
    bad = bytearray(raw)
    bad[36:38] = b"\xff\xff"
    g = Setpoint.unpack(bytes(bad))
    assert math.isnan(g.heater_duty) and g.invalid_reason() == "a field carries its sentinel"


@pytest.mark.parametrize(
    ("sp", "why"),
    [
        (Setpoint(seq=0), "seq 0x0"),
        (Setpoint(seq=0x80000000), "seq 0x80000000"),
        (Setpoint(seq=1, flags=0x02), "reserved flag bits"),
        (Setpoint(seq=1, enable=True, flags=SP_FLAG_PRIMING), "PRIMING with enable 1"),
    ],
)
def test_a_board_refuses_an_invalid_setpoint_with_a_reason(sp: Setpoint, why: str) -> None:
    (f,) = FrameDecoder().feed(encode(sp, 1))
    assert isinstance(f.msg, Setpoint)
    reason = f.msg.invalid_reason()
    assert reason is not None and reason.startswith(why)


def test_an_enable_other_than_0_or_1_is_invalid_on_the_wire() -> None:
    raw = bytearray(Setpoint(seq=1, enable=True).pack())
    raw[38] = 2
    (f,) = FrameDecoder().feed(encode_frame(TYPE_SETPOINT, 1, bytes(raw)))
    assert isinstance(f.msg, Setpoint) and f.msg.invalid_reason() == "enable 2 (0 or 1)"


def test_setpoint_seq_never_reaches_the_sentinels_and_wraps_to_one() -> None:
    assert next_setpoint_seq(0) == 1  # the first after HELLO_ACK
    assert next_setpoint_seq(SETPOINT_SEQ_MAX - 1) == SETPOINT_SEQ_MAX
    assert next_setpoint_seq(SETPOINT_SEQ_MAX) == 1
    assert ECHO_NONE == 0 and PROTOCOL_VERSION == 3
    primer = Setpoint(seq=1, flags=SP_FLAG_PRIMING)
    assert primer.priming and primer.is_valid()


def test_out_of_range_values_saturate_instead_of_wrapping() -> None:
    (f,) = FrameDecoder().feed(
        encode(Status(thermistor_c=1e6, supply_v=-5.0, current_a=(1e9, 0, 0, 0, 0)), 1)
    )
    assert isinstance(f.msg, Status)
    assert f.msg.thermistor_c == pytest.approx(327.67)
    assert f.msg.supply_v == 0.0
    assert f.msg.current_a[0] == pytest.approx(65.534)


# ---- the decoder: validation --------------------------------------------------------------------


def stream(seqs: list[int], msg: Message | None = None) -> bytes:
    m = msg if msg is not None else Setpoint(enable=True)
    return b"".join(encode(m, s) for s in seqs)


def test_duplicate_and_out_of_order_sequence_numbers_are_dropped() -> None:
    d = FrameDecoder()
    out = d.feed(stream([1, 2, 2, 3, 1, 4, 6]))
    assert [f.seq for f in out] == [1, 2, 3, 4, 6]
    assert d.counters["duplicate"] == 1
    assert d.counters["out_of_order"] == 1
    assert d.counters["seq_gaps"] == 1  # 5 never came


def test_sequence_wraps_around() -> None:
    d = FrameDecoder()
    assert [f.seq for f in d.feed(stream([0xFFFE, 0xFFFF, 0, 1]))] == [0xFFFE, 0xFFFF, 0, 1]


def test_hello_restarts_the_sequence_check_for_a_new_peer() -> None:
    d = FrameDecoder()
    d.feed(stream([5000, 5001]))
    out = d.feed(encode(Hello(nonce=7), 3) + stream([4, 5]))
    assert [(f.type, f.seq) for f in out] == [
        (TYPE_HELLO, 3),
        (TYPE_SETPOINT, 4),
        (TYPE_SETPOINT, 5),
    ]
    assert d.counters["out_of_order"] == 0


def test_bad_crc_unknown_type_and_bad_length_are_counted_and_skipped() -> None:
    good = encode(Setpoint(), 1)
    bad_crc = bytearray(encode(Setpoint(), 2))
    bad_crc[10] ^= 0x01
    unknown = encode_frame(0x77, 3, b"\x00" * 5)
    wrong_len = encode_frame(TYPE_SETPOINT, 4, b"\x00" * 12)
    too_long = SYNC + bytes([MAX_PAYLOAD + 1]) + b"\x05\x00\x10" + b"\x00" * 70
    last = encode(Setpoint(), 5)
    d = FrameDecoder()
    out = d.feed(good + bytes(bad_crc) + unknown + wrong_len + too_long + last)
    assert [f.seq for f in out] == [1, 5]
    c = d.counters
    assert c["bad_crc"] >= 1 and c["unknown_type"] == 1 and c["bad_length"] >= 2
    assert c["frames"] == 2 and c["resyncs"] >= 1


def test_a_side_only_delivers_the_types_it_receives() -> None:
    d = FrameDecoder(expect=BOARD_TO_CONTROLLER)
    out = d.feed(encode(Setpoint(), 1) + encode(Status(), 2))
    assert [f.type for f in out] == [TYPE_STATUS]
    assert d.counters["unexpected_type"] == 1
    assert CONTROLLER_TO_BOARD.isdisjoint(BOARD_TO_CONTROLLER)


@pytest.mark.parametrize("junk", [None, "text", 42, 3.5, [1, 2], object()])
def test_feed_never_raises_on_things_that_are_not_bytes(junk: object) -> None:
    d = FrameDecoder()
    assert d.feed(junk) == []  # type: ignore[arg-type]
    assert d.counters["bad_input"] == 1
    assert [f.seq for f in d.feed(memoryview(encode(Status(), 9)))] == [9]


# ---- the decoder: fuzz --------------------------------------------------------------------------


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=200), max_size=20))
def test_random_bytes_never_raise_and_every_byte_is_accounted_for(chunks: list[bytes]) -> None:
    d = FrameDecoder()
    frames: list[Frame] = []
    for c in chunks:
        frames += d.feed(c)
    c = d.counters
    assert c["bytes"] == sum(map(len, chunks))
    assert c["frames"] == len(frames)
    assert set(c) == set(COUNTERS)
    assert d.buffered <= 6 + MAX_PAYLOAD + 2  # at most one frame waits for its end


frame_msgs = st.lists(st.one_of(setpoints, statuses), min_size=1, max_size=25)


@settings(max_examples=200, derandomize=True)
@given(frame_msgs, st.data())
def test_corrupted_stream_resynchronises_and_delivers_every_intact_frame_in_order(
    msgs: list[Message], data: st.DataObject
) -> None:
    """Bit flips (at most 3 per frame: CRC-16/CCITT-FALSE has Hamming distance 4 at these sizes),
    dropped bytes and garbage between frames: every untouched frame comes out, in order, and
    nothing else; the damage shows in the counters."""
    frames = [encode(m, i) for i, m in enumerate(msgs)]
    wire = bytearray()
    intact: list[int] = []
    for i, f in enumerate(frames):
        wire += data.draw(st.binary(max_size=12), label=f"garbage before {i}")
        damage = data.draw(st.sampled_from(["none", "none", "flip", "drop"]), label=f"damage {i}")
        b = bytearray(f)
        if damage == "flip":
            positions = data.draw(
                st.lists(st.integers(0, len(b) * 8 - 1), min_size=1, max_size=3, unique=True),
                label=f"bits {i}",
            )
            for p in positions:
                b[p // 8] ^= 1 << (p % 8)
        elif damage == "drop":
            k = data.draw(st.integers(0, len(b) - 1), label=f"dropped byte {i}")
            del b[k]
        else:
            intact.append(i)
        wire += b
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=8), label="cuts"))
    d = FrameDecoder()
    out: list[Frame] = []
    prev = 0
    for c in [*cuts, len(wire)]:
        out += d.feed(bytes(wire[prev:c]))
        prev = c
    assert [f.seq for f in out] == intact
    for f in out:
        close_enough(msgs[f.seq], f.msg)
    if len(intact) < len(frames):  # the damage shows: dropped bytes, or a tail still waiting
        c = d.counters
        assert c["bad_crc"] + c["bad_length"] + c["garbage_bytes"] + d.buffered > 0


@given(st.lists(st.one_of(setpoints, statuses), min_size=1, max_size=10), st.data())
def test_chunking_does_not_change_what_is_decoded(msgs: list[Message], data: st.DataObject) -> None:
    wire = b"".join(encode(m, i) for i, m in enumerate(msgs))
    whole = FrameDecoder().feed(wire)
    d = FrameDecoder()
    pieces: list[Frame] = []
    i = 0
    while i < len(wire):
        n = data.draw(st.integers(1, 17))
        pieces += d.feed(wire[i : i + n])
        i += n
    assert pieces == whole and len(whole) == len(msgs)


# ---- the documentation's examples ---------------------------------------------------------------


def doc_examples() -> list[bytes]:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Examples", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```\n([0-9a-f \n]+?)\n```", section)
    return [bytes.fromhex(b.replace("\n", " ")) for b in blocks]


def test_the_docs_hex_examples_decode_to_the_examples_in_the_code() -> None:
    blobs = doc_examples()
    assert len(blobs) == len(EXAMPLES)
    for blob, (title, seq, msg) in zip(blobs, EXAMPLES, strict=True):
        out = FrameDecoder().feed(blob)
        assert len(out) == 1, title
        assert out[0].seq == seq
        close_enough(msg, out[0].msg)
        assert blob == encode(msg, seq), f"docs/board-protocol.md is stale for: {title}"
