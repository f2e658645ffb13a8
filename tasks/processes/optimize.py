"""optimize: repair, merge and decimate a model into a lighter file that looks the same."""

from __future__ import annotations

from pathlib import Path

_TARGETS = ("ratio", "triangles", "error")


def main(pc, params):
    """Make the uploaded model lighter: repair it, merge its meshes, then decimate.

    Send the model as the `file` field (any format `convert_file` reads; an archive
    is unpacked and its root model opened). Repair welds split vertices, drops
    broken faces, orients faces and closes small holes; merge joins meshes that share
    a material; decimation collapses edges while keeping UV seams and material borders.

    Params (give at most one of `ratio`, `triangles`, `error`; none means `ratio` 0.5):
    - `ratio` (number, 0 < ratio <= 1, default 0.5): share of the triangles to keep.
    - `triangles` (integer, >= 1): triangle budget for the whole model.
    - `error` (number, 0 < error <= 1): largest deviation allowed, as a fraction of
      the model's bounding-box diagonal (0.001: 1 mm on a 1 m part); simplifies as
      far as that allows.
    - `extension` (string, default `"glb"`): output format, as in `convert_file`.
    - `filename` (string, default `"optimized"`): base name of the output file.

    Result: `{"output": "optimized.glb", "files": [every file written],
    "before": {"triangles": n, "vertices": n}, "after": {"triangles": n,
    "vertices": n}, "target": {"ratio": 0.5}, "warnings": [...]}`. Counts are over
    placed instances (a part placed twice counts twice).
    """
    from tasks.processes._shared import (
        describe_scene,
        load_input,
        output_extension,
        output_stem,
    )
    from tasks.steps.decimate import DecimateOptions, decimate
    from tasks.steps.io import save
    from tasks.steps.merge import merge
    from tasks.steps.repair import repair

    target = read_target(params)
    extension = output_extension(params.get("extension", "glb"))
    stem = output_stem(params.get("filename", "optimized"))
    pc.progress_set_total(5)

    scene = load_input(pc.get_input_file())
    before = counts(scene)
    pc.progress_next(f"Read {describe_scene(scene)}")

    scene = repair(scene)
    pc.progress_next(f"Repaired: {scene.triangle_count:,} triangles")

    scene = merge(scene)
    pc.progress_next(f"Merged into {len(scene.trimesh_scene.geometry):,} mesh(es)")

    key = {"ratio": "ratio", "triangles": "triangles", "error": "max_error"}
    scene = decimate(scene, DecimateOptions(**{key[name]: v for name, v in target.items()}))
    after = counts(scene)
    pc.progress_next(f"Decimated: {before['triangles']:,} -> {after['triangles']:,} triangles")

    output_dir = Path(pc.get_output_dir())
    written = save(scene, pc.get_output_dir(f"{stem}.{extension}"))
    files = [Path(p).relative_to(output_dir).as_posix() for p in written]
    pc.progress_next(f"Wrote {files[0]}")
    return {
        "output": files[0],
        "files": files,
        "before": before,
        "after": after,
        "target": target,
        "warnings": list(scene.warnings),
    }


def read_target(params: dict) -> dict:
    """The one decimation target the user gave (default ratio 0.5); raises OptionsError."""
    from tasks.steps.errors import OptionsError

    given = [name for name in _TARGETS if params.get(name) is not None]
    if len(given) > 1:
        raise OptionsError(
            f"give only one of params.ratio, params.triangles, params.error; got {', '.join(given)}"
        )
    name = given[0] if given else "ratio"
    value = params.get(name, 0.5)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if name == "triangles":
        if not number or not 1 <= value <= 1_000_000_000 or value != int(value):
            raise OptionsError(
                f"params.triangles must be an integer between 1 and 1000000000, got {value!r}"
            )
        return {"triangles": int(value)}
    if not number or not 0 < value <= 1:
        raise OptionsError(f"params.{name} must be a number in (0, 1], got {value!r}")
    return {name: float(value)}


def counts(scene) -> dict[str, int]:
    """Triangles and vertices over every placed mesh instance."""
    geometry = scene.trimesh_scene.geometry
    vertices = 0
    for node in scene.trimesh_scene.graph.nodes_geometry:
        mesh = geometry.get(scene.trimesh_scene.graph[node][1])
        if getattr(mesh, "faces", None) is not None:
            vertices += len(mesh.vertices)
    return {"triangles": scene.triangle_count, "vertices": vertices}
