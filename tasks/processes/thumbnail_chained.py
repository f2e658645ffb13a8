"""thumbnail_chained: generate_thumbnails as two child tasks, a CPU stage then a render stage.

The job itself only reads the file and writes the outputs. Preparing the
preview (metadata, merge, clean-up and decimation) runs as a child on the `cpu`
queue and drawing as a child on the `gpu` queue, so a cluster spends GPU time
on drawing only. The prepared scene goes from one child to the next through
Ray's object store, never through files.
"""

from __future__ import annotations


def main(pc, params):
    """Render four thumbnails, a light GLB preview and the metadata, in two chained child tasks.

    Same params, outputs and result as `generate_thumbnails`; the work runs as two
    children listed in the job's `children`: "CPU stage" (metadata, merge, and
    repair and decimation when over `max_triangles`; `cpu` queue) then "Render stage" (the four views; `gpu` queue, drawn
    on the CPU where the cluster has no GPU).

    Params:
    - `width` (integer, 16-4096, default 512): thumbnail width in pixels.
    - `height` (integer, 16-4096, default 512): thumbnail height in pixels.
    - `max_triangles` (integer, 1000-10000000, default 500000): the preview GLB is
      decimated to at most this many triangles.
    - `up_axis` (string, `"auto"`, `"y"` or `"z"`, default `"auto"`): the model's up
      axis; auto means Z for CAD, 3MF and STL, Y for the rest.

    Outputs: `iso.png`, `x.png`, `y.png`, `z.png`, `preview.glb`, `metadata.json`.

    Result: `{"thumbs": {"iso": "iso.png", "x": "x.png", "y": "y.png", "z": "z.png"},
    "preview": {"file": "preview.glb", "size": <bytes>, "triangles": <count>},
    "metadata": {...}, "renderer": "rendered on CPU (llvmpipe)"}`.
    """
    from tasks.processes._shared import describe_scene, load_input
    from tasks.processes.generate_thumbnails import (
        prepare_preview,
        read_params,
        render_thumbnails,
        write_outputs,
    )

    settings = read_params(params)
    pc.progress_set_total(4)

    scene = load_input(pc.get_input_file())
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
