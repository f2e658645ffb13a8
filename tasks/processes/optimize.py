"""optimize: repair and decimate a model (merging its meshes if asked) into a lighter file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from tasks.processes._params import (
    MergeMode,
    ModelParams,
    OutputExtension,
    OutputStem,
    OutputUnit,
    WebPackagingParams,
)
from tasks.processes._pipeline import (
    PRESET_OUTPUTS,
    PRESETS,
    PipelineStep,
    Ratio,
    RelativeError,
    TriangleBudget,
)

_TARGETS = ("ratio", "triangles", "error")


class Params(ModelParams, WebPackagingParams):
    """Give at most one of `ratio`, `triangles`, `error`; none means `ratio` 0.5."""

    ratio: Ratio = None
    triangles: TriangleBudget = None
    error: RelativeError = None
    extension: OutputExtension = Field("glb", description="Output format, as in `convert_file`")
    filename: OutputStem = Field("optimized", description="Base name of the output file")
    output_unit: OutputUnit = None
    merge: MergeMode = "none"
    steps: list[PipelineStep] | None = Field(
        None,
        min_length=1,
        max_length=50,
        description='The pipeline, in order: `{"step": name, ...options}` items, each'
        " recorded as a job step; names: repair, remove_hidden, find_instances, merge, decimate,"
        " generate_uvs (options: `GET /processes/optimize` params_schema). Replaces ratio,"
        " triangles,"
        " error and merge",
    )
    preset: Literal["web", "ar", "preview"] | None = Field(
        None, description="A named pipeline (see the process doc); instead of `steps`"
    )
    deviation_samples: int = Field(
        5_000,
        ge=0,
        le=1_000_000,
        description="Surface samples for each step's measured deviation (Hausdorff, in"
        " metres); 0 skips the measure on huge models",
    )

    @model_validator(mode="after")
    def _one_target(self):
        given = [name for name in _TARGETS if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"give only one of ratio, triangles, error; got {', '.join(given)}")
        if self.steps is not None or self.preset is not None:
            classic = [*given, *(["merge"] if self.merge != "none" else [])]
            if self.steps is not None and self.preset is not None:
                raise ValueError("give steps or preset, not both")
            if classic:
                raise ValueError(
                    f"{', '.join(classic)} cannot go with steps or preset: make them steps"
                )
        return self

    def save_options(self, ktx2: bool = True, warnings: list[str] | None = None) -> dict:
        """`SaveOptions` keywords: the web packaging asked for, else the preset's. Without
        ``ktx2`` (no basisu encoder on this server) a preset's KTX2 textures become WebP,
        said in ``warnings``; KTX2 the job asks for stays (and fails saying why)."""
        asked = self.web_save_options()
        preset = PRESET_OUTPUTS.get(self.preset or "", {})
        options = {**asked, **{k: v for k, v in preset.items() if k not in self.model_fields_set}}
        job_chose = "texture_format" in self.model_fields_set
        if not ktx2 and options["texture_format"] == "ktx2" and not job_chose:
            options["texture_format"] = "webp"
            if warnings is not None:
                warnings.append(
                    f"the {self.preset} preset wrote textures as WebP, not KTX2: this server"
                    " has no Basis Universal encoder (scripts/setup.sh installs basisu, or"
                    " set PIXYZ_BASISU)"
                )
        return options

    def plan(self) -> list:
        """The steps this job runs: `steps`, the preset's, or repair, merge if asked, decimate."""
        from pydantic import TypeAdapter

        if self.steps is not None:
            return list(self.steps)
        if self.preset is not None:
            return TypeAdapter(list[PipelineStep]).validate_python(PRESETS[self.preset])
        key = {"ratio": "ratio", "triangles": "triangles", "error": "error"}
        classic: list[dict] = [{"step": "repair"}]
        if self.merge != "none":
            classic.append({"step": "merge", "mode": self.merge})
        classic.append({"step": "decimate", **{key[n]: v for n, v in self.target().items()}})
        return TypeAdapter(list[PipelineStep]).validate_python(classic)

    def target(self) -> dict:
        """The one decimation target given, e.g. `{"ratio": 0.5}` (the default)."""
        for name in _TARGETS:
            if getattr(self, name) is not None:
                return {name: getattr(self, name)}
        return {"ratio": 0.5}


def main(pc, params):
    """Make the uploaded model lighter: a pipeline of data-preparation steps, then one file.

    Send the model as the `file` field (any format `convert_file` reads; an archive
    is unpacked and its root model opened). Without `steps` or `preset` the pipeline is
    repair, merge (only if `merge` asks), decimate to `ratio`/`triangles`/`error`.
    Repair welds split vertices, drops broken faces, orients faces and closes small holes;
    decimation collapses edges while keeping UV seams and material borders, once per
    distinct mesh. Unless a merge is asked, the output keeps the parts' names, the tree and
    the instancing (a part placed N times is one mesh placed N times); `merge:
    "by_material"` joins the meshes that share a material, `"all"` makes one mesh.

    `steps` runs any list, e.g. `[{"step": "repair"}, {"step": "decimate", "error":
    0.001}, {"step": "merge", "mode": "by_material"}]`; each item is a job step with its
    own progress record. Steps: `repair`, `remove_hidden` (what no outside view sees, by
    `part`, `mesh` or `triangle`), `find_instances` (copies become one mesh placed N
    times), `merge`, `decimate`, `generate_uvs` (xatlas, for meshes without UVs).
    Presets: `preview` (decimate to 25 %, merge by material), `web` (repair, remove_hidden
    parts, find_instances, decimate to 0.1 % of the diagonal), `ar` (repair, remove_hidden,
    decimate to 100k triangles within 0.2 %, merge by material). `web` also writes a
    meshopt-compressed, quantized GLB with textures of at most 2048 px as KTX2/Basis
    (KHR_texture_basisu; WebP, with a warning, on a server without the basisu encoder),
    `ar` textures of at most 2048 px (give `compression`, `max_texture_size` or
    `texture_format` to override). On as1-oc-214.stp (18 parts, 6,544 triangles) `web`
    keeps the 18 named parts and 5 shared meshes in a GLB about a quarter of the plain one.

    Result: `{"output": "optimized.glb", "files": [every file written],
    "before": {"triangles": n, "vertices": n}, "after": {"triangles": n, "vertices": n},
    "target": {"ratio": 0.5} (without steps or preset), "steps": [{"step", "seconds",
    "triangles": [before, after], "parts": [..], "meshes": [..], "geometry_bytes": [..],
    "deviation": <Hausdorff metres>, "deviation_kind", ...}], "source_unit", "output_unit",
    "warnings": [...]}`. Counts are over placed instances (a part placed twice counts
    twice); `meshes` and `geometry_bytes` count what is stored.
    """
    from tasks.processes._pipeline import describe_record, run_step
    from tasks.processes._shared import describe_scene, frames, load_input
    from tasks.steps.io import SaveOptions, save
    from tasks.steps.io.basisu import find_basisu
    from tasks.steps.units import UNITS

    p = Params.model_validate(params)
    plan, extension, stem = p.plan(), p.extension, p.filename
    pc.progress_set_total(len(plan) + 2)

    scene = load_input(pc.get_input_file(), p.load_options())
    before = counts(scene)
    pc.progress_next(f"Read {describe_scene(scene)}")

    records = []
    for step in plan:
        if step.queue:  # a child task on its queue (remove_hidden: the GPU's, else a CPU)
            info = f"{step.step} as a child task"
            scene, record = pc.tasks.run(
                run_step, step, scene, p.deviation_samples, queue=step.queue, info=info
            )
        else:
            scene, record = run_step(step, scene, p.deviation_samples, tasks=pc.tasks)
        records.append(record)
        pc.progress_next(describe_record(record))
    after = counts(scene)

    output_dir = Path(pc.get_output_dir())
    basisu = pc.get("basisu_executable") or None
    # only glTF outputs take texture_format
    ktx2 = extension not in ("glb", "gltf") or find_basisu(basisu) is not None
    warnings = scene.warnings if textured(scene) else None
    options = SaveOptions(
        output_unit=UNITS[p.output_unit] if p.output_unit else None,
        basisu_executable=basisu,
        **p.save_options(ktx2, warnings),
    )
    written = save(scene, pc.get_output_dir(f"{stem}.{extension}"), options)
    files = [Path(p).relative_to(output_dir).as_posix() for p in written]
    pc.progress_next(f"Wrote {files[0]}")
    classic = p.steps is None and p.preset is None
    return {
        "output": files[0],
        "files": files,
        "before": before,
        "after": after,
        **({"target": p.target()} if classic else {}),
        "steps": records,
        **frames(scene, extension, options),
        "warnings": list(scene.warnings),
    }


def counts(scene) -> dict[str, int]:
    """Triangles and vertices over every placed mesh instance."""
    geometry = scene.trimesh_scene.geometry
    vertices = 0
    for node in scene.trimesh_scene.graph.nodes_geometry:
        mesh = geometry.get(scene.trimesh_scene.graph[node][1])
        if getattr(mesh, "faces", None) is not None:
            vertices += len(mesh.vertices)
    return {"triangles": scene.triangle_count, "vertices": vertices}


_TEXTURE_SLOTS = (
    "image",
    "baseColorTexture",
    "metallicRoughnessTexture",
    "normalTexture",
    "occlusionTexture",
    "emissiveTexture",
)


def textured(scene) -> bool:
    """Whether any mesh's material has a texture image."""
    for geometry in scene.trimesh_scene.geometry.values():
        material = getattr(getattr(geometry, "visual", None), "material", None)
        if any(getattr(material, slot, None) is not None for slot in _TEXTURE_SLOTS):
            return True
    return False
