"""The benchmarks of `chair bench` (docs/interfaces.md §5): each measures ours beside its baseline
in the same run — the planner against ruckig, the core's jitter against cyclictest and asyncio, a
simulated session against the wall clock, MQTT commands against the broker's round trip, the board
link over a real pty."""

import shutil


class MissingToolError(RuntimeError):
    """A benchmark baseline needs a program that is not installed (the message says how to
    install it)."""


def find_tool(name: str, package: str, why: str) -> str:
    """Path of the program `name`, or MissingToolError naming the Debian `package` to install."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
    if path is None:
        raise MissingToolError(
            f"{name} not found: {why} needs it. Install it with 'sudo apt-get install {package}' "
            "(`make bench` installs it)."
        )
    return path
