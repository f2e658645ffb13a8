"""Benchmarks of the web data-preparation steps, side by side with gltfpack and gltf-transform.

On the largest assemblies of ``tests/data`` and the generated housing (500 bolts inside a
closed box, ``tests/steps/test_remove_hidden.py``), for hidden-part removal, compression
and simplification: time, triangles and GLB bytes before and after, and the symmetric
Hausdorff distance over the bounding-box diagonal between the scene as read and the
output as read back (`tasks.steps.hausdorff`; for remove_hidden it is how far the removed
parts lay from what stays). Peers run on the same GLB input: ``gltfpack -cc`` and
``-si 0.5``, ``gltf-transform meshopt`` and ``simplify --ratio 0.5``; their times are the
whole command (node start-up and GLB I/O included), ours the step plus writing the GLB.
Peers are found on PATH, or through ``GLTFPACK`` / ``GLTF_TRANSFORM``
(``npm install gltfpack @gltf-transform/cli``). Prints one Markdown table::

    .venv/bin/python bench/dataprep.py            # every model
    .venv/bin/python bench/dataprep.py housing    # one model
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
sys.path.insert(0, str(ROOT))

from tasks.steps.hausdorff import hausdorff_distance  # noqa: E402
from tasks.steps.io import SaveOptions, load, save  # noqa: E402
from tasks.steps.scene import Scene  # noqa: E402


@dataclass(frozen=True)
class Row:
    model: str
    operation: str
    tool: str
    seconds: float
    triangles: tuple[int, int]
    size: tuple[int, int]
    deviation: float | None
    note: str = ""


def housing() -> Scene:
    path = ROOT / "tests" / "steps" / "test_remove_hidden.py"
    spec = importlib.util.spec_from_file_location("housing_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.housing_with_bolts()


MODELS = {
    "housing": housing,
    "as1-oc-214.stp": lambda: load(DATA / "step" / "as1-oc-214.stp"),
    "2CylinderEngine": lambda: load(
        DATA / "gltf" / "2CylinderEngine_draco" / "2CylinderEngine.gltf"
    ),
    "cube_gears.3mf": lambda: load(DATA / "3mf" / "cube_gears.3mf"),
    "CesiumMilkTruck": lambda: load(DATA / "glb" / "CesiumMilkTruck.glb"),
}


def world(source) -> object:
    """All placed triangles of a scene or a GLB, in world space, as one mesh."""
    scene = load(source) if isinstance(source, Path) else source
    return scene.trimesh_scene.to_geometry()


def deviation(reference, result) -> float:
    diagonal = float(np.linalg.norm(np.ptp(reference.vertices, axis=0)))
    return hausdorff_distance(reference, result, samples=20_000) / diagonal


def peer(name: str, variable: str) -> str | None:
    return os.environ.get(variable) or shutil.which(name)


def run_peer(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    return time.perf_counter() - start


def measure(model: str, scene: Scene, folder: Path) -> list[Row]:
    from tasks.steps.decimate import DecimateOptions, decimate
    from tasks.steps.remove_hidden import RemoveHiddenOptions, remove_hidden
    from tasks.steps.repair import RepairOptions, repair

    source = folder / f"{model}.glb"
    save(scene.copy(), source)
    reference = world(source)
    before = (scene.triangle_count, source.stat().st_size)
    # the measure's floor: the distance of the input to itself (trimesh's closest-point on
    # thin CAD triangles is off by up to ~1e-4 of the diagonal)
    floor = deviation(reference, reference)
    rows = [Row(model, "input", "—", 0.0, (before[0],) * 2, (before[1],) * 2, floor, "floor")]

    def ours(operation: str, tool: str, step, options: SaveOptions | None = None, note=""):
        out = folder / f"{model}-{operation}-{tool}.glb".replace(" ", "_")
        copy = scene.copy()
        start = time.perf_counter()
        result = step(copy)
        save(result, out, options or SaveOptions())
        seconds = time.perf_counter() - start
        rows.append(
            Row(
                model,
                operation,
                tool,
                seconds,
                (before[0], result.triangle_count),
                (before[1], out.stat().st_size),
                deviation(reference, world(out)),
                note,
            )
        )

    def theirs(operation: str, tool: str, command: list[str], out: Path, note=""):
        seconds = run_peer(command)
        again = load(out)
        rows.append(
            Row(
                model,
                operation,
                tool,
                seconds,
                (before[0], again.triangle_count),
                (before[1], out.stat().st_size),
                deviation(reference, world(again)),
                note,
            )
        )

    # 1. hidden-part removal, both backends
    for backend in ("gl", "embree"):
        report: dict = {}

        def hide(s, backend=backend, report=report):
            return remove_hidden(s, RemoveHiddenOptions(backend=backend), report)

        ours("remove_hidden part", f"ours {backend}", hide)
        rows[-1] = replace(rows[-1], note=f"{report['parts_removed']} parts removed")
    report = {}
    ours(
        "remove_hidden triangle",
        "ours embree",
        lambda s: remove_hidden(s, RemoveHiddenOptions(level="triangle", backend="embree"), report),
    )

    # 2. compression
    ours("compress", "ours meshopt", lambda s: s, SaveOptions(compression="meshopt"))
    ours("compress", "ours draco", lambda s: s, SaveOptions(compression="draco"))
    gltfpack, transform = peer("gltfpack", "GLTFPACK"), peer("gltf-transform", "GLTF_TRANSFORM")
    if gltfpack:
        out = folder / f"{model}-gltfpack-cc.glb"
        theirs(
            "compress", "gltfpack -cc", [gltfpack, "-i", str(source), "-o", str(out), "-cc"], out
        )
    if transform:
        out = folder / f"{model}-gltf-transform-meshopt.glb"
        theirs(
            "compress", "gltf-transform meshopt", [transform, "meshopt", str(source), str(out)], out
        )

    # 3. simplification to half
    def halve(s):
        return decimate(repair(s, RepairOptions(fill_holes=False)), DecimateOptions(ratio=0.5))

    ours("simplify 0.5", "ours decimate", halve)
    if gltfpack:
        out = folder / f"{model}-gltfpack-si.glb"
        command = [gltfpack, "-i", str(source), "-o", str(out), "-si", "0.5", "-noq"]
        theirs("simplify 0.5", "gltfpack -si 0.5", command, out)
    if transform:
        out = folder / f"{model}-gltf-transform-simplify.glb"
        command = [transform, "simplify", str(source), str(out), "--ratio", "0.5"]
        theirs("simplify 0.5", "gltf-transform simplify", command, out)
    return rows


def table(rows: list[Row]) -> str:
    lines = [
        "| model | operation | tool | time s | triangles | GLB bytes | Hausdorff / diag | note |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        ratio = row.size[1] / row.size[0]
        error = "—" if row.deviation is None else f"{row.deviation:.1e}"
        lines.append(
            f"| {row.model} | {row.operation} | {row.tool} | {row.seconds:.2f} "
            f"| {row.triangles[0]:,} → {row.triangles[1]:,} "
            f"| {row.size[0]:,} → {row.size[1]:,} ({ratio:.0%}) | {error} | {row.note} |"
        )
    return "\n".join(lines)


def main(names: list[str]) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in names or list(MODELS):
            scene = MODELS[name]()
            rows += measure(name, scene, Path(folder))
    print(table(rows))


if __name__ == "__main__":
    main(sys.argv[1:])
