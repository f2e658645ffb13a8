"""glTF 2.0 in and out (.glb, .gltf): geometry, node tree, PBR materials and textures.

Reading is trimesh's, after this module checked the container and decoded what
trimesh cannot: EXT_meshopt_compression buffers (meshoptimizer's decoder). Draco
(KHR_draco_mesh_compression) is decoded by trimesh through DracoPy. KTX2/Basis
textures (KHR_texture_basisu) are transcoded to RGBA with Binomial's basis_universal
(the `opengl_basisu` package) and handed to trimesh as PNG, so every map survives;
one that cannot be decoded is skipped with a warning. trimesh keeps no texture
transforms (KHR_texture_transform): one that every texture of a material shares (as
quantized UVs have, from gltfpack or `gltf_web`) is applied to the UVs, any other is
named in the warnings. WebP textures
(EXT_texture_webp) and quantized attributes (KHR_mesh_quantization) are turned into what
trimesh reads. Writing a .gltf splits trimesh's GLB into a JSON file, one .bin and one
image file per texture, as tools expect to find them. Web packaging on write
(`SaveOptions.compression`, ``quantize``, ``max_texture_size``, ``texture_format``) is
`gltf_web`'s.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import struct
from pathlib import Path

import numpy as np

from tasks.steps.io.common import LenientResolver, find_file, read_error
from tasks.steps.io.options import LoadOptions, SaveOptions
from tasks.steps.scene import Scene

logger = logging.getLogger(__name__)

_GLB_MAGIC = b"glTF"
_CHUNK_JSON = 0x4E4F534A
_CHUNK_BIN = 0x004E4942
_MESHOPT = "EXT_meshopt_compression"
_BASISU = "KHR_texture_basisu"
_WEBP = "EXT_texture_webp"
# extensions whose data this reader turns into plain glTF before trimesh sees it
_DECODED_HERE = {_MESHOPT}
_IMAGE_SUFFIX = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/ktx2": "ktx2",
}


def read_gltf(path: Path, options: LoadOptions) -> Scene:
    """Read a .glb or .gltf (embedded, external or data-URI buffers) into a Scene."""
    import trimesh

    extension = path.suffix.lstrip(".").lower() or "gltf"
    warnings: list[str] = []
    # 1. open the container ourselves: clear errors for bad headers and missing buffers
    document, binary = _read_container(path, extension)
    _check_buffers(document, path, extension)
    # 2. decode KTX2 textures, drop what trimesh cannot show, saying so
    transcoded = _transcode_ktx2(document, binary, path, warnings)
    transcoded += _resolve_webp(document)
    _skip_unreadable_images(document, path, warnings)
    # 3. decode meshopt buffers and quantized attributes (trimesh reads neither), and move
    #    texture transforms into the UVs where one serves a whole material (trimesh reads none)
    decoded = False
    used = document.get("extensionsUsed", [])
    if _MESHOPT in used or _TEXTURE_TRANSFORM in used or _normalized_attributes(document):
        binary = _flatten_buffers(document, binary, path, extension)
        binary = _dequantize(document, binary)
        binary = _bake_texture_transforms(document, binary)
        decoded = True
    _warn_texture_transforms(document, warnings)
    # 4. hand trimesh a plain GLB (or the untouched file)
    resolver = LenientResolver(str(path))
    if decoded or transcoded or warnings:
        loaded = trimesh.load_scene(
            io.BytesIO(pack_glb(document, binary)), file_type="glb", resolver=resolver
        )
    else:
        with path.open("rb") as handle:
            loaded = trimesh.load_scene(handle, file_type=extension, resolver=resolver)
    facts = {}
    animations = len(document.get("animations", []))
    if animations:
        facts["animation_count"] = animations
    logger.debug(
        "glTF %s: %d meshes, %d nodes, %d animations",
        path.name,
        len(document.get("meshes", [])),
        len(document.get("nodes", [])),
        animations,
    )
    # glTF is metres and +Y up by its specification
    return Scene(trimesh_scene=loaded, facts=facts, warnings=warnings, unit=1.0, up_axis="y")


def write_glb(scene: Scene, path: Path, options: SaveOptions) -> list[Path]:
    """Write one binary .glb with textures embedded."""
    path.write_bytes(_export_glb(scene, options))
    return [path]


def write_gltf(scene: Scene, path: Path, options: SaveOptions) -> list[Path]:
    """Write ``name.gltf`` + ``name.bin`` + one image file per texture, side by side."""
    document, binary = split_glb(_export_glb(scene, options, meshopt=False))
    # 1. move every embedded image into a file of its own
    written: list[Path] = []
    moved_views: set[int] = set()
    for index, image in enumerate(document.get("images", [])):
        if "bufferView" not in image:
            continue
        view = document["bufferViews"][image["bufferView"]]
        data = _view_bytes(view, binary)
        suffix = _IMAGE_SUFFIX.get(image.get("mimeType", ""), "png")
        stem = _safe_name(image.get("name") or f"texture{index}")
        image_path = path.with_name(f"{path.stem}_{stem}.{suffix}")
        image_path.write_bytes(data)
        written.append(image_path)
        moved_views.add(image.pop("bufferView"))
        image["uri"] = image_path.name
    # 2. repack the remaining views into one .bin (meshopt-compressed: after the images left)
    binary = _drop_views(document, binary, moved_views)
    document["buffers"] = [{"byteLength": len(binary)}] if binary else []
    if options.compression == "meshopt" and binary:
        from tasks.steps.io import gltf_web

        views = gltf_web.unpack(document, binary)
        gltf_web.compress_meshopt(document, views)
        binary = gltf_web.pack(document, views)
    bin_path = path.with_suffix(".bin")
    if binary:
        document["buffers"][0].update(byteLength=len(binary), uri=bin_path.name)
        bin_path.write_bytes(binary)
        written.insert(0, bin_path)
    else:
        document.pop("buffers", None)
    path.write_text(json.dumps(document, separators=(",", ":")))
    return [path, *written]


def _export_glb(scene: Scene, options: SaveOptions, meshopt: bool = True) -> bytes:
    """trimesh's GLB, then the web packaging `options` asks for (see `gltf_web`); with
    ``meshopt=False`` the caller compresses later (after moving images out)."""
    from trimesh.exchange.gltf import export_glb

    _check_web_options(options)
    data = export_glb(
        scene.trimesh_scene,
        include_normals=options.include_normals,
        extension_draco=options.draco or options.compression == "draco",
    )
    quantize = (
        options.quantize if options.quantize is not None else options.compression == "meshopt"
    )
    textures = options.max_texture_size is not None or options.texture_format != "keep"
    compress = meshopt and options.compression == "meshopt"
    if not (quantize or textures or compress):
        return data
    from tasks.steps.io import gltf_web

    document, binary = split_glb(data)
    views = gltf_web.unpack(document, binary)
    if textures:
        gltf_web.process_textures(
            document,
            views,
            options.max_texture_size,
            options.texture_format,
            options.basisu_executable,
        )
    if options.compression == "meshopt":
        gltf_web.optimize_vertex_order(document, views)
    if quantize:
        # normals for meshopt as its OCTAHEDRAL filter input (compressed here or in write_gltf)
        octahedral = options.compression == "meshopt"
        gltf_web.quantize(document, views, scene.warnings, octahedral=octahedral)
    if compress:
        gltf_web.compress_meshopt(document, views)
    return pack_glb(document, gltf_web.pack(document, views))


_COMPRESSIONS = ("none", "meshopt", "draco")
_TEXTURE_FORMATS = ("keep", "webp", "ktx2")


def _check_web_options(options: SaveOptions) -> None:
    from tasks.steps.errors import OptionsError

    if options.compression not in _COMPRESSIONS:
        raise OptionsError(
            f"compression must be one of {', '.join(_COMPRESSIONS)}, got {options.compression!r}"
        )
    if options.draco and options.compression == "meshopt":
        raise OptionsError("draco=True and compression='meshopt' exclude each other")
    if options.quantize and (options.draco or options.compression == "draco"):
        raise OptionsError("quantize with draco: draco quantizes on its own, leave quantize unset")
    if options.texture_format not in _TEXTURE_FORMATS:
        raise OptionsError(
            f"texture_format must be one of {', '.join(_TEXTURE_FORMATS)},"
            f" got {options.texture_format!r}"
        )
    if options.max_texture_size is not None and not 1 <= options.max_texture_size <= 16384:
        raise OptionsError(
            f"max_texture_size must be 1..16384 pixels, got {options.max_texture_size}"
        )


# -- container -------------------------------------------------------------------------


def split_glb(data: bytes) -> tuple[dict, bytes]:
    """(JSON document, binary chunk) of GLB bytes; ValueError with the reason if malformed."""
    if len(data) < 20 or data[:4] != _GLB_MAGIC:
        raise ValueError("not a GLB file (missing 'glTF' header)")
    _, version, length = struct.unpack_from("<4sII", data, 0)
    if version != 2:
        raise ValueError(f"glTF version {version} is not supported (only 2.0)")
    if length > len(data):
        raise ValueError(f"file is truncated ({len(data)} of {length} bytes)")
    offset, document, binary = 12, None, b""
    while offset + 8 <= length:
        chunk_length, chunk_type = struct.unpack_from("<II", data, offset)
        chunk = data[offset + 8 : offset + 8 + chunk_length]
        if len(chunk) != chunk_length:
            raise ValueError("file is truncated inside a chunk")
        if chunk_type == _CHUNK_JSON:
            document = json.loads(chunk.decode("utf-8"))
        elif chunk_type == _CHUNK_BIN and not binary:
            binary = bytes(chunk)
        offset += 8 + chunk_length + (-chunk_length % 4)
    if document is None:
        raise ValueError("GLB has no JSON chunk")
    return document, binary


def pack_glb(document: dict, binary: bytes) -> bytes:
    """GLB bytes from a JSON document and its binary chunk (buffer 0)."""
    text = json.dumps(document, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 4)
    binary = binary + b"\0" * (-len(binary) % 4)
    total = 12 + 8 + len(text) + (8 + len(binary) if binary else 0)
    parts = [struct.pack("<4sII", _GLB_MAGIC, 2, total), struct.pack("<II", len(text), _CHUNK_JSON)]
    parts.append(text)
    if binary:
        parts += [struct.pack("<II", len(binary), _CHUNK_BIN), binary]
    return b"".join(parts)


def _read_container(path: Path, extension: str) -> tuple[dict, bytes]:
    data = path.read_bytes()
    try:
        if data[:4] == _GLB_MAGIC:
            return split_glb(data)
        return json.loads(data.decode("utf-8-sig")), b""
    except (ValueError, UnicodeDecodeError) as exc:
        raise read_error(path, extension, f"not a valid glTF file ({exc})") from exc


def _check_buffers(document: dict, path: Path, extension: str) -> None:
    for buffer in document.get("buffers", []):
        uri = buffer.get("uri")
        if uri is None or uri.startswith("data:"):
            continue
        if _is_meshopt_fallback(buffer):
            continue
        if find_file(path.parent, uri) is None:
            raise read_error(path, extension, f"buffer file '{uri}' is missing")


def _is_meshopt_fallback(buffer: dict) -> bool:
    return bool(buffer.get("extensions", {}).get(_MESHOPT, {}).get("fallback"))


def _skip_unreadable_images(document: dict, path: Path, warnings: list[str]) -> None:
    """Turn missing texture images into warnings; trimesh would drop them silently (KTX2
    images that could not be decoded were reported by `_transcode_ktx2`)."""
    missing = []
    for image in document.get("images", []):
        uri = image.get("uri", "")
        if _is_ktx2(image):
            continue
        if uri and not uri.startswith("data:") and find_file(path.parent, uri) is None:
            missing.append(uri)
    if missing:
        warnings.append(f"skipped {len(missing)} missing texture file(s): {', '.join(missing[:3])}")
        # an image without a source makes trimesh drop it instead of failing
        for image in document.get("images", []):
            if image.get("uri") in missing:
                image.pop("uri")


def _transcode_ktx2(document: dict, binary: bytes, path: Path, warnings: list[str]) -> int:
    """Replace every KTX2/Basis image by the same pixels as a PNG data URI and point each
    KHR_texture_basisu texture at it; returns how many images were transcoded. An image
    that fails stays KTX2 (trimesh then skips it) and is named in the warnings."""
    images = document.get("images", [])
    ktx2 = [index for index, image in enumerate(images) if _is_ktx2(image)]
    if not ktx2:
        return 0
    try:
        import opengl_basisu
    except ImportError:
        warnings.append(
            f"skipped {len(ktx2)} KTX2/Basis texture(s): the opengl-basisu package is not"
            " installed; materials keep their base colour"
        )
        return 0
    from PIL import Image

    failed: list[str] = []
    for index in ktx2:
        image = images[index]
        try:
            data = _image_bytes(document, binary, image, path)
            texture = opengl_basisu.open(data)
            pixels = texture.transcode("rgba8", level=0).data
        except Exception as exc:  # BasisuError, a missing file, a bad bufferView
            failed.append(f"{image.get('name') or image.get('uri') or index} ({exc})")
            continue
        encoded = io.BytesIO()
        # fast compression: the PNG only carries the pixels to trimesh
        Image.fromarray(np.ascontiguousarray(pixels), "RGBA").save(
            encoded, format="PNG", compress_level=1
        )
        image.pop("bufferView", None)
        image["mimeType"] = "image/png"
        image["uri"] = "data:image/png;base64," + base64.b64encode(encoded.getvalue()).decode()
    done = {index for index in ktx2 if not _is_ktx2(images[index])}
    for texture in document.get("textures", []):
        source = texture.get("extensions", {}).get(_BASISU, {}).get("source")
        if source in done:
            texture["source"] = source
            texture["extensions"].pop(_BASISU)
            if not texture["extensions"]:
                texture.pop("extensions")
    if len(done) == len(ktx2):
        for key in ("extensionsUsed", "extensionsRequired"):
            names = [name for name in document.get(key, []) if name != _BASISU]
            if names:
                document[key] = names
            else:
                document.pop(key, None)
    if failed:
        warnings.append(
            f"skipped {len(failed)} KTX2/Basis texture(s) that could not be decoded: "
            + ", ".join(failed[:3])
            + "; materials keep their base colour"
        )
    logger.debug("transcoded %d of %d KTX2 textures", len(done), len(ktx2))
    return len(done)


def _resolve_webp(document: dict) -> int:
    """Point EXT_texture_webp textures at their WebP image (Pillow decodes it for trimesh);
    returns how many textures changed."""
    count = 0
    for texture in document.get("textures", []):
        source = texture.get("extensions", {}).pop(_WEBP, {}).get("source")
        if source is not None:
            texture["source"] = source
            count += 1
        if not texture.get("extensions", True):
            texture.pop("extensions")
    if count:
        for key in ("extensionsUsed", "extensionsRequired"):
            names = [name for name in document.get(key, []) if name != _WEBP]
            if names:
                document[key] = names
            else:
                document.pop(key, None)
    return count


def _is_ktx2(image: dict) -> bool:
    return image.get("mimeType") == "image/ktx2" or image.get("uri", "").lower().endswith(".ktx2")


def _image_bytes(document: dict, binary: bytes, image: dict, path: Path) -> bytes:
    if "bufferView" in image:
        view = document["bufferViews"][image["bufferView"]]
        return _view_bytes(view, _buffer_data(document, binary, view.get("buffer", 0), path))
    uri = image.get("uri", "")
    if uri.startswith("data:"):
        return base64.b64decode(uri.split(",", 1)[1])
    found = find_file(path.parent, uri)
    if found is None:
        raise FileNotFoundError(f"'{uri}' is missing")
    return found.read_bytes()


def _warn_texture_transforms(document: dict, warnings: list[str]) -> None:
    """trimesh reads texture references without KHR_texture_transform: say what is lost."""
    count = 0
    for material in document.get("materials", []):
        references = [material.get(key) for key in _MATERIAL_TEXTURES]
        references += list(material.get("pbrMetallicRoughness", {}).values())
        count += sum(
            1
            for reference in references
            if isinstance(reference, dict)
            and "KHR_texture_transform" in reference.get("extensions", {})
        )
    if count:
        warnings.append(
            f"dropped {count} texture transform(s) (KHR_texture_transform): textures are"
            " read untransformed"
        )


_MATERIAL_TEXTURES = ("normalTexture", "occlusionTexture", "emissiveTexture")
_TEXTURE_TRANSFORM = "KHR_texture_transform"


def _bake_texture_transforms(document: dict, binary: bytes) -> bytes:
    """Apply KHR_texture_transform to the UVs themselves for each material whose textures
    all carry the same transform of the same UV set (as `gltf_web.quantize` and gltfpack
    write them to dequantize UVs): its primitives get transformed copies of their UVs, and
    the transforms go. Any other stays, and `_warn_texture_transforms` names it."""
    from tasks.steps.io.gltf_web import texture_infos

    uniform = {}
    for index, material in enumerate(document.get("materials", [])):
        infos = texture_infos(material)
        transforms = [info.get("extensions", {}).get(_TEXTURE_TRANSFORM) for info in infos]
        sets = {info.get("texCoord", 0) for info in infos}
        if (
            infos
            and len(sets) == 1
            and transforms[0] is not None
            and "texCoord" not in transforms[0]
            and all(t == transforms[0] for t in transforms)
        ):
            uniform[index] = (f"TEXCOORD_{sets.pop()}", transforms[0], infos)
    users: dict[int, list[dict]] = {}
    for mesh in document.get("meshes", []):
        for primitive in mesh.get("primitives", []):
            if primitive.get("material") in uniform:
                users.setdefault(primitive["material"], []).append(primitive)
    accessors = document.get("accessors", [])
    packed = bytearray(binary)
    copies: dict[tuple[int, int], int] = {}
    for material, (name, transform, infos) in uniform.items():
        found = [p["attributes"][name] for p in users.get(material, []) if name in p["attributes"]]
        if any(
            accessors[i].get("componentType") != 5126
            or accessors[i].get("type") != "VEC2"
            or "bufferView" not in accessors[i]
            or "sparse" in accessors[i]
            for i in found
        ):
            continue  # not plain float UVs: left as they are, with the warning
        c, s = np.cos(transform.get("rotation", 0.0)), np.sin(transform.get("rotation", 0.0))
        # offset + rotation @ scale @ uv, rotation [[c, s], [-s, c]] (the extension's examples)
        linear = np.array([[c, s], [-s, c]]) @ np.diag(transform.get("scale", [1.0, 1.0]))
        offset = np.asarray(transform.get("offset", [0.0, 0.0]), dtype=np.float64)
        for primitive in users.get(material, []):
            index = primitive["attributes"].get(name)
            if index is None:
                continue
            if (index, material) not in copies:
                uv = _accessor_rows(document, binary, index).astype(np.float64)
                moved = (uv @ linear.T + offset).astype(np.float32)
                packed += b"\0" * (-len(packed) % 4)
                document["bufferViews"].append(
                    {"buffer": 0, "byteOffset": len(packed), "byteLength": moved.nbytes}
                )
                packed += moved.tobytes()
                copy = {k: v for k, v in accessors[index].items() if k not in ("min", "max")}
                copy.update(bufferView=len(document["bufferViews"]) - 1, byteOffset=0)
                accessors.append(copy)
                copies[(index, material)] = len(accessors) - 1
            primitive["attributes"][name] = copies[(index, material)]
        for info in infos:
            del info["extensions"][_TEXTURE_TRANSFORM]
            if not info["extensions"]:
                del info["extensions"]
    if document.get("buffers"):
        document["buffers"][0]["byteLength"] = len(packed)
    return bytes(packed)


def _accessor_rows(document: dict, binary: bytes, index: int) -> np.ndarray:
    """A float accessor's values, (count, components), from the flat buffer 0."""
    accessor = document["accessors"][index]
    view = document["bufferViews"][accessor["bufferView"]]
    width = _COMPONENTS[accessor["type"]]
    if not accessor["count"]:
        return np.zeros((0, width), dtype=np.float32)
    stride = view.get("byteStride", width * 4)
    start = view.get("byteOffset", 0) + accessor.get("byteOffset", 0)
    rows = np.lib.stride_tricks.as_strided(
        np.frombuffer(binary, dtype=np.uint8, offset=start),
        shape=(accessor["count"], width * 4),
        strides=(stride, 1),
    )
    return np.ascontiguousarray(rows).view("<f4").reshape(-1, width)


def _buffer_data(document: dict, binary: bytes, index: int, path: Path) -> bytes:
    buffer = document["buffers"][index]
    uri = buffer.get("uri")
    if uri is None:
        return binary
    if uri.startswith("data:"):
        return base64.b64decode(uri.split(",", 1)[1])
    found = find_file(path.parent, uri)
    return found.read_bytes() if found else b""


def _view_bytes(view: dict, binary: bytes) -> bytes:
    start = view.get("byteOffset", 0)
    return binary[start : start + view["byteLength"]]


# -- EXT_meshopt_compression -----------------------------------------------------------


def _flatten_buffers(document: dict, binary: bytes, path: Path, extension: str) -> bytes:
    """Copy every buffer view into one binary buffer (buffer 0), decoding meshopt-compressed
    views on the way, and point the document at it."""
    meshoptimizer = None
    if _MESHOPT in document.get("extensionsUsed", []):
        try:
            import meshoptimizer
        except ImportError as exc:
            raise read_error(
                path,
                extension,
                "the file uses EXT_meshopt_compression and the meshoptimizer package "
                "is not installed",
            ) from exc
    buffers = [
        _buffer_data(document, binary, i, path) for i in range(len(document.get("buffers", [])))
    ]
    packed = bytearray()
    for view in document.get("bufferViews", []):
        compressed = view.get("extensions", {}).pop(_MESHOPT, None)
        if compressed is not None:
            source = buffers[compressed.get("buffer", 0)]
            start = compressed.get("byteOffset", 0)
            data = _meshopt_view(
                meshoptimizer, compressed, source[start : start + compressed["byteLength"]]
            )
        else:
            data = _view_bytes(view, buffers[view.get("buffer", 0)])
        if not view.get("extensions"):
            view.pop("extensions", None)
        packed += b"\0" * (-len(packed) % 4)
        view.update(buffer=0, byteOffset=len(packed), byteLength=len(data))
        packed += data
    document["buffers"] = [{"byteLength": len(packed)}]
    for key in ("extensionsUsed", "extensionsRequired"):
        names = [name for name in document.get(key, []) if name not in _DECODED_HERE]
        if names:
            document[key] = names
        else:
            document.pop(key, None)
    logger.debug(
        "flattened %d buffer views into %d bytes", len(document["bufferViews"]), len(packed)
    )
    return bytes(packed)


# KHR_mesh_quantization: integer attributes that read as floats in [-1, 1] or [0, 1]
_NORMALIZED_ATTRIBUTES = ("POSITION", "NORMAL", "TANGENT", "TEXCOORD_")
_INTEGER_RANGE = {5120: 127.0, 5121: 255.0, 5122: 32767.0, 5123: 65535.0}
_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}
_DTYPES = {5120: "<i1", 5121: "<u1", 5122: "<i2", 5123: "<u2"}


def _normalized_attributes(document: dict) -> set[int]:
    """Accessors of positions, normals, tangents and UVs stored as (normalized) integers."""
    found = set()
    for mesh in document.get("meshes", []):
        for primitive in mesh.get("primitives", []):
            for name, index in primitive.get("attributes", {}).items():
                accessor = document["accessors"][index]
                if (
                    name.startswith(_NORMALIZED_ATTRIBUTES)
                    and accessor.get("componentType") in _INTEGER_RANGE
                    and "bufferView" in accessor
                ):
                    found.add(index)
    return found


def _dequantize(document: dict, binary: bytes) -> bytes:
    """Rewrite integer positions/normals/tangents/UVs as float32 accessors appended to the
    buffer (trimesh would otherwise read a normal of (127, 0, 0))."""
    packed = bytearray(binary)
    for index in sorted(_normalized_attributes(document)):
        accessor = document["accessors"][index]
        view = document["bufferViews"][accessor["bufferView"]]
        width = _COMPONENTS[accessor["type"]]
        dtype = np.dtype(_DTYPES[accessor["componentType"]])
        stride = view.get("byteStride", width * dtype.itemsize)
        start = view.get("byteOffset", 0) + accessor.get("byteOffset", 0)
        rows = np.lib.stride_tricks.as_strided(
            np.frombuffer(binary, dtype=np.uint8, offset=start),
            shape=(accessor["count"], width * dtype.itemsize),
            strides=(stride, 1),
        )
        values = np.ascontiguousarray(rows).view(dtype).reshape(-1, width).astype(np.float32)
        if accessor.get("normalized"):
            values = np.maximum(values / _INTEGER_RANGE[accessor["componentType"]], -1.0)
        packed += b"\0" * (-len(packed) % 4)
        document["bufferViews"].append(
            {"buffer": 0, "byteOffset": len(packed), "byteLength": values.nbytes}
        )
        packed += values.tobytes()
        accessor.update(
            bufferView=len(document["bufferViews"]) - 1, byteOffset=0, componentType=5126
        )
        for key in ("normalized", "min", "max"):
            accessor.pop(key, None)
    if document.get("buffers"):
        document["buffers"][0]["byteLength"] = len(packed)
    return bytes(packed)


def _meshopt_view(meshoptimizer, spec: dict, data: bytes) -> bytes:
    count, stride = spec["count"], spec["byteStride"]
    mode = spec.get("mode", "ATTRIBUTES")
    if mode == "ATTRIBUTES":
        decoded = meshoptimizer.decode_vertex_buffer(count, stride, data).view(np.uint8).reshape(-1)
    elif mode in ("TRIANGLES", "INDICES"):
        decode = (
            meshoptimizer.decode_index_buffer
            if mode == "TRIANGLES"
            else meshoptimizer.decode_index_sequence
        )
        indices = decode(count, stride, data)
        # the binding decodes into a uint32 array of `count` items whatever the index size:
        # 16-bit indices are its first 2 * count bytes
        return indices.view(np.uint8)[: count * stride].tobytes()
    else:
        raise ValueError(f"unknown EXT_meshopt_compression mode '{mode}'")
    filters = {
        "OCTAHEDRAL": meshoptimizer.decode_filter_oct,
        "QUATERNION": meshoptimizer.decode_filter_quat,
        "EXPONENTIAL": meshoptimizer.decode_filter_exp,
    }
    name = spec.get("filter", "NONE")
    if name != "NONE":
        if name not in filters:
            raise ValueError(f"unknown EXT_meshopt_compression filter '{name}'")
        decoded = filters[name](decoded, count, stride)
    return np.ascontiguousarray(decoded).tobytes()


# -- writing helpers -------------------------------------------------------------------


def _drop_views(document: dict, binary: bytes, dropped: set[int]) -> bytes:
    """Remove buffer views (now external image files) and repack the rest contiguously."""
    if not dropped:
        return binary
    views = document.get("bufferViews", [])
    remap, kept, packed = {}, [], bytearray()
    for index, view in enumerate(views):
        if index in dropped:
            continue
        data = _view_bytes(view, binary)
        packed += b"\0" * (-len(packed) % 4)
        view.update(buffer=0, byteOffset=len(packed))
        packed += data
        remap[index] = len(kept)
        kept.append(view)
    document["bufferViews"] = kept
    renumber_views(document, remap)
    if not kept:
        document.pop("bufferViews")
    return bytes(packed)


def view_references(document: dict) -> list[tuple[dict, str]]:
    """Every (holder, key) whose ``holder[key]`` is a bufferView index: accessors, their
    sparse indices and values, images, and draco-compressed primitives."""
    found = []
    for accessor in document.get("accessors", []):
        if "bufferView" in accessor:
            found.append((accessor, "bufferView"))
        for part in ("indices", "values"):
            sparse = accessor.get("sparse", {}).get(part)
            if sparse:
                found.append((sparse, "bufferView"))
    found += [
        (image, "bufferView") for image in document.get("images", []) if "bufferView" in image
    ]
    for mesh in document.get("meshes", []):
        for primitive in mesh.get("primitives", []):
            draco = primitive.get("extensions", {}).get("KHR_draco_mesh_compression")
            if draco:
                found.append((draco, "bufferView"))
    return found


def renumber_views(document: dict, remap: dict[int, int]) -> None:
    """Point every bufferView reference at its new index (`remap`: old -> new)."""
    for holder, key in view_references(document):
        holder[key] = remap[holder[key]]


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "texture"


READERS = {"glb": read_gltf, "gltf": read_gltf}
WRITERS = {"glb": write_glb, "gltf": write_gltf}
