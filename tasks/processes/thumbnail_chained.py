"""thumbnail_chained: generate_thumbnails as two child tasks, a CPU stage then a render stage.

The job itself only reads the file and writes the outputs. Preparing the
preview (metadata, merge, clean-up and decimation) runs as a child on the `cpu`
queue and drawing as a child on the `gpu` queue, so a cluster spends GPU time
on drawing only. The prepared scene goes from one child to the next through
Ray's object store, never through files.
"""

from __future__ import annotations

from tasks.processes.generate_thumbnails import Params  # the same params  # noqa: F401


def main(pc, params):
    """Render four thumbnails, a light GLB preview and the metadata, in two chained child tasks.

    Same params, outputs and result as `generate_thumbnails`; the work runs as two
    children listed in the job's `children`: "CPU stage" (metadata, merge, and
    repair and decimation when over `max_triangles`; `cpu` queue) then "Render stage" (the four views; `gpu` queue, drawn
    on the CPU where the cluster has no GPU).

    Outputs: `iso.png`, `x.png`, `y.png`, `z.png`, `preview.glb`, `metadata.json`.

    Result: `{"thumbs": {"iso": "iso.png", "x": "x.png", "y": "y.png", "z": "z.png"},
    "preview": {"file": "preview.glb", "size": <bytes>, "triangles": <count>},
    "metadata": {...}, "renderer": "rendered on CPU (llvmpipe)"}`.
    """
    from tasks.processes._shared import describe_scene, load_input
    from tasks.processes.generate_thumbnails import (
        prepare_preview,
        render_thumbnails,
        write_outputs,
    )

    settings = Params.model_validate(params)
    pc.progress_set_total(4)

    scene = load_input(pc.get_input_file(), settings.load_options())
    pc.progress_next(f"Read {describe_scene(scene)}")

    prepared = pc.tasks.run(
        prepare_preview,
        scene,
        settings,
        queue="cpu",
        info="CPU stage: metadata, merge, repair and decimate",
    )
    pc.progress_next(
        f"Preview ready: {prepared['triangles_before']:,} -> {prepared['triangles']:,} triangles"
    )

    pngs, renderer = pc.tasks.run(
        render_thumbnails,
        prepared["scene"],
        settings,
        queue="gpu",
        info=f"Render stage: {settings.width}x{settings.height} views",
    )
    pc.progress_next(f"Rendered {len(pngs)} views, {renderer}")

    result = write_outputs(pc, pngs, prepared, renderer)
    pc.progress_next(f"Wrote {len(pngs)} thumbnails, preview.glb and metadata.json")
    return result
