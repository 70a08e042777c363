"""Database benchmark (`chair bench`'s ``store`` section, docs/chair.md §9): what keeping a
session's record and its ``session_finished`` event costs, beside plain SQLite and the broker
measured in the same run, on a fresh database in the chair's own state directory (its flash).

- **record_begin**: `Store.begin_session`, the record a session writes as it starts.
- **record_close**: `Store.finish_session`, closing the record and queueing the event in the
  outbox, one transaction — what a session writes as it ends.
- **plain_insert** (baseline): the same session row inserted with the standard `sqlite3` module
  directly (same file settings: WAL, one transaction per row, no asyncio thread hop).
- **outbox_round_trip**: the bridge's path for one event: queued in the outbox → published at
  QoS 1 → the broker's PUBACK → forgotten in the outbox.
- **broker_puback** (baseline): the same payload published at QoS 1 until its PUBACK, alone.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from chair.bench.mqtt import percentiles, private_broker
from chair.mqtt.settings import MqttSettings
from chair.store import Store, db_path
from chair.store.schema import MIGRATIONS


def run(
    records: int = 500, *, directory: Path | None = None, broker_url: str | None = None
) -> dict[str, Any]:
    """Measure over `records` records; in a temporary directory beside the chair's database
    unless `directory` is given, with a private mosquitto unless `broker_url` is given."""
    return asyncio.run(_run(records, directory, broker_url))


def _scratch(directory: Path | None) -> tempfile.TemporaryDirectory[str]:
    if directory is None:
        directory = db_path().parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError:  # no state directory to write in: the system's temporary one
            return tempfile.TemporaryDirectory(prefix="chair-bench-store-")
    return tempfile.TemporaryDirectory(prefix="chair-bench-store-", dir=directory)


def _row(i: int) -> dict[str, Any]:
    return {
        "session_id": f"{uuid.uuid4().hex[:8]}-{i}",
        "user": "Ann",
        "program": "relax",
        "minutes_planned": 15.0,
        "intensity": 3,
        "heat": "low",
    }


def _event(row: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A closed record and its session_finished event, of a real one's size (the summary
    ~4 KB)."""
    record = {
        **row,
        "outcome": "completed",
        "end_reason": "completed",
        "seconds_run": 900.0,
        "faults": [],
        "safety_ok": True,
        "zone_seconds": {z: 120.0 for z in ("glutes", "lumbar", "mid_back", "shoulders")},
    }
    summary = {"notes": ["x" * 60] * 60}
    event = {
        "event": "session_finished",
        "session_id": row["session_id"],
        "completed": True,
        "end_reason": "completed",
        "summary": summary,
        "record": record,
    }
    return record, event


def _ms(t0: int) -> float:
    return (time.perf_counter_ns() - t0) / 1e6


async def _run(records: int, directory: Path | None, broker_url: str | None) -> dict[str, Any]:
    with _scratch(directory) as tmp:
        begin, close = await _record_writes(Path(tmp) / "chair.db", records)
        plain = _plain_inserts(Path(tmp) / "plain.db", records)
        async with private_broker(broker_url) as url:
            round_trips, pubacks = await _outbox(Path(tmp) / "outbox.db", url, records)
        where = str(Path(tmp).parent)
    out: dict[str, Any] = {"records": records, "directory": where}
    for name, values in (
        ("record_begin", begin),
        ("record_close", close),
        ("plain_insert", plain),
        ("outbox_round_trip", round_trips),
        ("broker_puback", pubacks),
    ):
        p50, p99 = percentiles(values, 0.50, 0.99)
        out[f"{name}_p50_ms"], out[f"{name}_p99_ms"] = p50, p99
    return out


async def _record_writes(path: Path, n: int) -> tuple[list[float], list[float]]:
    store = await Store.open(path)
    begin: list[float] = []
    close: list[float] = []
    try:
        for i in range(n):
            row = _row(i)
            t0 = time.perf_counter_ns()
            await store.begin_session(row)
            begin.append(_ms(t0))
            record, event = _event(row)
            t0 = time.perf_counter_ns()
            await store.finish_session(row["session_id"], record, event=event, topic="t")
            close.append(_ms(t0))
    finally:
        await store.close()
    return begin, close


def _plain_inserts(path: Path, n: int) -> list[float]:
    conn = sqlite3.connect(path, isolation_level=None)
    out: list[float] = []
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        for sql in (s for version in MIGRATIONS for s in version):  # the same tables
            conn.execute(sql)
        for i in range(n):
            row = _row(i)
            t0 = time.perf_counter_ns()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO sessions (session_id, user, program, minutes_planned, intensity, "
                "heat, started_at, seconds_run) VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
                (*row.values(), "2026-01-01T00:00:00.000Z"),
            )
            conn.execute("COMMIT")
            out.append(_ms(t0))
    finally:
        conn.close()
    return out


async def _outbox(path: Path, url: str, n: int) -> tuple[list[float], list[float]]:
    settings = MqttSettings(broker=url, chair_id=f"bench-{uuid.uuid4().hex[:6]}")
    topic = f"{settings.topics.base}/event"
    store = await Store.open(path)
    round_trips: list[float] = []
    pubacks: list[float] = []
    try:
        async with settings.client(f"bench-outbox-{uuid.uuid4().hex[:8]}") as client:
            for i in range(n):
                row = _row(i)
                _, event = _event(row)
                payload = json.dumps(event)
                t0 = time.perf_counter_ns()
                oid = await store.add_outbox(topic, row["session_id"], event)
                await client.publish(topic, payload, qos=1)  # returns on the PUBACK
                await store.outbox_done(oid)
                round_trips.append(_ms(t0))
                t0 = time.perf_counter_ns()
                await client.publish(topic, payload, qos=1)
                pubacks.append(_ms(t0))
    finally:
        await store.close()
    return round_trips, pubacks


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(run(), indent=2))
