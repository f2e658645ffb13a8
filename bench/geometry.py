"""Benchmarks of the geometry toolbox: how long the heavy steps take on this machine.

Each section is a function returning `Row`s; `main()` runs the sections named
on the command line (all by default) and prints one table with the goal next
to each measurement. Run from the repository root::

    .venv/bin/python bench/geometry.py            # every section
    .venv/bin/python bench/geometry.py render     # one section
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One measurement."""

    section: str
    """Section name, e.g. ``render``."""
    case: str
    """What was measured, with its size."""
    seconds: float
    """Best wall-clock time over the repeats."""
    goal: float | None = None
    """Target in seconds on the 2-core reference machine; None when there is none."""
    note: str = ""
    """Context for the number (device, result size)."""


def _best(function: Callable[[], object], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def render() -> list[Row]:
    """Thumbnails of a 1.31M-triangle sphere: 4 views at 512², upload included."""
    import trimesh

    from tasks.steps.render import RenderOptions, render_views, renderer_info
    from tasks.steps.scene import from_trimesh

    sphere = trimesh.creation.icosphere(subdivisions=8)
    scene = from_trimesh(trimesh.Trimesh(sphere.vertices, sphere.faces, process=False))
    triangles = f"{len(sphere.faces) / 1e6:.2f}M tris"
    device = renderer_info()["summary"]
    start = time.perf_counter()
    render_views(scene)
    first = time.perf_counter() - start
    return [
        Row("render", f"4 views 512², {triangles}, first call", first, 1.5, device),
        Row(
            "render", f"4 views 512², {triangles}", _best(lambda: render_views(scene)), 1.5, device
        ),
        Row(
            "render",
            f"1 view 512², {triangles}",
            _best(lambda: render_views(scene, RenderOptions(views=("iso",)))),
            None,
            device,
        ),
    ]


SECTIONS: dict[str, Callable[[], list[Row]]] = {"render": render}
"""Section name -> function; the command line picks among these."""


def main(argv: list[str] | None = None) -> None:
    """Run the named sections (all when none) and print one table."""
    names = (sys.argv[1:] if argv is None else argv) or list(SECTIONS)
    unknown = [name for name in names if name not in SECTIONS]
    if unknown:
        raise SystemExit(f"unknown section {unknown}; choose from {', '.join(SECTIONS)}")
    rows = [row for name in names for row in SECTIONS[name]()]
    width = max(len(row.case) for row in rows)
    print(f"{'section':<10} {'case':<{width}} {'seconds':>8} {'goal':>6}  note")
    for row in rows:
        goal = f"{row.goal:.2f}" if row.goal is not None else "-"
        print(f"{row.section:<10} {row.case:<{width}} {row.seconds:>8.3f} {goal:>6}  {row.note}")


if __name__ == "__main__":
    main()
