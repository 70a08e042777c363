"""The fleet: many chairs on one broker, and the operator's service beside them (docs/fleet.md,
docs/interfaces.md §7).

`chair.fleet.identity` is the fleet's certificate authority: one client certificate per chair,
the broker's server certificate, revocation, and each identity's access rules on the broker.
"""

CLIENT_ID_PREFIX = "chair-fleet-"
"""The operator's service's MQTT client ids begin so (an instance's, a paid start's: ``service``).
Client ids are one namespace across a broker's listeners, so no chair may be named so
(``identity``): on a listener that makes a chair's id its certificate's CN, a chair named like
an instance would take over that instance's session (docs/fleet.md)."""
