"""The fleet: many chairs on one broker, and the operator's service beside them (docs/fleet.md,
docs/interfaces.md §7).

`chair.fleet.identity` is the fleet's certificate authority: one client certificate per chair,
the broker's server certificate, revocation, and each identity's access rules on the broker.
"""
