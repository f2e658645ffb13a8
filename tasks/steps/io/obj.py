"""Wavefront OBJ in and out, with MTL materials and texture images.

Reading keeps every ``o``/``g`` group as a named mesh, finds textures that
Windows exporters wrote with backslashes (``map_Kd .\\tex.jpg``) or another letter
case, and loads without materials (warning) when the MTL file is missing. The PBR
extension of MTL (``Pr``/``Pm``/``Ke``, ``map_Pr``/``map_Pm``/``map_Ke``/``norm``, with
``-imfchan``) is read into glTF-style PBR materials, which trimesh's reader skips.
Writing produces ``name.obj`` + ``name.mtl`` + the texture images; trimesh writes the
diffuse colour and texture, this module adds the PBR keys and maps, and names in the
scene's warnings what MTL cannot hold (occlusion maps, alpha cutoff, double-sidedness).
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import numpy as np
import trimesh

from tasks.steps.io.common import find_file, load_with_trimesh, normalise_reference, write_error
from tasks.steps.io.options import LoadOptions, SaveOptions
from tasks.steps.scene import Scene

logger = logging.getLogger(__name__)


def read_obj(path: Path, options: LoadOptions) -> Scene:
    """Read an OBJ and its MTL/textures into a Scene with one mesh per group and material."""
    warnings: list[str] = []
    # 1. say what is missing before trimesh quietly does without it
    libraries = _directives(path.read_bytes(), "mtllib")
    for library in libraries:
        found = find_file(path.parent, library)
        if found is None:
            warnings.append(f"material library '{library}' not found; loaded without materials")
            continue
        missing = [
            image
            for image in _directives(found.read_bytes(), "map_", prefix=True)
            if not image.startswith("-") and find_file(path.parent, image) is None
        ]
        if missing:
            warnings.append(
                f"skipped {len(missing)} missing texture(s) named in '{library}': "
                + ", ".join(sorted(set(missing))[:3])
            )
    # 2. parse, keeping objects and groups apart so their names survive
    loaded = load_with_trimesh(
        path, "obj", split_objects=True, split_groups=True, group_material=False
    )
    # 3. PBR keys trimesh left in each simple material's kwargs
    _read_pbr_materials(loaded, path.parent, warnings)
    logger.debug("OBJ %s: %d meshes, %d warnings", path.name, len(loaded.geometry), len(warnings))
    return Scene(trimesh_scene=loaded, warnings=warnings)


def write_obj(scene: Scene, path: Path, options: SaveOptions) -> list[Path]:
    """Write ``name.obj`` + ``name.mtl`` (with the PBR extension keys) + texture images."""
    from trimesh.exchange.obj import export_obj

    mtl_name = path.with_suffix(".mtl").name
    text, files = export_obj(
        scene.trimesh_scene,
        include_normals=options.include_normals,
        include_texture=True,
        return_texture=True,
        mtl_name=mtl_name,
        header=None,
    )
    if not text.strip():
        raise write_error(path, "obj", "the scene has no geometry to write")
    path.write_text(text)
    if mtl_name in files:
        files.update(_pbr_extension(scene, files[mtl_name], mtl_name))
    written = [path]
    for name, data in files.items():
        target = path.with_name(Path(name).name)
        target.write_bytes(data)
        written.append(target)
    return written


def _pbr_extension(scene: Scene, mtl: bytes, mtl_name: str) -> dict[str, bytes]:
    """The MTL with the PBR extension keys added to each material trimesh wrote (it reduces
    PBR materials to a diffuse colour and texture), and the extra images; what MTL cannot
    hold goes into the scene's warnings."""
    by_name: dict[str, trimesh.visual.material.PBRMaterial] = {}
    for geometry in scene.trimesh_scene.geometry.values():
        material = getattr(getattr(geometry, "visual", None), "material", None)
        if isinstance(material, trimesh.visual.material.PBRMaterial):
            by_name.setdefault(material.name or "material", material)
    files: dict[str, bytes] = {}
    lost: dict[str, int] = {}
    blocks = re.split(rb"(?m)^(?=newmtl )", mtl)
    for index, block in enumerate(blocks):
        head = block.decode("utf-8", errors="replace").split("\n", 1)[0]
        if not head.startswith("newmtl "):
            continue
        name = head[len("newmtl ") :].strip()
        material = by_name.get(name) or by_name.get(re.sub(r"_\d+$", "", name))
        if material is None:
            continue
        lines, images = _pbr_lines(material, name, lost)
        files.update(images)
        blocks[index] = block.rstrip(b"\n") + b"\n" + "\n".join(lines).encode() + b"\n\n"
    if lost:
        scene.warn(
            "MTL cannot hold "
            + ", ".join(f"{what} ({count} material(s))" for what, count in sorted(lost.items()))
            + "; left out of the OBJ"
        )
    files[mtl_name] = b"".join(blocks)
    return files


def _pbr_lines(material, name: str, lost: dict[str, int]) -> tuple[list[str], dict[str, bytes]]:
    lines: list[str] = []
    images: dict[str, bytes] = {}

    def image_file(image, role: str) -> str:
        file_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{name}_{role}") + ".png"
        encoded = io.BytesIO()
        image.save(encoded, format="PNG")
        images[file_name] = encoded.getvalue()
        return file_name

    textured = material.metallicRoughnessTexture is not None
    for key, value in (("Pr", material.roughnessFactor), ("Pm", material.metallicFactor)):
        if value is not None or textured:
            lines.append(f"{key} {float(1.0 if value is None else value):.6f}")
    if textured:
        # one packed glTF texture: roughness in G, metallic in B
        file_name = image_file(material.metallicRoughnessTexture, "metallicRoughness")
        lines += [f"map_Pr -imfchan g {file_name}", f"map_Pm -imfchan b {file_name}"]
    if material.normalTexture is not None:
        lines.append(f"norm {image_file(material.normalTexture, 'normal')}")
    emissive = material.emissiveFactor
    if emissive is not None and np.any(emissive):
        lines.append("Ke {:.6f} {:.6f} {:.6f}".format(*(float(c) for c in emissive[:3])))
    if material.emissiveTexture is not None:
        if emissive is None:
            lines.append("Ke 1.000000 1.000000 1.000000")
        lines.append(f"map_Ke {image_file(material.emissiveTexture, 'emissive')}")
    factor = material.baseColorFactor
    if material.alphaMode == "BLEND" and factor is not None and factor[3] < 255:
        lines.append(f"d {factor[3] / 255.0:.6f}")
    if material.occlusionTexture is not None:
        lost["occlusion maps"] = lost.get("occlusion maps", 0) + 1
    if material.alphaMode == "MASK":
        lost["alpha cutoff (MASK)"] = lost.get("alpha cutoff (MASK)", 0) + 1
    if material.doubleSided:
        lost["double-sidedness"] = lost.get("double-sidedness", 0) + 1
    return lines, images


# MTL keys of the PBR extension, as trimesh keeps them (lower case, split on spaces)
_PBR_KEYS = ("pr", "pm", "ke", "map_pr", "map_pm", "map_ke", "norm", "d")


def _read_pbr_materials(scene: trimesh.Scene, folder: Path, warnings: list[str]) -> None:
    """Turn simple materials that carry PBR extension keys into PBR materials."""
    converted: dict[int, trimesh.visual.material.PBRMaterial] = {}
    images: dict[str, object] = {}
    for geometry in scene.geometry.values():
        visual = getattr(geometry, "visual", None)
        material = getattr(visual, "material", None)
        kwargs = getattr(material, "kwargs", None) or {}
        if not isinstance(material, trimesh.visual.material.SimpleMaterial) or not any(
            key in kwargs for key in _PBR_KEYS
        ):
            continue
        if id(material) not in converted:
            converted[id(material)] = _pbr_material(material, folder, images, warnings)
        visual.material = converted[id(material)]


def _pbr_material(material, folder: Path, images: dict, warnings: list[str]):
    from PIL import Image

    kwargs = material.kwargs

    def number(key: str, count: int = 1):
        try:
            values = [float(v) for v in kwargs[key][:count]]
        except (KeyError, ValueError, TypeError):
            return None
        return values if count > 1 else values[0]

    def texture(key: str) -> tuple[object | None, str | None]:
        """(image, channel named by -imfchan or None) of a map directive."""
        words, channel = list(kwargs.get(key) or []), None
        while len(words) > 1 and words[0].startswith("-"):
            option = words.pop(0)
            value = words.pop(0) if words else None
            if option == "-imfchan":
                channel = value
            elif option in ("-o", "-s", "-t"):  # three numbers, two consumed with the option
                words = words[2:] if len(words) > 2 else words
        reference = normalise_reference(" ".join(words)) if words else ""
        if not reference:
            return None, channel
        if reference not in images:
            found = find_file(folder, reference)
            if found is None:
                warnings.append(f"texture '{reference}' of material '{material.name}' not found")
                images[reference] = None
            else:
                images[reference] = Image.open(found)
                images[reference].load()
        return images[reference], channel

    diffuse = np.asarray(material.diffuse, dtype=np.float64)
    alpha = number("d")
    rgba = [*diffuse[:3], 255.0 * (1.0 if alpha is None else alpha)]
    pbr = trimesh.visual.material.PBRMaterial(
        name=material.name,
        baseColorFactor=[round(c) for c in rgba],
        baseColorTexture=material.image,
        roughnessFactor=number("pr"),
        metallicFactor=number("pm"),
        alphaMode="BLEND" if alpha is not None and alpha < 1.0 else None,
    )
    emissive = number("ke", 3)
    if emissive is not None and any(emissive):
        pbr.emissiveFactor = emissive
    pbr.emissiveTexture = texture("map_ke")[0]
    pbr.normalTexture = texture("norm")[0]
    (rough, rough_channel), (metal, metal_channel) = texture("map_pr"), texture("map_pm")
    if rough is not None and rough is metal and (rough_channel, metal_channel) == ("g", "b"):
        pbr.metallicRoughnessTexture = rough  # glTF's packing, as this module writes it
    elif rough is not None or metal is not None:
        size = (rough or metal).size

        def band(image, channel):
            if image is None:
                return Image.new("L", size, 255)
            picked = (
                image.convert("RGBA").split()["rgba".index(channel)]
                if channel in ("r", "g", "b", "a")
                else image.convert("L")
            )
            return picked.resize(size) if picked.size != size else picked

        pbr.metallicRoughnessTexture = Image.merge(
            "RGB",
            (Image.new("L", size, 255), band(rough, rough_channel), band(metal, metal_channel)),
        )
        if pbr.roughnessFactor is None:
            pbr.roughnessFactor = 1.0 if rough is not None else 0.5
        if pbr.metallicFactor is None:
            pbr.metallicFactor = 1.0 if metal is not None else 0.0
    return pbr


def _directives(data: bytes, keyword: str, prefix: bool = False) -> list[str]:
    """Values of lines starting with `keyword` (file names may contain spaces)."""
    values = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        stripped = line.strip()
        head, _, rest = stripped.partition(" ")
        if (head.startswith(keyword) if prefix else head == keyword) and rest.strip():
            values.append(normalise_reference(rest))
    return values


READERS = {"obj": read_obj}
WRITERS = {"obj": write_obj}
