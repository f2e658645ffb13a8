"""optimize: repair and decimate a model (merging its meshes if asked) into a lighter file."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from tasks.processes._params import (
    MergeMode,
    ModelParams,
    OutputExtension,
    OutputStem,
    OutputUnit,
)

_TARGETS = ("ratio", "triangles", "error")


class Params(ModelParams):
    """Give at most one of `ratio`, `triangles`, `error`; none means `ratio` 0.5."""

    ratio: float | None = Field(None, gt=0, le=1, description="Share of the triangles to keep")
    triangles: int | None = Field(
        None, ge=1, le=1_000_000_000, description="Triangle budget for the whole model"
    )
    error: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Largest deviation allowed, as a fraction of the model's bounding-box"
        " diagonal (0.001: 1 mm on a 1 m part); simplifies as far as that allows",
    )
    extension: OutputExtension = Field("glb", description="Output format, as in `convert_file`")
    filename: OutputStem = Field("optimized", description="Base name of the output file")
    output_unit: OutputUnit = None
    merge: MergeMode = "none"

    @model_validator(mode="after")
    def _one_target(self):
        given = [name for name in _TARGETS if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"give only one of ratio, triangles, error; got {', '.join(given)}")
        return self

    def target(self) -> dict:
        """The one decimation target given, e.g. `{"ratio": 0.5}` (the default)."""
        for name in _TARGETS:
            if getattr(self, name) is not None:
                return {name: getattr(self, name)}
        return {"ratio": 0.5}


def main(pc, params):
    """Make the uploaded model lighter: repair it, merge its meshes if asked, then decimate.

    Send the model as the `file` field (any format `convert_file` reads; an archive
    is unpacked and its root model opened). Repair welds split vertices, drops
    broken faces, orients faces and closes small holes; decimation collapses edges
    while keeping UV seams and material borders, once per distinct mesh. By default
    (`merge: "none"`) the output keeps the parts' names, the tree and the instancing
    (a part placed N times is one mesh placed N times); `merge: "by_material"` joins
    the meshes that share a material, `"all"` makes one mesh (fewer draw calls).

    Result: `{"output": "optimized.glb", "files": [every file written],
    "before": {"triangles": n, "vertices": n}, "after": {"triangles": n,
    "vertices": n}, "target": {"ratio": 0.5}, "warnings": [...]}`. Counts are over
    placed instances (a part placed twice counts twice).
    """
    from tasks.processes._shared import describe_scene, frames, load_input
    from tasks.steps.decimate import DecimateOptions, decimate
    from tasks.steps.io import SaveOptions, save
    from tasks.steps.merge import MergeOptions, merge
    from tasks.steps.repair import repair
    from tasks.steps.units import UNITS

    p = Params.model_validate(params)
    target, extension, stem = p.target(), p.extension, p.filename
    pc.progress_set_total(5)

    scene = load_input(pc.get_input_file(), p.load_options())
    before = counts(scene)
    pc.progress_next(f"Read {describe_scene(scene)}")

    scene = repair(scene)
    pc.progress_next(f"Repaired: {scene.triangle_count:,} triangles")

    if p.merge == "none":
        pc.progress_next(f"Kept {_parts(scene)} (no merge asked)")
    else:
        scene = merge(scene, MergeOptions(mode=p.merge))
        pc.progress_next(f"Merged ({p.merge}) into {_parts(scene)}")

    key = {"ratio": "ratio", "triangles": "triangles", "error": "max_error"}
    scene = decimate(scene, DecimateOptions(**{key[name]: v for name, v in target.items()}))
    after = counts(scene)
    pc.progress_next(f"Decimated: {before['triangles']:,} -> {after['triangles']:,} triangles")

    output_dir = Path(pc.get_output_dir())
    options = SaveOptions(output_unit=UNITS[p.output_unit] if p.output_unit else None)
    written = save(scene, pc.get_output_dir(f"{stem}.{extension}"), options)
    files = [Path(p).relative_to(output_dir).as_posix() for p in written]
    pc.progress_next(f"Wrote {files[0]}")
    return {
        "output": files[0],
        "files": files,
        "before": before,
        "after": after,
        "target": target,
        **frames(scene, extension, options),
        "warnings": list(scene.warnings),
    }


def _parts(scene) -> str:
    """``5 mesh(es) on 18 node(s)``: distinct meshes and their placements."""
    placed = len(scene.trimesh_scene.graph.nodes_geometry)
    return f"{len(scene.trimesh_scene.geometry):,} mesh(es) on {placed:,} node(s)"


def counts(scene) -> dict[str, int]:
    """Triangles and vertices over every placed mesh instance."""
    geometry = scene.trimesh_scene.geometry
    vertices = 0
    for node in scene.trimesh_scene.graph.nodes_geometry:
        mesh = geometry.get(scene.trimesh_scene.graph[node][1])
        if getattr(mesh, "faces", None) is not None:
            vertices += len(mesh.vertices)
    return {"triangles": scene.triangle_count, "vertices": vertices}
