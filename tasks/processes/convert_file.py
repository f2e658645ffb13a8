"""convert_file: read any supported 3D or CAD file and write it in another format."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from tasks.processes._params import (
    ModelParams,
    OutputExtension,
    OutputStem,
    OutputUnit,
    WebPackagingParams,
)


class Params(ModelParams, WebPackagingParams):
    extension: OutputExtension = Field(
        "glb",
        description="Output format: 3mf, fbx, glb, gltf, las, laz, obj, off, ply, stl, usd, usda,"
        " usdc, usdz"
        " (with or without the dot, any case); FBX needs a Blender runtime on the server",
    )
    filename: OutputStem = Field(
        "output",
        description="Base name of the output file: 1-100 letters, digits, spaces or `_ . + -`,"
        " starting with a letter or digit; a trailing model extension is dropped"
        " (`part.step` gives `part.glb`)",
    )
    output_unit: OutputUnit = None


def main(pc, params):
    """Convert the uploaded model to another format.

    Send the model as the `file` field (an archive is unpacked and its root model
    opened: a .zip of an OBJ with its .mtl and textures works). Readable: 3dm, 3mf, brep,
    dae, fbx, glb, gltf, ifc, iges/igs, obj, off, ply, step/stp, stl, usd/usda/usdc/usdz,
    zae.

    Result: `{"output": "<filename>.<extension>", "files": [every file written],
    "triangles": <placed triangle count>, "source_unit": {"unit": "mm",
    "metres_per_unit": 0.001, "up_axis": "z"}, "output_unit": {... as written},
    "warnings": [what was skipped while reading]}`. glTF outputs are in metres and +Y up,
    3MF in millimetres; OBJ, STL, PLY and OFF keep the source's unit and up axis unless
    `output_unit` names another unit; USD declares its unit and is +Y up. `files` lists the side files of multi-file formats: `.gltf` comes
    with a `.bin` and one image per texture, `.obj` with an `.mtl` and its images.
    For the web, glTF outputs take `compression` (`meshopt`, `draco`), `max_texture_size`
    and `texture_format` (`webp`, `ktx2`).
    """
    from tasks.processes._shared import describe_scene, frames, load_input
    from tasks.steps.io import SaveOptions, save
    from tasks.steps.io.common import format_name
    from tasks.steps.units import UNITS

    p = Params.model_validate(params)
    extension, stem = p.extension, p.filename
    pc.progress_set_total(2)

    scene = load_input(pc.get_input_file(), p.load_options())
    pc.progress_next(f"Read {describe_scene(scene)}")

    output_dir = Path(pc.get_output_dir())
    options = SaveOptions(
        blender_executable=pc.get("blender_executable") or None,
        basisu_executable=pc.get("basisu_executable") or None,
        output_unit=UNITS[p.output_unit] if p.output_unit else None,
        **p.web_save_options(),
    )
    written = save(scene, pc.get_output_dir(f"{stem}.{extension}"), options)
    files = [Path(p).relative_to(output_dir).as_posix() for p in written]
    pc.progress_next(f"Wrote {files[0]} as {format_name(extension)} ({len(files)} file(s))")
    return {
        "output": files[0],
        "files": files,
        "triangles": scene.triangle_count,
        **frames(scene, extension, options),
        "warnings": list(scene.warnings),
    }
