"""An operator-side consumer of `session_finished` built from docs/mqtt.md and
docs/fleet-service.md alone (see consumer.py)."""
