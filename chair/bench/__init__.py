"""The benchmarks of `chair bench` (docs/interfaces.md §5): each measures ours beside its baseline
in the same run — the planner against ruckig, the core's jitter against cyclictest and asyncio, a
simulated session against the wall clock, MQTT commands against the broker's round trip, the board
link over a real pty."""
