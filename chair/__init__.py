"""chair — the massage-chair controller: sessions, programs, MQTT remote control and the CLI.

The top floor of the house (see docs/architecture.md): it stands on ``core_rt`` (the real-time core)
and picks ``sim`` (the simulated chair) only where the user asks for simulated hardware.
"""

__version__ = "0.1.0"
