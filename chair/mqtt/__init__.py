"""Remote control over MQTT: the daemon side of ``chair serve`` and what ``chair remote`` shares
with it (docs/mqtt.md).

One idea per module:

- `chair.mqtt.settings` — `MqttSettings` (broker URL, auth, TLS, topic names, rates) from a TOML
  file, ``CHAIR_*`` environment variables and flags (`load_settings`, `add_broker_arguments`,
  `settings_from_args`).
- `chair.mqtt.topics` — `Topics`, the topic tree of one chair.
- `chair.mqtt.discovery` — `discovery_config`, the Home Assistant device-discovery message.
- `chair.mqtt.reconnect` — `keep_connected`: connect, serve, back off and retry (the bridge and
  the fleet service).
- `chair.mqtt.bridge` — `MqttBridge`: connection life, replies, state, telemetry
  and events.

Commands are parsed and executed by `chair.commands` (shared with the web remote).

The names below are re-exported here; code of this project imports them from their own module.
"""

from chair.mqtt.bridge import MqttBridge
from chair.mqtt.discovery import discovery_config
from chair.mqtt.settings import (
    ENV_PREFIX,
    MqttSettings,
    add_broker_arguments,
    load_settings,
    settings_from_args,
)
from chair.mqtt.topics import Topics

__all__ = [
    "ENV_PREFIX",
    "MqttBridge",
    "MqttSettings",
    "Topics",
    "add_broker_arguments",
    "discovery_config",
    "load_settings",
    "settings_from_args",
]
