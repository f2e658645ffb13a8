"""Benchmarks of the point-cloud formats: time and peak memory of load + save and thumbnails.

Each case runs in a fresh Python process, so its peak resident memory (``ru_maxrss``) is
its own; the imports' share is measured first and reported apart. Cases: the largest
point cloud in ``tests/data`` and a LAS of 20 million points (written here, a million
at a time, into a temporary folder: ~500 MB of disk), converted to GLB with
``max_points`` and drawn as four 512-pixel thumbnails. Run from the repository root::

    .venv/bin/python bench/formats.py              # 20 M points
    .venv/bin/python bench/formats.py 5000000      # a smaller huge LAS
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
POINT_CLOUDS = ("e57", "las", "laz", "pts", "xyz")

_WRITE = textwrap.dedent(
    """
    import sys
    import laspy, numpy as np

    header = laspy.LasHeader(point_format=2, version="1.2")
    header.scales, header.offsets = [0.01] * 3, [500000.0, 4000000.0, 0.0]
    rng = np.random.default_rng(1)
    with laspy.open(sys.argv[1], mode="w", header=header) as writer:
        for start in range(0, int(sys.argv[2]), 1_000_000):
            count = min(1_000_000, int(sys.argv[2]) - start)
            points = laspy.ScaleAwarePointRecord.zeros(count, header=header)
            x, y = rng.uniform(0, 4000, count), rng.uniform(0, 5000, count)
            points.x, points.y, points.z = 500000 + x, 4000000 + y, 0.01 * x
            points.red = (x / 4000 * 255).astype(np.uint16)
            writer.write_points(points)
    """
)

_CASE = textwrap.dedent(
    """
    import json, resource, sys, time
    from pathlib import Path
    from tasks.steps.io import LoadOptions, load, save
    from tasks.steps.render import RenderOptions, render_views
    import tasks.steps.io.points, tasks.steps.io.gltf, pye57, laspy

    def peak():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    path, out, max_points, method = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    imports = peak()
    limit = None if max_points == "all" else int(max_points)
    options = LoadOptions(max_points=limit, subsample=method)
    started = time.perf_counter()
    scene = load(path, options)
    save(scene, out)
    converted = time.perf_counter() - started
    after_convert = peak()
    started = time.perf_counter()
    render_views(scene, RenderOptions(width=512, height=512))
    rendered = time.perf_counter() - started
    points = sum(len(g.vertices) for g in scene.trimesh_scene.geometry.values())
    print(json.dumps({"points": points, "triangles": scene.triangle_count, "convert_s": converted, "render_s": rendered,
                      "imports_mib": imports, "convert_mib": after_convert, "peak_mib": peak()}))
    """
)


def run_case(path: Path, out: Path, max_points: str, method: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _CASE, str(path), str(out), max_points, method],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(huge: int = 20_000_000) -> None:
    largest = max(
        (p for p in DATA.rglob("*") if p.suffix.lstrip(".").lower() in POINT_CLOUDS),
        key=lambda p: p.stat().st_size,
    )
    # the largest IFC and Rhino models too (meshes: the vertex and triangle counts)
    models = [
        max(DATA.glob(f"{kind}/*.{kind}"), key=lambda p: p.stat().st_size)
        for kind in ("ifc", "3dm")
        if any(DATA.glob(f"{kind}/*.{kind}"))
    ]
    print(
        "| case | points or vertices kept | triangles | load+save GLB (s) | thumbnails (s) |"
        " peak MiB after load+save / after thumbnails (imports) |"
    )
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="bench-formats-") as folder:
        folder = Path(folder)
        cases = [(f"{model.relative_to(DATA)}", model, "all", "random") for model in models]
        cases.append((f"{largest.relative_to(DATA)} (all points)", largest, "all", "random"))
        if huge:
            big = folder / "huge.las"
            subprocess.run([sys.executable, "-c", _WRITE, str(big), str(huge)], check=True)
            cases += [
                (f"{huge:,}-point LAS, max_points {n:,} {method}", big, str(n), method)
                for n, method in ((1_000_000, "random"), (1_000_000, "voxel"), (200_000, "random"))
            ]
        for label, path, max_points, method in cases:
            row = run_case(path, folder / "out.glb", max_points, method)
            print(
                f"| {label} | {row['points']:,} | {row['triangles']:,} | {row['convert_s']:.2f}"
                f" | {row['render_s']:.2f} | {row['convert_mib']:.0f} / {row['peak_mib']:.0f}"
                f" ({row['imports_mib']:.0f}) |"
            )


if __name__ == "__main__":
    # an argument sets the size of the generated LAS; 0 skips it (the other rows only)
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000_000)
