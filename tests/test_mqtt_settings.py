"""MQTT settings (file → environment → flags) and strict command validation, without a broker."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from chair.api import ERROR_CODES
from chair.cli import main
from chair.mqtt import (
    ACTIONS,
    BadCommand,
    CommandLimits,
    MqttSettings,
    Topics,
    discovery_config,
    load_settings,
    parse_command,
)
from core_rt.config import ChairConfig
from tests.mqtt_helpers import BAD_PAYLOADS

LIMITS = CommandLimits.from_config(ChairConfig())


# ---- settings -----------------------------------------------------------------------------------


def test_broker_url_gives_host_port_and_tls() -> None:
    assert (MqttSettings(broker="mqtt://h").host, MqttSettings(broker="mqtt://h").port) == (
        "h",
        1883,
    )
    s = MqttSettings(broker="mqtts://broker.example:8884")
    assert (s.tls, s.host, s.port) == (True, "broker.example", 8884)
    assert MqttSettings(broker="mqtts://b").port == 8883
    assert MqttSettings(broker="mqtt://[::1]:1999").host == "::1"


@pytest.mark.parametrize(
    "url",
    [
        "http://h:1883",
        "h:1883",
        "mqtt://",
        "mqtt://u:p@h",
        "mqtt://h/x",
        "mqtt://h:99999",
        "mqtt://h?a",
    ],
)
def test_bad_broker_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="broker"):
        load_settings(overrides={"broker": url}, env={})


@pytest.mark.parametrize("chair_id", ["", "a/b", "a+", "#", "x" * 65, "a b"])
def test_chair_id_must_be_one_topic_level(chair_id: str) -> None:
    with pytest.raises(ValueError, match="chair_id"):
        load_settings(overrides={"chair_id": chair_id}, env={})


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    f = tmp_path / "mqtt.toml"
    f.write_text(
        '[mqtt]\nbroker = "mqtt://filehost:1884"\nchair_id = "from_file"\nprefix = "spa"\n'
        "protocol = 5\ntelemetry_hz = 5\ndiscovery = false\n"
    )
    s = load_settings(f, env={})
    assert (s.host, s.port, s.chair_id, s.prefix, s.protocol) == (
        "filehost", 1884, "from_file", "spa", "5",
    )  # fmt: skip
    assert s.telemetry_hz == 5 and s.discovery is False
    env = {"CHAIR_ID": "from_env", "CHAIR_BROKER": "mqtt://envhost", "CHAIR_DISCOVERY": "true"}
    s = load_settings(f, env=env)
    assert (s.chair_id, s.host, s.discovery, s.prefix) == ("from_env", "envhost", True, "spa")
    s = load_settings(f, env=env, overrides={"chair_id": "from_flag", "broker": None})
    assert (s.chair_id, s.host) == ("from_flag", "envhost")
    assert s.topics == Topics.for_chair("spa", "from_flag")
    assert s.topics.cmd == "spa/from_flag/cmd"


def test_top_level_toml_and_unknown_keys(tmp_path: Path) -> None:
    f = tmp_path / "m.toml"
    f.write_text('chair_id = "c7"\nprotocol = "3.1.1"\n')
    s = load_settings(f, env={})
    assert s.chair_id == "c7" and s.protocol == "3.1.1" and not s.v5
    f.write_text('chair_idd = "c7"\n')
    with pytest.raises(ValueError, match="chair_idd"):
        load_settings(f, env={})
    f.write_text("not toml [")
    with pytest.raises(ValueError, match="TOML"):
        load_settings(f, env={})


def test_password_is_secret_everywhere(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    secret = "s3cr3t-Pa55"
    s = load_settings(overrides={"username": "u", "password": secret}, env={})
    assert s.password is not None and s.password.get_secret_value() == secret
    caplog.set_level(logging.DEBUG)
    logging.getLogger("t").info("settings: %r / %s / %s", s, s, s.model_dump())
    for text in (repr(s), str(s), s.model_dump_json(), caplog.text):
        assert secret not in text


def test_password_file_and_precedence(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("from-file\nignored\n")
    s = load_settings(overrides={"password_file": str(pw)}, env={})
    assert s.password is not None and s.password.get_secret_value() == "from-file"
    env = {"CHAIR_PASSWORD_FILE": str(pw)}
    s = load_settings(overrides={"password": "flag"}, env=env)  # a flag beats the environment
    assert s.password is not None and s.password.get_secret_value() == "flag"
    with pytest.raises(ValueError, match="password"):
        load_settings(env={"CHAIR_PASSWORD": "a", "CHAIR_PASSWORD_FILE": str(pw)})
    with pytest.raises(ValueError, match="password_file"):
        load_settings(overrides={"password_file": str(tmp_path / "nope")}, env={})


def test_tls_files_need_mqtts_and_must_exist(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    with pytest.raises(ValueError, match="mqtts"):
        load_settings(overrides={"ca_file": str(ca)}, env={})
    with pytest.raises(ValueError, match="no such file"):
        load_settings(overrides={"broker": "mqtts://h", "ca_file": str(tmp_path / "x")}, env={})
    with pytest.raises(ValueError, match="key_file needs cert_file"):
        load_settings(overrides={"broker": "mqtts://h", "key_file": str(ca)}, env={})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "--broker", "ftp://x"], "broker URL"),
        (["serve", "--chair-id", "a/b"], "chair_id"),
        (["serve", "--hardware", "usb"], "--hardware"),
        (["serve", "--mqtt-version", "4"], "invalid choice"),
        (["remote", "status", "--broker", "mqtt://h", "--timeout", "0"], "--timeout"),
        (["remote", "pause", "--program", "relax"], "takes no --program"),
        (["remote", "launch"], "invalid choice"),
    ],
)
def test_cli_usage_errors_exit_1_without_traceback(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        raise SystemExit(main(argv))
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


# ---- commands -----------------------------------------------------------------------------------


def test_at_least_30_distinct_bad_inputs() -> None:
    assert len({p for p, _ in BAD_PAYLOADS}) >= 30
    assert {code for _, code in BAD_PAYLOADS} <= set(ERROR_CODES)


@pytest.mark.parametrize(("payload", "code"), BAD_PAYLOADS, ids=lambda x: repr(x)[:40])
def test_bad_payload_is_refused_with_its_code(payload: bytes, code: str) -> None:
    with pytest.raises(BadCommand) as e:
        parse_command(payload, LIMITS)
    assert e.value.code == code, e.value.message
    assert e.value.message


def test_valid_commands_parse_to_their_fields() -> None:
    cmd = parse_command(
        b'{"id":"r-1","action":"start","program":"relax","minutes":20,"intensity":4.0,'
        b'"heat":"medium"}',
        LIMITS,
    )
    assert cmd.id == "r-1" and cmd.action == "start"
    assert cmd.args == {"program": "relax", "minutes": 20.0, "intensity": 4, "heat": "medium"}
    assert isinstance(cmd.args["intensity"], int)
    assert parse_command(b'{"action":"adjust_shoulder","mm":-50}', LIMITS).args == {"mm": -50.0}
    assert parse_command(b'{"action":"status","id":null}', LIMITS).id is None
    for action, (_fields, required, at_least_one) in ACTIONS.items():
        if not required and not at_least_one:
            assert parse_command(json.dumps({"action": action}).encode(), LIMITS).action == action


def test_refusal_echoes_what_it_could_read() -> None:
    with pytest.raises(BadCommand) as e:
        parse_command(b'{"id":"q","action":"set","intensity":9}', LIMITS)
    assert (e.value.id, e.value.action, e.value.code) == ("q", "set", "out_of_range")
    assert "1..5" in e.value.message


def test_discovery_lists_every_entity() -> None:
    s = MqttSettings(chair_id="c1")
    topic, payload = discovery_config(s, ["relax", "deep"], ChairConfig())
    assert topic == "homeassistant/device/massagechair_c1/config"
    cmps = payload["cmps"]
    kinds = {k: v["p"] for k, v in cmps.items()}
    assert kinds == {
        "program": "select", "minutes": "number", "intensity": "number", "heat": "select",
        "start": "button", "pause": "button", "resume": "button", "stop": "button",
        "estop": "button", "reset": "button", "state": "sensor", "zone": "sensor",
        "remaining": "sensor", "pad_temperature": "sensor", "fault": "binary_sensor",
    }  # fmt: skip
    assert cmps["program"]["options"] == ["relax", "deep"]
    assert (cmps["intensity"]["min"], cmps["intensity"]["max"]) == (1, 5)
    assert cmps["heat"]["options"] == ["off", "low", "medium", "high"]
    assert cmps["fault"]["device_class"] == "problem"
    assert len({c["unique_id"] for c in cmps.values()}) == len(cmps)
    assert all(c["availability_topic"] == "massagechair/c1/availability" for c in cmps.values())
