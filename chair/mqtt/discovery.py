"""Home Assistant device-based MQTT discovery: one retained message describes the chair and all
its entities (docs/mqtt.md, "Home Assistant")."""

from __future__ import annotations

import json
from typing import Any

from chair import __version__
from chair.lifecycle import SessionState
from chair.mqtt.settings import MqttSettings
from chair.programs.manual import AREAS, MANUAL_TECHNIQUES, ManualSettings
from core_rt.config import ChairConfig

NOBODY = "—"
"""The user select's option for "nobody in particular" (not a valid user name)."""


def discovery_config(
    settings: MqttSettings,
    programs: list[str],
    config: ChairConfig,
    users: list[str] | None = None,
) -> tuple[str, dict[str, Any]]:
    """(topic, payload) of the Home Assistant device-based discovery message for this chair.
    `users`: the user profiles' names, offered by a user select (None: the chair keeps no
    profiles, no select)."""
    t = settings.topics
    node = settings.node_id
    avail = {"availability_topic": t.availability}

    def cmp(key: str, platform: str, name: str, **options: Any) -> tuple[str, dict[str, Any]]:
        return key, {"p": platform, "name": name, "unique_id": f"{node}_{key}", **avail, **options}

    def button(key: str, name: str, icon: str) -> tuple[str, dict[str, Any]]:
        payload = json.dumps({"action": key}, separators=(",", ":"))
        return cmp(key, "button", name, command_topic=t.cmd, payload_press=payload, icon=icon)

    def preset(field_name: str, value: str) -> str:  # a Jinja template rendering our JSON
        return '{"action":"preset","' + field_name + '":' + value + "}"

    def manual_select(key: str, name: str, options: tuple[str, ...], icon: str) -> Any:
        # manual mode (docs/chair.md §8): a `set` of one setting; shows the manual session's,
        # else the default a manual start begins with
        default = getattr(ManualSettings(), key)
        return cmp(
            key,
            "select",
            name,
            command_topic=t.cmd,
            command_template='{"action":"set","manual":{"' + key + '":{{ value | tojson }}}}',
            state_topic=t.state,
            value_template=(
                f"{{{{ value_json.manual.{key} if value_json.manual else '{default}' }}}}"
            ),
            options=list(options),
            icon=icon,
        )

    def move(key: str, name: str, mm: float, icon: str) -> tuple[str, dict[str, Any]]:
        payload = json.dumps({"action": "move", "mm": mm}, separators=(",", ":"))
        return cmp(key, "button", name, command_topic=t.cmd, payload_press=payload, icon=icon)

    step_mm = config.manual.move_step_mm
    user_select: list[tuple[str, dict[str, Any]]] = []
    if users is not None:  # docs/chair.md §9: whose memory the next start begins from
        user_select.append(
            cmp(
                "user",
                "select",
                "User",
                command_topic=t.cmd,
                command_template=preset(
                    "user", "{{ '\"\"' if value == '" + NOBODY + "' else value | tojson }}"
                ),
                state_topic=t.state,
                value_template="{{ value_json.user or value_json.preset.user or '"
                + NOBODY
                + "' }}",
                options=[NOBODY, *users],
                icon="mdi:account",
            )
        )

    lo_i, hi_i = 1, len(config.depth.levels_mm)
    session = config.session
    components = dict(
        [
            cmp(
                "program",
                "select",
                "Program",
                command_topic=t.cmd,
                command_template=preset("program", "{{ value | tojson }}"),
                state_topic=t.state,
                value_template=(
                    "{{ value_json.program if value_json.program else value_json.preset.program }}"
                ),
                options=list(programs),
                icon="mdi:playlist-play",
            ),
            cmp(
                "minutes",
                "number",
                "Session length",
                command_topic=t.cmd,
                command_template=preset("minutes", "{{ value | int }}"),
                state_topic=t.state,
                value_template=(
                    "{{ value_json.preset.minutes if value_json.preset.minutes is not none "
                    f"else {session.default_minutes:g} }}}}"
                ),
                min=session.min_minutes,
                max=session.max_minutes,
                step=1,
                mode="slider",
                unit_of_measurement="min",
                icon="mdi:timer-outline",
            ),
            cmp(
                "intensity",
                "number",
                "Intensity",
                command_topic=t.cmd,
                command_template='{"action":"set","intensity":{{ value | int }}}',
                state_topic=t.state,
                value_template="{{ value_json.intensity }}",
                min=lo_i,
                max=hi_i,
                step=1,
                mode="slider",
                icon="mdi:gauge",
            ),
            cmp(
                "heat",
                "select",
                "Heat",
                command_topic=t.cmd,
                command_template='{"action":"set","heat":"{{ value }}"}',
                state_topic=t.state,
                value_template="{{ value_json.heat.level }}",
                options=list(config.heater.level_names),
                icon="mdi:heat-wave",
            ),
            manual_select("technique", "Technique", MANUAL_TECHNIQUES, "mdi:hand-back-right"),
            manual_select("area", "Area", AREAS, "mdi:arrow-expand-vertical"),
            move("up", "Up", step_mm, "mdi:arrow-up-bold"),
            move("down", "Down", -step_mm, "mdi:arrow-down-bold"),
            button("start", "Start", "mdi:play"),
            button("pause", "Pause", "mdi:pause"),
            button("resume", "Resume", "mdi:play-pause"),
            button("stop", "Stop", "mdi:stop"),
            button("estop", "Emergency stop", "mdi:alert-octagon"),
            button("reset", "Reset", "mdi:restore"),
            cmp(
                "state",
                "sensor",
                "State",
                state_topic=t.state,
                value_template="{{ value_json.state }}",
                device_class="enum",
                options=list(SessionState),
                icon="mdi:sofa-single",
            ),
            cmp(
                "zone",
                "sensor",
                "Zone",
                state_topic=t.state,
                value_template="{{ value_json.zone if value_json.zone else 'none' }}",
                icon="mdi:human-handsdown",
            ),
            cmp(
                "remaining",
                "sensor",
                "Remaining time",
                state_topic=t.state,
                value_template=("{{ (value_json.remaining_s or 0) | round(0) | int }}"),
                device_class="duration",
                unit_of_measurement="s",
            ),
            cmp(
                "pad_temperature",
                "sensor",
                "Pad temperature",
                state_topic=t.state,
                value_template="{{ value_json.heat.temp_c }}",
                device_class="temperature",
                state_class="measurement",
                unit_of_measurement="°C",
                suggested_display_precision=1,
            ),
            cmp(
                "fault",
                "binary_sensor",
                "Fault",
                state_topic=t.state,
                value_template="{{ 'ON' if value_json.fault else 'OFF' }}",
                device_class="problem",
                json_attributes_topic=t.state,
                json_attributes_template="{{ (value_json.fault or {}) | tojson }}",
            ),
            *user_select,
        ]
    )
    payload = {
        "dev": {
            "ids": [node],
            "name": f"Massage chair {settings.chair_id}",
            "mf": "massage-chair",
            "mdl": config.name,
            "sw": __version__,
        },
        "o": {"name": "massage-chair", "sw": __version__},
        "cmps": components,
        "availability_topic": t.availability,
        "state_topic": t.state,
        "command_topic": t.cmd,
        "qos": 1,
    }
    return f"{settings.discovery_prefix}/device/{node}/config", payload
