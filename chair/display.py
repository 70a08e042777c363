"""The live view of a session (rich) and the summary table at its end."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from chair.programs.model import Program
from core_rt.config import ZONES, ChairConfig

ZONE_STYLE = {
    "glutes": "on grey23",
    "sacrum": "on dark_orange3",
    "lumbar": "on dark_green",
    "mid_back": "on dodger_blue3",
    "upper_back": "on purple4",
    "shoulders": "on red3",
    "neck": "on gold3",
}
ZONE_MARK = {
    "glutes": "g",
    "sacrum": "s",
    "lumbar": "l",
    "mid_back": "m",
    "upper_back": "u",
    "shoulders": "S",
    "neck": "n",
}
BAR = 60


def track_bar(
    config: ChairConfig, zones: dict[str, tuple[float, float]], y: float | None, pressing: bool
) -> Text:
    """The track as a bar, bottom → top, zone bands coloured, the roller marked."""
    lo_t, hi_t = config.carriage.track_min_mm, config.carriage.track_max_mm
    text = Text()
    pos = None if y is None else round((y - lo_t) / (hi_t - lo_t) * (BAR - 1))
    for i in range(BAR):
        yy = lo_t + (i + 0.5) / BAR * (hi_t - lo_t)
        style, mark = "", "·"
        for z, (a, b) in zones.items():
            if a <= yy < b:
                style, mark = ZONE_STYLE[z], ZONE_MARK[z]
        ch = "●" if i == pos and pressing else "○" if i == pos else mark
        text.append(ch, style=style + (" bold white" if i == pos else ""))
    return text


def heat_text(heat: dict[str, Any]) -> str:
    """The session's heat level with its target, and the pad temperature: ``low (target 38 °C,
    pad 31.2 °C)``; ``off (pad 24.0 °C)`` without a target."""
    temp = heat.get("temp_c")
    pad = f"pad {'-' if temp is None else f'{temp:.1f}'} °C"
    level = heat.get("level") or "-"
    target = heat.get("target_c") or 0.0
    if level == "off" or target <= 0.0:
        return f"{level} ({pad})"
    return f"{level} (target {target:g} °C, {pad})"


class LiveView:
    def __init__(self, controller: Any, config: ChairConfig, program: Program) -> None:
        self.c = controller
        self.config = config
        self.program = program
        self.console = Console()

    def render(self) -> Panel:
        st = self.c.state()
        tl = self.c.telemetry() or {}
        zones = {z: tuple(v) for z, v in (st.get("zones") or {}).items()}
        t = Table.grid(padding=(0, 2))
        t.add_column(style="bold")
        t.add_column()
        t.add_row("program", f"{self.program.title} ({self.program.name})")
        t.add_row("state", st["state"])
        step = st.get("step")
        manual = st.get("manual")
        if manual:  # manual mode (docs/chair.md §8): what the user steers, no steps to count
            t.add_row(
                "manual",
                f"{manual['technique']} · {manual['area']} at {manual['zone']} · "
                f"tempo {manual['tempo']} · {manual['width']}",
            )
        else:
            t.add_row(
                "step",
                "-"
                if step is None
                else f"{step + 1}/{len(self.program.steps)} {st.get('technique') or ''}",
            )
        t.add_row("zone", st.get("zone") or "-")
        rem = st.get("remaining_s") or 0.0
        t.add_row("time left", f"{int(rem // 60):02d}:{int(rem % 60):02d}")
        intensity = st.get("intensity")
        t.add_row(
            "intensity",
            "-" if intensity is None else f"{intensity}/{self.config.session.max_intensity}",
        )
        t.add_row("heat", heat_text(st["heat"]))
        if tl:
            t.add_row(
                "roller",
                f"y {tl.get('y_mm', 0):7.1f} mm  width {tl.get('width_mm', 0):5.1f}"
                f"  depth {tl.get('depth_mm', 0):4.1f}  knead {tl.get('knead_rpm', 0):5.1f}"
                f" rpm  tap {tl.get('tap_hz', 0):4.1f} Hz",
            )
        if st.get("fault"):
            t.add_row(
                "fault", Text(f"{st['fault']['code']}: {st['fault']['message']}", style="bold red")
            )
        bar = track_bar(
            self.config,
            zones,
            tl.get("y_mm"),
            (tl.get("depth_mm") or 0) > self.config.depth.retracted_mm,
        )
        legend = Text(
            "  ".join(f"{ZONE_MARK[z]} {z}" for z in ZONES if z in zones)
            + "   ● pressing  ○ not pressing",
            style="dim",
        )
        return Panel(
            Group(t, Text("bottom ▕") + bar + Text("▏ top"), legend),
            title="massage chair",
            border_style="cyan",
        )

    async def follow(self, task: asyncio.Future[Any]) -> None:
        with Live(self.render(), console=self.console, refresh_per_second=8) as live:
            while not task.done():
                live.update(self.render())
                await asyncio.sleep(0.125)
            live.update(self.render())


def print_summary(summary: dict[str, Any], args: argparse.Namespace | None = None) -> None:
    console = Console()
    console.print()
    t = Table(title=f"session summary — {summary['program']}", show_lines=False)
    t.add_column("zone")
    t.add_column("planned s", justify="right")
    t.add_column("actual s", justify="right")
    t.add_column("band mm", justify="right")
    for z, d in summary["zone_seconds"].items():
        band = summary["body"]["zones"].get(z)
        t.add_row(
            z,
            f"{d['planned']:.1f}",
            f"{d['actual']:.1f}",
            "" if band is None else f"{band[0]:.0f}–{band[1]:.0f}",
        )
    console.print(t)
    s = summary["safety"]
    ok = "[green]held[/green]" if s["ok"] else "[red]FAILED[/red]"
    console.print(
        f"end: [bold]{summary['end_reason']}[/bold]  program {summary['program_seconds']:.1f} s "
        f"of {summary['minutes'] * 60:.0f} s  sim {summary['sim_seconds']:.1f} s in "
        f"{summary['wall_seconds']:.2f} s wall  shoulder {summary['body']['shoulder_mm']} mm"
    )
    console.print(
        f"safety {ok}: spine clearance min {s['spine_clearance_min_mm']} mm, max speed "
        f"{s['max_speed_mm_s']} mm/s, max accel {s['max_accel_mm_s2']} mm/s², max pad "
        f"{s['max_heat_c']} °C"
    )
    for v in s["violations"]:
        console.print(f"  [red]violation[/red] {v}")
    for f in summary["faults"]:
        console.print(f"  [red]fault[/red] {f['code']} at {f['t']:.2f} s: {f['message']}")
    for n in summary.get("notes", []):
        console.print(f"  note: {n}")
