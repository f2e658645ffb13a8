"""generate_thumbnails: four PNG views, a light GLB preview and the metadata of a model.

The stages are module-level functions so `thumbnail_chained` can run the same
work as child tasks: `prepare_preview` (CPU: metadata, merge, clean-up and
decimation, GLB encoding) and `render_thumbnails` (OpenGL, GPU when there is one).
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field

from tasks.processes._params import MergeMode, ModelParams

QUEUE = "gpu"

VIEW_FILES = {"iso": "iso.png", "x": "x.png", "y": "y.png", "z": "z.png"}
"""Output file of each view, in the order they are drawn."""


class Params(ModelParams):
    """The params of a thumbnail job (`thumbnail_chained` takes the same)."""

    width: int = Field(512, ge=16, le=4096, description="Thumbnail width in pixels")
    height: int = Field(512, ge=16, le=4096, description="Thumbnail height in pixels")
    max_triangles: int = Field(
        500_000,
        ge=1000,
        le=10_000_000,
        description="The preview GLB (and what is drawn) is decimated to at most this many"
        " triangles; smaller models are kept whole",
    )
    merge: MergeMode = "none"


def main(pc, params):
    """Render four thumbnails of the uploaded model, with a light GLB preview and its metadata.

    Send the model as the `file` field (any format `convert_file` reads; an archive
    is unpacked and its root model opened).

    Outputs: `iso.png`, `x.png`, `y.png`, `z.png` (RGBA, transparent background;
    iso from the front-right-top corner, x/y/z looking from that +axis),
    `preview.glb` (the model's parts, names, tree and instancing, merged as `merge`
    asks; over `max_triangles`, welded and decimated to it) and
    `metadata.json`.

    Result: `{"thumbs": {"iso": "iso.png", "x": "x.png", "y": "y.png", "z": "z.png"},
    "preview": {"file": "preview.glb", "size": <bytes>, "triangles": <count>},
    "metadata": {<the model's metadata as read: generate_metadata's, without parts>},
    "renderer": "rendered on CPU (llvmpipe)" or "rendered on GPU (...)"}`.
    """
    from tasks.processes._shared import describe_scene, load_input

    settings = Params.model_validate(params)
    pc.progress_set_total(4)

    scene = load_input(pc.get_input_file(), settings.load_options())
    pc.progress_next(f"Read {describe_scene(scene)}")

    prepared = prepare_preview(scene, settings)
    pc.progress_next(
        f"Prepared the preview: {prepared['triangles_before']:,} -> "
        f"{prepared['triangles']:,} triangles"
    )

    images, renderer = render_thumbnails(prepared["scene"], settings)
    pc.progress_next(
        f"Rendered {len(images)} views of {settings.width}x{settings.height}, {renderer}"
    )

    result = write_outputs(pc, images, prepared, renderer)
    pc.progress_next(f"Wrote {len(images)} thumbnails, preview.glb and metadata.json")
    return result


def prepare_preview(scene, settings: Params) -> dict:
    """The CPU stage: metadata of the model as read, then a light copy for viewing
    (merged if asked, and repaired and decimated when over budget; ``scene`` is consumed).

    Returns ``{"scene": <preview Scene>, "glb": <its GLB bytes>, "metadata": {...},
    "triangles_before": n, "triangles": m}``; every value pickles, so the dict can
    travel through Ray's object store.
    """
    from tasks.processes._shared import glb_bytes
    from tasks.steps.decimate import DecimateOptions, decimate
    from tasks.steps.merge import MergeOptions, merge
    from tasks.steps.metadata import MetadataOptions, metadata
    from tasks.steps.repair import RepairOptions, repair

    # 1. metadata describes the file, so it is taken before anything changes
    facts = metadata(scene, MetadataOptions(parts=False))
    before = scene.triangle_count
    # 2. merged only if asked (a part placed N times stays one mesh); over budget, weld and
    # orient first (the decimator needs welded input) but leave holes open: a preview shows
    # the file as it is
    preview = scene if settings.merge == "none" else merge(scene, MergeOptions(settings.merge))
    if preview.triangle_count > settings.max_triangles:
        preview = repair(preview, RepairOptions(fill_holes=False))
        preview = decimate(preview, DecimateOptions(triangles=settings.max_triangles))
    return {
        "scene": preview,
        "glb": glb_bytes(preview),
        "metadata": facts,
        "triangles_before": before,
        "triangles": preview.triangle_count,
    }


def render_thumbnails(scene, settings: Params) -> tuple[dict[str, bytes], str]:
    """The render stage: PNG bytes of each view and the renderer's summary line."""
    import io

    from tasks.steps.render import RenderOptions, render_views, renderer_info

    # io.load turned the model +Y up, from what its file declares or settings.up_axis
    options = RenderOptions(
        views=tuple(VIEW_FILES),
        width=settings.width,
        height=settings.height,
        up_axis=scene.up_axis or "y",
    )
    images = render_views(scene, options)
    pngs = {}
    for view, image in images.items():
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        pngs[view] = buffer.getvalue()
    return pngs, renderer_info()["summary"]


def write_outputs(pc, pngs: dict[str, bytes], prepared: dict, renderer: str) -> dict:
    """Write the PNGs, preview.glb and metadata.json; return the job's result."""
    for view, data in pngs.items():
        Path(pc.get_output_dir(VIEW_FILES[view])).write_bytes(data)
    Path(pc.get_output_dir("preview.glb")).write_bytes(prepared["glb"])
    Path(pc.get_output_dir("metadata.json")).write_text(json.dumps(prepared["metadata"], indent=2))
    return {
        "thumbs": {view: VIEW_FILES[view] for view in pngs},
        "preview": {
            "file": "preview.glb",
            "size": len(prepared["glb"]),
            "triangles": prepared["triangles"],
        },
        "metadata": prepared["metadata"],
        "renderer": renderer,
    }
