"""The topic tree of one chair: ``<prefix>/<chair_id>/...`` (docs/mqtt.md, "Topics")."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    """The topic tree of one chair."""

    base: str
    availability: str
    state: str
    telemetry: str
    event: str
    cmd: str
    reply: str
    ack: str
    """The operator's service acknowledges a session's record here (docs/fleet-service.md)."""

    @classmethod
    def for_chair(cls, prefix: str, chair_id: str) -> Topics:
        base = f"{prefix}/{chair_id}"
        return cls(
            base=base,
            availability=f"{base}/availability",
            state=f"{base}/state",
            telemetry=f"{base}/telemetry",
            event=f"{base}/event",
            cmd=f"{base}/cmd",
            reply=f"{base}/reply",
            ack=f"{base}/ack",
        )
