"""generate_lods: levels of detail of a model, one GLB per ratio, computed in parallel child tasks."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator

from tasks.processes._params import ModelParams

DEFAULT_RATIOS = (1.0, 0.5, 0.25, 0.1)
MAX_LODS = 10


class Params(ModelParams):
    ratios: list[Annotated[float, Field(gt=0, le=1)]] = Field(
        list(DEFAULT_RATIOS),
        min_length=1,
        max_length=MAX_LODS,
        description="Share of the triangles each level keeps, strictly decreasing; 1 keeps the"
        " model as it is (repaired)",
    )

    @field_validator("ratios")
    @classmethod
    def _decreasing(cls, ratios: list[float]) -> list[float]:
        if any(a <= b for a, b in itertools.pairwise(ratios)):
            raise ValueError(f"ratios must be strictly decreasing, got {ratios}")
        return ratios


def main(pc, params):
    """Write levels of detail of the uploaded model: `lod0.glb` (the finest) to `lodN.glb`.

    Send the model as the `file` field (any format `convert_file` reads; an archive
    is unpacked and its root model opened). Each level is decimated from the model
    as read, in its own child task (listed in the job's `children`), all at once.

    Outputs: `lod0.glb` ... `lod<N-1>.glb`, one per ratio, in the order given.

    Result: `{"lods": [{"file": "lod0.glb", "ratio": 1.0, "triangles": <count>},
    ...], "triangles": <count as read>}`.
    """
    import ray

    from tasks.processes._shared import describe_scene, load_input

    p = Params.model_validate(params)
    ratios = p.ratios
    pc.progress_set_total(3)

    scene = load_input(pc.get_input_file(), p.load_options())
    pc.progress_next(f"Read {describe_scene(scene)}")

    # one copy in the object store, shared by every child
    shared = ray.put(scene)
    refs = [
        pc.tasks.submit(make_lod, shared, ratio, info=f"LOD {index}: ratio {ratio:g}")
        for index, ratio in enumerate(ratios)
    ]
    lods = pc.tasks.gather(refs)
    pc.progress_next(
        "Decimated " + ", ".join(f"{lod['triangles']:,}" for lod in lods) + " triangles"
    )

    entries = []
    for index, (ratio, lod) in enumerate(zip(ratios, lods, strict=True)):
        name = f"lod{index}.glb"
        Path(pc.get_output_dir(name)).write_bytes(lod["glb"])
        entries.append({"file": name, "ratio": ratio, "triangles": lod["triangles"]})
    pc.progress_next(f"Wrote {len(entries)} GLB files")
    return {"lods": entries, "triangles": scene.triangle_count}


def make_lod(scene, ratio: float) -> dict:
    """One level (a child task): ``{"glb": <bytes>, "triangles": n}``."""
    from tasks.processes._shared import glb_bytes
    from tasks.steps.lods import lod_one

    lod = lod_one(scene, ratio)
    return {"glb": glb_bytes(lod), "triangles": lod.triangle_count}
