"""generate_lods: levels of detail of a model, one GLB per ratio, computed in parallel child tasks."""

from __future__ import annotations

import itertools
from pathlib import Path

DEFAULT_RATIOS = (1.0, 0.5, 0.25, 0.1)
MAX_LODS = 10


def main(pc, params):
    """Write levels of detail of the uploaded model: `lod0.glb` (the finest) to `lodN.glb`.

    Send the model as the `file` field (any format `convert_file` reads; an archive
    is unpacked and its root model opened). Each level is decimated from the model
    as read, in its own child task (listed in the job's `children`), all at once.

    Params:
    - `ratios` (list of 1-10 numbers, each 0 < r <= 1, strictly decreasing, default
      `[1, 0.5, 0.25, 0.1]`): share of the triangles each level keeps; 1 keeps the
      model as it is (repaired).

    Outputs: `lod0.glb` ... `lod<N-1>.glb`, one per ratio, in the order given.

    Result: `{"lods": [{"file": "lod0.glb", "ratio": 1.0, "triangles": <count>},
    ...], "triangles": <count as read>}`.
    """
    import ray

    from tasks.processes._shared import describe_scene, load_input

    ratios = read_ratios(params.get("ratios", list(DEFAULT_RATIOS)))
    pc.progress_set_total(3)

    scene = load_input(pc.get_input_file())
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


def read_ratios(value) -> list[float]:
    """`params.ratios` checked; raises OptionsError naming what is wrong."""
    from tasks.steps.errors import OptionsError

    def is_ratio(r) -> bool:
        return isinstance(r, int | float) and not isinstance(r, bool) and 0 < r <= 1

    if (
        not isinstance(value, list)
        or not 1 <= len(value) <= MAX_LODS
        or not all(is_ratio(r) for r in value)
    ):
        raise OptionsError(
            f"params.ratios must be a list of 1 to {MAX_LODS} numbers in (0, 1], got {value!r}"
        )
    if any(a <= b for a, b in itertools.pairwise(value)):
        raise OptionsError(f"params.ratios must be strictly decreasing, got {value!r}")
    return [float(r) for r in value]
