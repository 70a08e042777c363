"""Strict validation of ``<base>/cmd`` payloads and the codes of their refusals (docs/mqtt.md,
"Commands and replies", "Error codes"); no broker needed."""

from __future__ import annotations

import json

import pytest

from chair.api import ERROR_CODES
from chair.commands.parse import ACTIONS, BadCommand, parse_command
from core_rt.config import ChairConfig
from tests.mqtt_helpers import BAD_PAYLOADS

CONFIG = ChairConfig()


def test_at_least_30_distinct_bad_inputs() -> None:
    assert len({p for p, _ in BAD_PAYLOADS}) >= 30
    assert {code for _, code in BAD_PAYLOADS} <= set(ERROR_CODES)


@pytest.mark.parametrize(("payload", "code"), BAD_PAYLOADS, ids=lambda x: repr(x)[:40])
def test_bad_payload_is_refused_with_its_code(payload: bytes, code: str) -> None:
    with pytest.raises(BadCommand) as e:
        parse_command(payload, CONFIG)
    assert e.value.code == code, e.value.message
    assert e.value.message


def test_valid_commands_parse_to_their_fields() -> None:
    cmd = parse_command(
        b'{"id":"r-1","action":"start","program":"relax","minutes":20,"intensity":4.0,'
        b'"heat":"medium"}',
        CONFIG,
    )
    assert cmd.id == "r-1" and cmd.action == "start"
    assert cmd.args == {"program": "relax", "minutes": 20.0, "intensity": 4, "heat": "medium"}
    assert isinstance(cmd.args["intensity"], int)
    assert parse_command(b'{"action":"adjust_shoulder","mm":-50}', CONFIG).args == {"mm": -50.0}
    assert parse_command(b'{"action":"status","id":null}', CONFIG).id is None
    for action, spec in ACTIONS.items():
        required, at_least_one = spec.required, spec.at_least_one
        if not required and not at_least_one:
            assert parse_command(json.dumps({"action": action}).encode(), CONFIG).action == action


def test_refusal_echoes_what_it_could_read() -> None:
    with pytest.raises(BadCommand) as e:
        parse_command(b'{"id":"q","action":"set","intensity":9}', CONFIG)
    assert (e.value.id, e.value.action, e.value.code) == ("q", "set", "out_of_range")
    assert "1..5" in e.value.message
