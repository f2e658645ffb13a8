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
        " model as it is (repaired). CAD levels are tessellated afresh from the B-rep",
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
    is unpacked and its root model opened). A mesh's levels are decimated from the model
    as read; a CAD model's (STEP, IGES, BREP) are tessellated afresh from its B-rep with
    a coarser sag, all in the one read, and decimated further only where that still
    leaves more than the ratio's share of triangles (planar faces cannot get lighter).
    Each level is finished in its own child task (listed in the job's `children`), all
    at once.

    Outputs: `lod0.glb` ... `lod<N-1>.glb`, one per ratio, in the order given.

    Result: `{"lods": [{"file": "lod0.glb", "ratio": 1.0, "triangles": <count>,
    "method": "as read"}, ...], "triangles": <count as read>}`; `method` is `as read`,
    `decimated`, `tessellated` or `tessellated and decimated`.
    """
    from dataclasses import replace

    import ray

    from tasks.processes._shared import describe_scene, load_input

    p = Params.model_validate(params)
    ratios = p.ratios
    pc.progress_set_total(3)

    # a CAD reader meshes the B-rep again for each coarser level; mesh readers ignore it
    options = p.load_options()
    fine = options.tessellation
    coarser = tuple(replace(fine, coarsen=fine.coarsen / r) for r in ratios if r < 1)
    scene = load_input(pc.get_input_file(), replace(options, lod_tessellations=coarser))
    pc.progress_next(f"Read {describe_scene(scene)}")

    # one copy of each starting scene in the object store, shared by its children
    plan = level_plan(scene, ratios)
    shared = {id(start): ray.put(start) for start, _, _ in plan}
    refs = [
        pc.tasks.submit(
            make_lod, shared[id(start)], ratio, info=f"LOD {index}: ratio {ratios[index]:g}"
        )
        for index, (start, ratio, _) in enumerate(plan)
    ]
    lods = pc.tasks.gather(refs)
    pc.progress_next("Made " + ", ".join(f"{lod['triangles']:,}" for lod in lods) + " triangles")

    entries = []
    for index, (ratio, lod, (_, _, method)) in enumerate(zip(ratios, lods, plan, strict=True)):
        name = f"lod{index}.glb"
        Path(pc.get_output_dir(name)).write_bytes(lod["glb"])
        entries.append(
            {"file": name, "ratio": ratio, "triangles": lod["triangles"], "method": method}
        )
    pc.progress_next(f"Wrote {len(entries)} GLB files")
    return {"lods": entries, "triangles": scene.triangle_count}


def level_plan(scene, ratios: list[float]) -> list[tuple]:
    """Per ratio: (scene to start from, share of its triangles to keep, method).

    ``scene.lods`` holds the CAD reader's coarser tessellations, one per ratio below 1;
    without them (a mesh) every level starts from ``scene``. They are taken off
    ``scene``, so that each travels to its own child task only.
    """
    tessellated = list(scene.lods)
    scene.lods = []
    if len(tessellated) != sum(ratio < 1 for ratio in ratios):
        return [(scene, ratio, "as read" if ratio >= 1 else "decimated") for ratio in ratios]
    budget = scene.triangle_count
    coarser = iter(tessellated)
    plan = []
    for ratio in ratios:
        if ratio >= 1:
            plan.append((scene, 1.0, "as read"))
            continue
        level = next(coarser)
        have, target = level.triangle_count, ratio * budget
        if have > target:
            plan.append((level, target / have, "tessellated and decimated"))
        else:
            plan.append((level, 1.0, "tessellated"))
    return plan


def make_lod(scene, ratio: float) -> dict:
    """One level (a child task): ``{"glb": <bytes>, "triangles": n}``."""
    from tasks.processes._shared import glb_bytes
    from tasks.steps.lods import lod_one

    lod = lod_one(scene, ratio)
    return {"glb": glb_bytes(lod), "triangles": lod.triangle_count}
