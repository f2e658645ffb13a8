"""The data-preparation pipeline `optimize` runs: one typed model per step, presets, step records.

A job's ``params.steps`` is an ordered list of ``{"step": name, ...options}``; each item is
validated at submit against its step's model below (an unknown name or option is a 400
naming it), and `run_step` runs it on the scene and returns what it did:

    {"step": "decimate", "seconds": 0.41, "triangles": [6544, 3272], "parts": [18, 18],
     "meshes": [5, 5], "geometry_bytes": [188_424, 94_392], "deviation": 0.00012,
     "deviation_kind": "symmetric", ...what the step itself reports}

``deviation`` is the Hausdorff distance between the scene before and after the step, in
metres (sampled per distinct mesh: `tasks.steps.hausdorff`; its resolution on CAD
tessellations is about 0.1 mm): symmetric for steps that reshape surfaces (decimate),
one-sided (how far what is left lies from the input) for steps that remove parts, and
absent for steps that move no surface (repair, merge).

Adding a step: a model with ``step: Literal["name"]`` and ``run(scene, report)``, listed in
`PipelineStep`. Presets (`PRESETS`) are lists of such steps, documented in `optimize`.
The module name starts with `_`, so the registry does not offer it as a process.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import ConfigDict, Field, model_validator

from tasks.processes._params import ProcessParams


class _Step(ProcessParams):
    """Base of every step model: options are exact, unknown ones refused."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    queue: ClassVar[str | None] = None
    """The queue a step runs on as a child task (``gpu``: with the CPU fallback every queue
    has); None: in the job's own task."""

    deviation_kind: ClassVar[str | None] = "symmetric"
    """How the step's deviation is measured: ``symmetric``, ``one_sided`` (steps that only
    remove), or None (steps that move no surface: merge, instancing, UVs)."""

    def run(self, scene, report: dict):  # pragma: no cover - each step defines it
        raise NotImplementedError

    def fan_out(self, scene, report: dict, tasks):
        """`run` with the job's child tasks at hand (`pc.tasks`), for steps that spread a big
        scene over them (decimate); the others gain nothing and just `run`."""
        return self.run(scene, report)


class RepairStep(_Step):
    """Weld split vertices, drop broken faces, orient faces, close small holes."""

    step: Literal["repair"]
    # moves vertices by at most its weld tolerance; the holes it closes are counted
    deviation_kind: ClassVar[str | None] = None
    fill_holes: bool = Field(True, description="Close holes of up to `max_hole_edges` edges")
    max_hole_edges: int = Field(100, ge=3, le=10_000, description="Largest hole to close")

    def run(self, scene, report: dict):
        from tasks.steps.repair import RepairOptions, repair

        options = RepairOptions(fill_holes=self.fill_holes, max_hole_edges=self.max_hole_edges)
        return repair(scene, options)


class MergeStep(_Step):
    """Join meshes: fewer draw calls, but part names, tree and instancing are lost."""

    step: Literal["merge"]
    deviation_kind: ClassVar[str | None] = None
    mode: Literal["by_material", "all"] = Field(
        "by_material", description="`by_material`: one mesh per material; `all`: one mesh"
    )

    def run(self, scene, report: dict):
        from tasks.steps.merge import MergeOptions, merge

        return merge(scene, MergeOptions(mode=self.mode))


Ratio = Annotated[float | None, Field(gt=0, le=1, description="Share of the triangles to keep")]
TriangleBudget = Annotated[
    int | None, Field(ge=1, le=1_000_000_000, description="Triangle budget for the whole model")
]
RelativeError = Annotated[
    float | None,
    Field(
        gt=0,
        le=1,
        description="Largest deviation allowed, as a fraction of the model's bounding-box"
        " diagonal (0.001: 1 mm on a 1 m part); simplifies as far as that allows",
    ),
]
"""The decimation targets, shared by the `decimate` step and `optimize`'s own params."""


class DecimateStep(_Step):
    """Collapse edges, keeping UV seams and material borders, once per distinct mesh."""

    step: Literal["decimate"]
    ratio: Ratio = None
    triangles: TriangleBudget = None
    error: RelativeError = None
    lock_border: bool = Field(False, description="Keep open borders in place (no cracks)")

    @model_validator(mode="after")
    def _a_target(self):
        given = [name for name in ("ratio", "triangles") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError("give ratio or triangles, not both (error may go with either)")
        return self

    def run(self, scene, report: dict, fan_out=None):
        from tasks.steps.decimate import DecimateOptions, decimate

        ratio = self.ratio
        if ratio is None and self.triangles is None and self.error is None:
            ratio = 0.5
        options = DecimateOptions(
            ratio=ratio,
            triangles=self.triangles,
            max_error=self.error,
            lock_border=self.lock_border,
        )
        return decimate(scene, options, fan_out)

    def fan_out(self, scene, report: dict, tasks):
        """A big scene's meshes in batches (`FAN_OUT_FROM_TRIANGLES`): one in this task, one
        per free CPU as a child task on the CPU queue; ``report["batches"]`` says how many."""
        from tasks.steps.decimate import FanOut

        def batches_here_and_in_children(fn, batches):
            report["batches"] = len(batches)
            queue = "cpu" if "cpu" in tasks.queue_options else None
            return tasks.map(fn, batches, queue=queue, info="decimate batch", keep_first=True)

        workers = 1 + tasks.free_cpus()
        return self.run(scene, report, FanOut(map=batches_here_and_in_children, workers=workers))


class RemoveHiddenStep(_Step):
    """Remove what no outside viewpoint sees: internal bolts, hidden faces."""

    step: Literal["remove_hidden"]
    queue: ClassVar[str | None] = "gpu"  # ID buffers through EGL on GPU nodes
    deviation_kind: ClassVar[str | None] = "one_sided"
    level: Literal["part", "mesh", "triangle"] = Field(
        "part",
        description="`part`: placed parts never seen; `mesh`: meshes none of whose placements"
        " is seen; `triangle`: parts, then unseen triangles",
    )
    precision: int = Field(256, ge=16, le=4096, description="ID buffer side in pixels")
    views: int = Field(64, ge=1, le=4096, description="Viewing directions on a sphere")
    interior_points: list[Annotated[list[float], Field(min_length=3, max_length=3)]] = Field(
        [],
        max_length=64,
        description="World points (metres, +Y up) to also look out from, for cavities",
    )
    min_pixels: int = Field(1, ge=1, le=1_000_000, description="Pixels that count as seen")
    backend: Literal["auto", "gl", "embree"] = Field(
        "auto", description="`gl` ID buffers, `embree` ray casting, `auto`: GL on a GPU"
    )

    def run(self, scene, report: dict):
        from tasks.steps.remove_hidden import RemoveHiddenOptions, remove_hidden

        options = RemoveHiddenOptions(
            level=self.level,
            precision=self.precision,
            views=self.views,
            interior_points=tuple(tuple(point) for point in self.interior_points),
            min_pixels=self.min_pixels,
            backend=self.backend,
        )
        return remove_hidden(scene, options, report)


class FindInstancesStep(_Step):
    """Make copies of a mesh (bolts, screws) one mesh placed at each copy."""

    step: Literal["find_instances"]
    deviation_kind: ClassVar[str | None] = None
    tolerance: float = Field(
        1e-4, gt=0, le=0.01, description="Vertex distance allowed, a fraction of the part's size"
    )
    max_candidates: int = Field(64, ge=1, le=4096, description="Poses tried per pair")

    def run(self, scene, report: dict):
        from tasks.steps.find_instances import FindInstancesOptions, find_instances

        options = FindInstancesOptions(tolerance=self.tolerance, max_candidates=self.max_candidates)
        return find_instances(scene, options, report)


class GenerateUvsStep(_Step):
    """Unwrap meshes that have no texture coordinates (xatlas)."""

    step: Literal["generate_uvs"]
    deviation_kind: ClassVar[str | None] = None
    overwrite: bool = Field(False, description="Also replace the UVs meshes already have")
    resolution: int = Field(1024, ge=64, le=16384, description="Atlas size in texels")
    padding: int = Field(2, ge=0, le=64, description="Texels between charts")
    texels_per_unit: float | None = Field(
        None, gt=0, le=1e6, description="Texel density per metre; default: fill the atlas"
    )

    def run(self, scene, report: dict):
        from tasks.steps.generate_uvs import GenerateUvsOptions, generate_uvs

        options = GenerateUvsOptions(
            overwrite=self.overwrite,
            resolution=self.resolution,
            padding=self.padding,
            texels_per_unit=self.texels_per_unit,
        )
        return generate_uvs(scene, options, report)


PipelineStep = Annotated[
    RepairStep | RemoveHiddenStep | FindInstancesStep | MergeStep | DecimateStep | GenerateUvsStep,
    Field(discriminator="step"),
]
"""One item of ``params.steps``: the ``step`` key picks the model."""

STEP_NAMES = ("repair", "remove_hidden", "find_instances", "merge", "decimate", "generate_uvs")

PRESETS: dict[str, list[dict[str, Any]]] = {
    # a quick look: light, few draw calls
    "preview": [
        {"step": "decimate", "ratio": 0.25},
        {"step": "merge", "mode": "by_material"},
    ],
    # the web: clean, nothing hidden, copies shared, light, the parts kept for picking
    "web": [
        {"step": "repair"},
        {"step": "remove_hidden", "level": "part"},
        {"step": "find_instances"},
        {"step": "decimate", "error": 0.001},
    ],
    # AR viewers: a firm triangle budget, few draw calls
    "ar": [
        {"step": "repair"},
        {"step": "remove_hidden", "level": "part"},
        {"step": "decimate", "triangles": 100_000, "error": 0.002},
        {"step": "merge", "mode": "by_material"},
    ],
}
"""``params.preset``: named step lists (the expected result on as1-oc-214.stp is in
`optimize`'s docstring)."""


PRESET_OUTPUTS: dict[str, dict[str, Any]] = {
    "web": {"compression": "meshopt", "max_texture_size": 2048, "texture_format": "ktx2"},
    "ar": {"max_texture_size": 2048},
}
"""How each preset writes a glTF output (`SaveOptions` keywords), unless the job says. A
preset's ``ktx2`` becomes ``webp``, with a warning, on a server without the basisu encoder
(`optimize.Params.save_options`)."""


def run_step(step: _Step, scene, deviation_samples: int = 5_000, tasks=None):
    """Run one step; return (the new scene, its record for the job's result).

    ``tasks``: the job's child tasks (`pc.tasks`), which a step may fan out to; None in a
    child task or a script."""
    before = _measure(scene)
    measured = deviation_samples and step.deviation_kind is not None
    reference = _meshes_by_name(scene) if measured else None
    report: dict[str, Any] = {}
    started = time.perf_counter()
    scene = step.run(scene, report) if tasks is None else step.fan_out(scene, report, tasks)
    seconds = time.perf_counter() - started
    after = _measure(scene)
    record: dict[str, Any] = {"step": step.step, "seconds": round(seconds, 3)}
    for key in before:
        record[key] = [before[key], after[key]]
    if reference is not None:
        record["deviation"] = _deviation(reference, scene, step.deviation_kind, deviation_samples)
        record["deviation_kind"] = step.deviation_kind
    record.update(report)
    return scene, record


def describe_record(record: dict) -> str:
    """``decimate: 6,544 -> 3,272 triangles, 18 part(s), 0.41 s``, for progress steps."""
    low, high = record["triangles"]
    parts = record["parts"][1]
    return (
        f"{record['step']}: {low:,} -> {high:,} triangles, {parts:,} part(s),"
        f" {record['seconds']:.2f} s"
    )


def _measure(scene) -> dict[str, int]:
    ts = scene.trimesh_scene
    placed = [ts.graph[node][1] for node in ts.graph.nodes_geometry]
    unique = [ts.geometry[name] for name in dict.fromkeys(placed)]
    return {
        "triangles": scene.triangle_count,
        "parts": len(placed),
        "meshes": len(unique),
        "geometry_bytes": sum(_stored_bytes(geometry) for geometry in unique),
    }


def _stored_bytes(geometry) -> int:
    """What a mesh costs in an uncompressed GLB: float32 positions, normals and UVs,
    uint32 indices (an estimate that does not depend on the output format)."""
    vertices = len(getattr(geometry, "vertices", ()))
    faces = len(getattr(geometry, "faces", ()))
    size = vertices * 12 + faces * 12
    if faces:
        size += vertices * 12  # normals, which every writer here adds
    uv = getattr(getattr(geometry, "visual", None), "uv", None)
    if uv is not None:
        size += vertices * 8
    return int(size)


def _meshes_by_name(scene) -> dict[str, tuple]:
    """{geometry name: (a copy of the mesh, the largest scale it is placed at)}."""
    import trimesh

    from tasks.steps._meshes import max_scale

    ts = scene.trimesh_scene
    found: dict[str, tuple] = {}
    for node in ts.graph.nodes_geometry:
        transform, name = ts.graph[node]
        geometry = ts.geometry[name]
        if not isinstance(geometry, trimesh.Trimesh) or not len(geometry.faces):
            continue
        scale = max_scale(np.asarray(transform))
        if name in found:
            found[name] = (found[name][0], max(found[name][1], scale))
        else:
            mesh = trimesh.Trimesh(geometry.vertices.copy(), geometry.faces.copy(), process=False)
            found[name] = (mesh, scale)
    return found


def _deviation(reference: dict, scene, kind: str, samples: int) -> float | None:
    """The largest Hausdorff distance over the meshes the step changed, in world units,
    measured per distinct mesh (as the steps work); None when the meshes cannot be paired
    (a merge renamed them). ``one_sided``: from what is left to the input."""
    from tasks.steps.hausdorff import hausdorff_distance, one_sided_distance

    after = _meshes_by_name(scene)
    if not after or not set(after) <= set(reference):
        return None
    per_mesh = max(1000, samples // max(len(after), 1))
    worst = 0.0
    for name, (mesh, scale) in after.items():
        original, _ = reference[name]
        unchanged = len(original.faces) == len(mesh.faces) and np.array_equal(
            original.vertices, mesh.vertices
        )
        if unchanged:
            continue
        if kind == "one_sided":
            distance = one_sided_distance(mesh, original, per_mesh)
        else:
            distance = hausdorff_distance(original, mesh, per_mesh)
        worst = max(worst, float(distance) * scale)
    return worst


__all__ = ["PRESET_OUTPUTS", "PRESETS", "STEP_NAMES", "PipelineStep", "describe_record", "run_step"]
