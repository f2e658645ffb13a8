"""generate_thumbnails: four PNG views, a light GLB preview and the metadata of a model.

The stages are module-level functions so `thumbnail_chained` can run the same
work as child tasks: `prepare_preview` (CPU: metadata, merge, clean-up and
decimation, GLB encoding) and `render_thumbnails` (OpenGL, GPU when there is one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

QUEUE = "gpu"

VIEW_FILES = {"iso": "iso.png", "x": "x.png", "y": "y.png", "z": "z.png"}
"""Output file of each view, in the order they are drawn."""

Z_UP_FORMATS = frozenset({"step", "stp", "iges", "igs", "brep", "3mf", "stl"})
"""Sources whose up axis is Z by convention (CAD, 3D printing); the rest are Y-up."""


@dataclass(frozen=True)
class ThumbnailParams:
    """The checked params of a thumbnail job."""

    width: int = 512
    """Thumbnail width in pixels, 16..4096."""
    height: int = 512
    """Thumbnail height in pixels, 16..4096."""
    max_triangles: int = 500_000
    """Triangle budget of the preview GLB (and of what is drawn)."""
    up_axis: str = "auto"
    """``y``, ``z``, or ``auto`` (by source format, see `Z_UP_FORMATS`)."""


def main(pc, params):
    """Render four thumbnails of the uploaded model, with a light GLB preview and its metadata.

    Send the model as the `file` field (any format `convert_file` reads; an archive
    is unpacked and its root model opened).

    Params:
    - `width` (integer, 16-4096, default 512): thumbnail width in pixels.
    - `height` (integer, 16-4096, default 512): thumbnail height in pixels.
    - `max_triangles` (integer, 1000-10000000, default 500000): the preview GLB is
      decimated to at most this many triangles; smaller models are kept whole.
    - `up_axis` (string, `"auto"`, `"y"` or `"z"`, default `"auto"`): the model's up
      axis; auto means Z for CAD, 3MF and STL, Y for the rest.

    Outputs: `iso.png`, `x.png`, `y.png`, `z.png` (RGBA, transparent background;
    iso from the front-right-top corner, x/y/z looking from that +axis),
    `preview.glb` (meshes merged by material; over `max_triangles`, welded and
    decimated to it) and
    `metadata.json`.

    Result: `{"thumbs": {"iso": "iso.png", "x": "x.png", "y": "y.png", "z": "z.png"},
    "preview": {"file": "preview.glb", "size": <bytes>, "triangles": <count>},
    "metadata": {<the model's metadata as read: generate_metadata's, without parts>},
    "renderer": "rendered on CPU (llvmpipe)" or "rendered on GPU (...)"}`.
    """
    from tasks.processes._shared import describe_scene, load_input

    settings = read_params(params)
    pc.progress_set_total(4)

    scene = load_input(pc.get_input_file())
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


def read_params(params: dict) -> ThumbnailParams:
    """Check the user's params; raises OptionsError naming the param and the value."""
    from tasks.steps.errors import OptionsError

    def integer(name: str, low: int, high: int, default: int) -> int:
        value = params.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise OptionsError(
                f"params.{name} must be an integer between {low} and {high}, got {value!r}"
            )
        return value

    up_axis = params.get("up_axis", "auto")
    if up_axis not in ("auto", "y", "z"):
        raise OptionsError(f"params.up_axis must be 'auto', 'y' or 'z', got {up_axis!r}")
    return ThumbnailParams(
        width=integer("width", 16, 4096, 512),
        height=integer("height", 16, 4096, 512),
        max_triangles=integer("max_triangles", 1000, 10_000_000, 500_000),
        up_axis=up_axis,
    )


def prepare_preview(scene, settings: ThumbnailParams) -> dict:
    """The CPU stage: metadata of the model as read, then a light copy for viewing
    (merged, and repaired and decimated when over budget; ``scene`` is consumed).

    Returns ``{"scene": <preview Scene>, "glb": <its GLB bytes>, "metadata": {...},
    "triangles_before": n, "triangles": m}``; every value pickles, so the dict can
    travel through Ray's object store.
    """
    from tasks.processes._shared import glb_bytes
    from tasks.steps.decimate import DecimateOptions, decimate
    from tasks.steps.merge import merge
    from tasks.steps.metadata import MetadataOptions, metadata
    from tasks.steps.repair import RepairOptions, repair

    # 1. metadata describes the file, so it is taken before anything changes
    facts = metadata(scene, MetadataOptions(parts=False))
    before = scene.triangle_count
    # 2. one mesh per material; over budget, weld and orient first (the decimator needs
    # welded input) but leave holes open: a preview shows the file as it is
    preview = merge(scene)
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


def render_thumbnails(scene, settings: ThumbnailParams) -> tuple[dict[str, bytes], str]:
    """The render stage: PNG bytes of each view and the renderer's summary line."""
    import io

    from tasks.steps.render import RenderOptions, render_views, renderer_info

    up_axis = settings.up_axis
    if up_axis == "auto":
        up_axis = "z" if scene.source_format in Z_UP_FORMATS else "y"
    options = RenderOptions(
        views=tuple(VIEW_FILES), width=settings.width, height=settings.height, up_axis=up_axis
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
