"""A web-remote client built from docs/web.md and docs/mqtt.md alone (see client.py)."""
