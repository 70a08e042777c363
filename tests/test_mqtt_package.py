"""`chair.mqtt` as one import: every public name of the package is the object its own module
defines, so ``from chair.mqtt import MqttBridge, MqttSettings`` keeps working."""

from __future__ import annotations

import importlib

import pytest

import chair.mqtt

OWNER = {
    "MqttSettings": "settings",
    "ENV_PREFIX": "settings",
    "load_settings": "settings",
    "add_broker_arguments": "settings",
    "settings_from_args": "settings",
    "Topics": "topics",
    "discovery_config": "discovery",
    "MqttBridge": "bridge",
}
"""Every public name with the module that owns it."""


@pytest.mark.parametrize(("name", "module"), OWNER.items())
def test_public_name_is_reexported_from_its_module(name: str, module: str) -> None:
    owner = importlib.import_module(f"chair.mqtt.{module}")
    assert getattr(chair.mqtt, name) is getattr(owner, name)


def test_all_lists_exactly_the_public_names() -> None:
    assert sorted(chair.mqtt.__all__) == sorted(OWNER)
