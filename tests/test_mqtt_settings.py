"""MQTT settings: file → environment → flags, broker URLs, secrets, TLS files, and what a bad
flag tells the user (docs/mqtt.md, "Settings"); no broker needed."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from chair.cli import main
from chair.mqtt.settings import MqttSettings, load_settings
from chair.mqtt.topics import Topics


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
