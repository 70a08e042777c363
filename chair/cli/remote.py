"""``chair remote``: send one command to a chair over MQTT, print the reply; ``watch`` follows it.

A command goes out on ``<base>/cmd`` with a fresh ``id``; over MQTT 5 it also names a response
topic (``<base>/reply/<client id>``) and correlation data. The first matching reply — on the
response topic, or on ``<base>/reply`` by ``id`` — is printed; the exit code is 0 when ``ok``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from chair.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    add_manual_arguments,
    add_zone_intensity_argument,
    manual_choices,
    zone_pairs,
)
from chair.commands.parse import ACTIONS
from chair.mqtt.settings import MqttSettings, add_broker_arguments, settings_from_args

ACTION_CHOICES = (*ACTIONS, "watch")
_FIELDS = ("program", "minutes", "intensity", "heat", "mm", "user")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "remote",
        help="send one command to a chair over MQTT (or watch it)",
        description="Send one command to a chair served by `chair serve` and print the reply "
        "(exit 0 when ok, 1 otherwise); `watch` prints state changes and events until "
        "interrupted.",
    )
    p.add_argument(
        "action", choices=ACTION_CHOICES, metavar="ACTION", help=", ".join(ACTION_CHOICES)
    )
    g = p.add_argument_group("command fields")
    g.add_argument("--program", metavar="P")
    g.add_argument("--minutes", type=float, metavar="N")
    g.add_argument("--intensity", type=int, metavar="I")
    g.add_argument("--heat", choices=("off", "low", "medium", "high"))
    g.add_argument(
        "--mm",
        type=float,
        metavar="MM",
        help="shoulder nudge (adjust_shoulder) or how far to move (move, manual mode: + = up)",
    )
    add_zone_intensity_argument(g)
    g.add_argument("--user", metavar="NAME", help="start (or preset) for this user's memory")
    g.add_argument(
        "--file",
        type=Path,
        metavar="TOML",
        help="install_program: the program file to deliver (docs/programs.md, Delivered programs)",
    )
    g.add_argument("--id", metavar="ID", help="command id (default: a fresh one)")
    add_manual_arguments(p, "manual mode (start --program manual, or set; docs/chair.md §8)")
    add_broker_arguments(p)
    o = p.add_argument_group("output")
    o.add_argument("--timeout", type=float, metavar="S", help="seconds to wait (default 10)")
    o.add_argument("--json", action="store_true", help="print the reply (or messages) as JSON")
    o.add_argument("--until", metavar="STATE", help="watch: exit 0 once the chair is in STATE")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.timeout is not None and not args.timeout > 0:
        raise UsageError("--timeout must be > 0")
    if args.action == "watch":
        return asyncio.run(
            watch(settings, as_json=args.json, until=args.until, timeout_s=args.timeout)
        )
    command: dict[str, Any] = {"id": args.id or uuid.uuid4().hex, "action": args.action}
    allowed = ACTIONS[args.action].fields
    fields: dict[str, Any] = {name: getattr(args, name) for name in _FIELDS}
    fields["zone_intensity"] = zone_pairs(args.zone_intensity)
    fields["manual"] = manual_choices(args) or None
    fields["toml"] = None if args.file is None else _program_text(args.file)
    for name, value in fields.items():
        if value is None:
            continue
        if name not in allowed:
            given = {"manual": "/--".join(manual_choices(args)), "toml": "file"}.get(name, name)
            raise UsageError(f"{args.action} takes no --{given.replace('_', '-')}")
        command[name] = value
    try:
        reply = asyncio.run(send(settings, command, timeout_s=args.timeout or 10.0))
    except aiomqtt.MqttError as e:
        print(f"chair remote: broker {settings.broker}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except TimeoutError as e:
        print(f"chair remote: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(reply, indent=2))
    else:
        print(describe_reply(reply))
    return EXIT_OK if reply.get("ok") is True else EXIT_USAGE


async def send(
    settings: MqttSettings, command: dict[str, Any], timeout_s: float = 10.0
) -> dict[str, Any]:
    """Publish `command` and return the chair's reply; TimeoutError when none comes."""
    t = settings.topics
    client_id = f"chair-remote-{uuid.uuid4().hex[:12]}"
    response_topic = f"{t.reply}/{client_id}"
    cmd_id = str(command["id"])
    availability: bytes | None = None
    async with settings.client(client_id, timeout_s=timeout_s) as client:
        await client.subscribe(t.reply, qos=1)
        await client.subscribe(t.availability, qos=1)
        props = None
        if settings.v5:
            await client.subscribe(response_topic, qos=1)
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ResponseTopic = response_topic
            props.CorrelationData = cmd_id.encode()
        await client.publish(t.cmd, json.dumps(command), qos=1, properties=props)
        try:
            async with asyncio.timeout(timeout_s):
                async for msg in client.messages:
                    if msg.topic.value == t.availability:
                        availability = bytes(msg.payload) if msg.payload is not None else None
                        continue
                    reply = _match(msg, cmd_id)
                    if reply is not None:
                        return reply
        except TimeoutError:
            pass
    state = availability.decode(errors="replace") if availability else "unknown"
    raise TimeoutError(
        f"no reply from chair {settings.chair_id!r} within {timeout_s:g} s "
        f"(its availability: {state}; is `chair serve` running with this --chair-id?)"
    )


def _match(msg: aiomqtt.Message, cmd_id: str) -> dict[str, Any] | None:
    correlation = getattr(msg.properties, "CorrelationData", None)
    try:
        reply = json.loads(bytes(msg.payload) if msg.payload is not None else b"")
    except ValueError:
        return None
    if not isinstance(reply, dict):
        return None
    if correlation is not None and bytes(correlation) == cmd_id.encode():
        return reply
    return reply if reply.get("id") == cmd_id else None


def _program_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--file {path}: {getattr(e, 'strerror', None) or e}") from None


def describe_reply(reply: dict[str, Any]) -> str:
    state = reply.get("state") or {}
    head = f"{reply.get('action')}: "
    if reply.get("ok"):
        head += "ok"
    else:
        err = reply.get("error") or {}
        head += f"refused ({err.get('code')}): {err.get('message')}"
    users = reply.get("users")
    if users is not None:  # the `users` action
        head += "".join(f"\n  {u['name']}" for u in users) or "\n  (no users)"
    return head + "\n" + describe_state(state)


def describe_state(state: dict[str, Any]) -> str:
    """A one-line picture of the chair."""
    parts = [f"state {state.get('state')}"]
    if state.get("user"):
        parts.append(f"user {state['user']}")
    if state.get("program"):
        parts.append(f"program {state['program']}")
    if state.get("step") is not None:
        parts.append(f"step {state['step']} {state.get('technique') or ''}".rstrip())
    if state.get("zone"):
        parts.append(f"zone {state['zone']}")
    if state.get("remaining_s"):
        parts.append(f"remaining {_clock(state['remaining_s'])}")
    if state.get("intensity") is not None:
        parts.append(f"intensity {state['intensity']}")
    heat = state.get("heat") or {}
    if heat.get("level") and heat["level"] != "off":
        parts.append(f"heat {heat['level']} {heat.get('temp_c')}/{heat.get('target_c')} °C")
    fault = state.get("fault")
    if fault:
        parts.append(f"FAULT {fault.get('code')}: {fault.get('message')}")
    return ", ".join(parts)


def _clock(seconds: float) -> str:
    s = max(0, round(float(seconds)))
    return f"{s // 60}:{s % 60:02d}"


async def watch(
    settings: MqttSettings,
    *,
    as_json: bool = False,
    until: str | None = None,
    timeout_s: float | None = None,
) -> int:
    """Print availability, state changes and events until interrupted (exit 0), `until` is
    reached (0) or `timeout_s` passes (0 without `until`, 1 with)."""
    t = settings.topics
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last_line = None
    try:
        async with settings.client(f"chair-watch-{uuid.uuid4().hex[:12]}") as client:
            for topic in (t.availability, t.state, t.event):
                await client.subscribe(topic, qos=1)
            messages = aiter(client.messages)
            while not stop.is_set():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return EXIT_USAGE if until else EXIT_OK
                next_msg = asyncio.ensure_future(anext(messages))
                stopped = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait(
                    {next_msg, stopped}, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                stopped.cancel()
                if next_msg not in done:
                    next_msg.cancel()
                    continue
                msg = next_msg.result()
                topic = msg.topic.value
                raw = bytes(msg.payload) if msg.payload is not None else b""
                if as_json:
                    try:
                        payload: Any = json.loads(raw)
                    except ValueError:
                        payload = raw.decode(errors="replace")
                    line = json.dumps({"topic": topic, "payload": payload})
                else:
                    line = _watch_line(topic, raw, t.availability, t.state)
                if line != last_line:  # clocks tick in the state: print what changed
                    last_line = line
                    print(line if as_json else f"{time.strftime('%H:%M:%S')} {line}", flush=True)
                if until and topic == t.state and _state_name(raw) == until:
                    return EXIT_OK
    except aiomqtt.MqttError as e:
        print(f"chair remote watch: broker {settings.broker}: {e}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _state_name(raw: bytes) -> Any:
    try:
        return json.loads(raw).get("state")
    except (ValueError, AttributeError):
        return None


def _watch_line(topic: str, raw: bytes, availability: str, state: str) -> str:
    text = raw.decode(errors="replace")
    if topic == availability:
        return f"chair {text}"
    try:
        payload = json.loads(raw)
    except ValueError:
        return f"{topic}: {text}"
    if topic == state and isinstance(payload, dict):
        return describe_state(payload)
    if isinstance(payload, dict):
        name = payload.pop("event", "event")
        rest = " ".join(f"{k}={v}" for k, v in payload.items())
        return f"event {name} {rest}".rstrip()
    return f"{topic}: {text}"
