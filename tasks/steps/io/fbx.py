"""FBX in through ufbx (binary and ASCII, 6.x-7.x): node tree, transforms, meshes, materials,
textures (embedded or beside the file) and the animation count.

FBX out has no maintained Python writer: it goes through a Blender executable
that the caller configures (``SaveOptions(blender_executable=...)``) and otherwise
fails with a clear WriteError. Blender imports the GLB this module writes and
exports FBX with embedded textures.
"""

from __future__ import annotations

import ctypes
import io
import logging
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import trimesh

from tasks.steps.io.common import find_file, read_error, write_error
from tasks.steps.io.options import LoadOptions, SaveOptions
from tasks.steps.scene import Scene

logger = logging.getLogger(__name__)

_BLENDER_SCRIPT = """
import sys, bpy
source, target = sys.argv[sys.argv.index("--") + 1:][:2]
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.gltf(filepath=source)
bpy.ops.export_scene.fbx(filepath=target, path_mode="COPY", embed_textures=True)
"""


def read_fbx(path: Path, options: LoadOptions) -> Scene:
    """Read an FBX file into a Scene (+Y up, right-handed, in the file's UnitScaleFactor).

    The parse runs in a child process (unless this already is one): ufbx 0.0.5's Python
    binding returns its cached element objects without a new reference, so objects are
    freed while still cached and the process crashes on re-use or at teardown. The
    child keeps every element alive (`_own`) and exits without tearing ufbx down.
    """
    from tasks.steps.io.isolate import in_isolated_child, run_isolated

    if in_isolated_child():
        return _read_fbx_here(str(path))
    return run_isolated(_read_fbx_here, (str(path),), path, "fbx", hard_exit=True)


def _read_fbx_here(name: str) -> Scene:
    import ufbx

    path = Path(name)
    # 1. parse; ufbx converts axes and bakes geometric transforms into helper nodes
    try:
        document = ufbx.load_file(
            str(path),
            target_axes=ufbx.axes_right_handed_y_up,
            geometry_transform_handling=ufbx.GeometryTransformHandling.HELPER_NODES,
            generate_missing_normals=True,
            ignore_missing_external_files=True,
        )
    except ufbx.UfbxError as exc:
        raise read_error(path, "fbx", str(exc) or type(exc).__name__) from exc
    # 2. nodes and meshes (ufbx lists are read by index: iterating some of them is unsafe)
    reader = _FbxReader(path)
    root = _own(document.root_node)
    # ufbx puts the axis conversion on the root node, which has no scene node of its own
    above = _matrix(root.node_to_parent)
    for index in range(len(root.children)):
        reader.node(_own(root.children[index]), reader.scene.graph.base_frame, above)
    if reader.missing_textures:
        reader.warnings.append(
            f"skipped {len(reader.missing_textures)} missing texture file(s): "
            + ", ".join(sorted(reader.missing_textures)[:3])
        )
    animations = len(document.anim_stacks)
    logger.debug(
        "FBX %s: %d nodes, %d meshes, %d animations",
        path.name,
        len(document.nodes),
        len(document.meshes),
        animations,
    )
    # the axes are converted above; coordinates stay in the file's UnitScaleFactor unit
    return Scene(
        trimesh_scene=reader.scene,
        facts={"animation_count": animations} if animations else {},
        warnings=reader.warnings,
        unit=float(document.settings.unit_meters),
        up_axis="y",
    )


class _FbxReader:
    def __init__(self, path: Path):
        self.path = path
        self.scene = trimesh.Scene()
        self.meshes: dict[tuple, list[str]] = {}
        self.materials: dict[int, trimesh.visual.material.PBRMaterial] = {}
        self.warnings: list[str] = []
        self.missing_textures: set[str] = set()

    def node(self, node, parent: str, above: np.ndarray | None = None) -> None:
        name = trimesh.util.unique_name(node.name or "node", self.scene.graph.transforms.node_data)
        mesh = _own(node.mesh)
        parts = self.mesh(mesh, node) if mesh is not None else []
        # a mesh with one material sits on its node; several get a child node each
        extra = {"geometry": parts[0]} if len(parts) == 1 else {}
        matrix = _matrix(node.node_to_parent)
        if above is not None:
            matrix = above @ matrix
        self.scene.graph.update(frame_from=parent, frame_to=name, matrix=matrix, **extra)
        if len(parts) > 1:
            for part in parts:
                child = trimesh.util.unique_name(
                    f"{name}_{part}", self.scene.graph.transforms.node_data
                )
                self.scene.graph.update(frame_from=name, frame_to=child, geometry=part)
        for index in range(len(node.children)):
            self.node(_own(node.children[index]), name)

    def mesh(self, mesh, node) -> list[str]:
        """Geometry names for a ufbx mesh with this node's materials: one per material slot,
        built once per (mesh, materials)."""
        # FBX binds materials to the node; the mesh's own list can hold null entries
        materials = [_own(node.materials[i]) for i in range(len(node.materials))]
        key = (mesh.element_id, *(material.element_id for material in materials))
        if key in self.meshes:
            return self.meshes[key]
        # 1. per-corner attributes of the polygons, then a triangle fan per polygon
        faces = np.asarray(mesh.faces, dtype=np.int64).reshape(-1, 2)
        corners = _fan(faces)
        positions = _corner_values(mesh.vertex_position, 3)
        normals = _corner_values(mesh.vertex_normal, 3)
        uvs = _corner_values(mesh.vertex_uv, 2)
        face_material = np.asarray(mesh.face_material, dtype=np.int64)
        triangle_face = np.repeat(np.arange(len(faces)), np.maximum(faces[:, 1] - 2, 0))
        # 2. one trimesh per material slot
        names = []
        slots = np.unique(face_material[triangle_face]) if len(face_material) else np.array([0])
        for slot in slots:
            selected = (
                corners if not len(face_material) else corners[face_material[triangle_face] == slot]
            )
            used = np.unique(selected)
            remap = np.zeros(len(positions), dtype=np.int64)
            remap[used] = np.arange(len(used))
            material = self.material(materials[int(slot)]) if slot < len(materials) else None
            geometry = trimesh.Trimesh(
                vertices=positions[used],
                faces=remap[selected],
                vertex_normals=normals[used] if normals is not None else None,
                visual=trimesh.visual.TextureVisuals(
                    uv=uvs[used] if uvs is not None else None, material=material
                ),
                process=False,
            )
            geometry.merge_vertices(merge_tex=False, merge_norm=False)
            name = trimesh.util.unique_name(mesh.name or "mesh", self.scene.geometry)
            self.scene.geometry[name] = geometry
            names.append(name)
        self.meshes[key] = names
        return names

    def material(self, material) -> trimesh.visual.material.PBRMaterial:
        if material.element_id in self.materials:
            return self.materials[material.element_id]
        base = material.pbr.base_color
        colour = base.value_vec4 if base.has_value else material.fbx.diffuse_color.value_vec4
        factor = (
            material.pbr.base_factor.value_vec4.x if material.pbr.base_factor.has_value else 1.0
        )
        rgba = [colour.x * factor, colour.y * factor, colour.z * factor, 1.0]
        image = self.texture(_own(base.texture) or _own(material.fbx.diffuse_color.texture))
        if image is not None:
            rgba = [1.0, 1.0, 1.0, 1.0]  # FBX diffuse textures replace the colour
        metallic = material.pbr.metalness.value_vec4.x if material.pbr.metalness.has_value else 0.0
        roughness = material.pbr.roughness.value_vec4.x if material.pbr.roughness.has_value else 0.5
        result = trimesh.visual.material.PBRMaterial(
            name=material.name or "material",
            baseColorFactor=[round(min(max(c, 0.0), 1.0) * 255) for c in rgba],
            baseColorTexture=image,
            metallicFactor=float(metallic),
            roughnessFactor=float(roughness),
        )
        self.materials[material.element_id] = result
        return result

    def texture(self, texture):
        if texture is None:
            return None
        from PIL import Image

        data = bytes(texture.content) if texture.content else None
        if not data:
            for reference in (texture.relative_filename, texture.filename):
                found = find_file(self.path.parent, reference) if reference else None
                if found is not None:
                    data = found.read_bytes()
                    break
        if not data:
            self.missing_textures.add(Path(texture.filename.replace("\\", "/")).name)
            return None
        image = Image.open(io.BytesIO(data))
        image.load()
        return image


def _own(element):
    """Take the reference ufbx 0.0.5 forgets to give: its element getters return a cached
    object without incrementing it, so each fetched element needs one extra reference."""
    if element is not None:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(element))
    return element


def _matrix(matrix) -> np.ndarray:
    """ufbx's 3x4 affine (stored as four columns) as a 4x4 numpy matrix."""
    columns = np.asarray(matrix, dtype=np.float64).reshape(4, 3)
    result = np.eye(4)
    result[:3, :3] = columns[:3].T
    result[:3, 3] = columns[3]
    return result


def _corner_values(attribute, width: int) -> np.ndarray | None:
    if not attribute.exists:
        return None
    values = np.asarray(attribute.values, dtype=np.float64).reshape(-1, width)
    indices = np.asarray(attribute.indices, dtype=np.int64)
    return values[indices]


def _fan(faces: np.ndarray) -> np.ndarray:
    """Corner indices of a triangle fan over each (first corner, corner count) polygon."""
    starts, counts = faces[:, 0], faces[:, 1]
    per_face = np.maximum(counts - 2, 0)
    first = np.repeat(starts, per_face)
    offsets = np.arange(per_face.sum()) - np.repeat(np.cumsum(per_face) - per_face, per_face)
    return np.column_stack([first, first + offsets + 1, first + offsets + 2])


def write_fbx(scene: Scene, path: Path, options: SaveOptions) -> list[Path]:
    """Write FBX through the configured Blender executable (GLB in, FBX out)."""
    from tasks.steps.io.gltf import write_glb

    if not options.blender_executable:
        raise write_error(
            path,
            "fbx",
            "FBX export is not available on this server (no Blender runtime configured)",
        )
    with tempfile.TemporaryDirectory(prefix="fbx-") as folder:
        source = Path(folder) / "scene.glb"
        write_glb(scene, source, options)
        command = [
            options.blender_executable,
            "--background",
            "--factory-startup",
            "--python-expr",
            _BLENDER_SCRIPT,
            "--",
            str(source),
            str(path),
        ]
        try:
            finished = subprocess.run(
                command, capture_output=True, text=True, timeout=options.blender_timeout
            )
        except FileNotFoundError as exc:
            raise write_error(
                path, "fbx", f"Blender executable '{options.blender_executable}' not found"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise write_error(
                path, "fbx", f"Blender took longer than {options.blender_timeout:g} s"
            ) from exc
    if finished.returncode != 0 or not path.is_file():
        tail = (finished.stderr or finished.stdout or "").strip().splitlines()[-1:] or ["no output"]
        raise write_error(path, "fbx", f"Blender failed (exit {finished.returncode}): {tail[0]}")
    return [path]


READERS = {"fbx": read_fbx}
WRITERS = {"fbx": write_fbx}
