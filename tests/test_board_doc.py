"""docs/board-protocol.md stays true to the code: its "Numbers to build to" table is the one
`core_rt.board.numbers` generates from the chair config, every config key it names exists, and its
receive rules' worked example gives the counters the reference decoder gives. (The hex examples
are checked by tests/test_board_protocol.py.)"""

from __future__ import annotations

import re
from pathlib import Path

from core_rt.board.numbers import board_numbers, numbers_markdown
from core_rt.board.protocol import CONTROLLER_TO_BOARD, FrameDecoder, Setpoint, encode
from core_rt.config import ChairConfig

DOC = Path(__file__).resolve().parents[1] / "docs" / "board-protocol.md"


def section(title: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_docs_numbers_are_the_configs() -> None:
    table = [line for line in section("Numbers to build to").splitlines() if line.startswith("|")]
    assert "\n".join(table) == numbers_markdown(ChairConfig()), (
        "docs/board-protocol.md is stale: paste `python -m core_rt.board.numbers`"
    )


def test_every_config_key_the_table_names_exists() -> None:
    config = ChairConfig()
    names = 0
    for row in board_numbers(config):
        parent = ""
        for key in re.findall(r"`([a-z_.]+)`", row.source):
            full = parent + key if key.startswith(".") else key
            node: object = config
            for part in full.split("."):
                assert hasattr(node, part), f"{row.what}: no config key {full}"
                node = getattr(node, part)
            parent = full.rsplit(".", 1)[0]
            names += 1
    assert names > 40


def test_the_numbers_follow_the_config() -> None:
    other = ChairConfig.model_validate(
        {"carriage": {"track_max_mm": 1000.0, "park_mm": 1000.0}, "faults": {"link_lost_ms": 40}}
    )
    text = numbers_markdown(other)
    assert "| 0 … 1000 mm |" in text and "stale + 40 ms = 70 ms" in text


def receive_example() -> tuple[FrameDecoder, list[int]]:
    """The stream of the doc's worked example (Receiving)."""
    sp = [encode(Setpoint(seq=n), s) for n, s in ((1, 0x10), (2, 0x11), (3, 0x10), (4, 0x13))]
    damaged = bytearray(sp[1])
    damaged[10] ^= 0x01  # one payload bit
    stream = b"\x11\x22" + sp[0] + bytes(damaged) + b"\xa5\x5a\xff" + sp[2] + sp[3]
    d = FrameDecoder(expect=CONTROLLER_TO_BOARD)
    return d, [f.seq for f in d.feed(stream)]


def test_the_receive_rules_worked_example() -> None:
    d, seqs = receive_example()
    assert seqs == [0x0010, 0x0013]
    counters = ", ".join(f"`{k}` {v}" for k, v in d.counters.items() if v)
    assert f"{counters}; every other counter 0." in section("Frames")
