"""VRML97 (.wrl) through OpenCASCADE: meshes where the Transforms put them, material colours,
USE as instances, metres and +Y up; what OCCT cannot read is refused with a reason.

Expected coordinates are parsed from the files' own text here, not taken from the reader.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pytest
import trimesh

from tasks.steps.errors import ReadError, UnsupportedFormatError
from tasks.steps.io import load, save
from tasks.steps.metadata import metadata

DATA = Path(__file__).parents[1] / "data" / "vrml"

# Written for these tests: a red tetrahedron DEF'd once and USEd under a second, turned
# Transform, and a blue Box, all under a Transform moved 5 m along Z.
WORLD = """#VRML V2.0 utf8
DEF Assembly Transform {
  translation 0 0 5
  children [
    DEF Left Transform {
      translation -2 0 0
      children [ DEF Part Shape {
        appearance Appearance { material Material { diffuseColor 1 0 0 } }
        geometry IndexedFaceSet {
          coord Coordinate { point [0 0 0, 1 0 0, 0 1 0, 0 0 1] }
          coordIndex [0 2 1 -1 0 1 3 -1 0 3 2 -1 1 2 3 -1]
        }
      } ]
    }
    DEF Right Transform { translation 2 0 0 rotation 0 1 0 1.5707963 children [ USE Part ] }
    Transform {
      translation 0 3 0
      children [ Shape {
        appearance Appearance { material Material { diffuseColor 0 0 1 } }
        geometry Box { size 2 2 2 }
      } ]
    }
  ]
}
"""


def file_points(path: Path) -> np.ndarray:
    """Every ``point [ ... ]`` coordinate in a VRML file's text."""
    text = path.read_text(encoding="latin-1")
    blocks = re.findall(r"point\s*\[([^\]]*)\]", text)
    values = [float(v) for block in blocks for v in block.replace(",", " ").split()]
    return np.asarray(values).reshape(-1, 3)


@pytest.fixture
def world(tmp_path) -> Path:
    path = tmp_path / "world.wrl"
    path.write_text(WORLD)
    return path


def test_a_blender_vrml_mesh_reads_whole_in_metres_y_up():
    path = DATA / "Wuson.wrl"
    scene = load(path)
    expected = file_points(path)
    assert scene.triangle_count == 3732
    assert (scene.source_unit, scene.source_up_axis) == (1.0, "y")
    # the mesh sits under an identity Transform: its box is the file's coordinates' box
    np.testing.assert_allclose(
        scene.trimesh_scene.bounds, [expected.min(axis=0), expected.max(axis=0)], atol=1e-6
    )


def test_shapes_are_placed_by_their_transforms_with_their_colours(world):
    scene = load(world)
    ts = scene.trimesh_scene
    placed = {}
    for node in ts.graph.nodes_geometry:
        transform, name = ts.graph[node]
        colour = tuple(ts.geometry[name].visual.material.baseColorFactor[:3])
        placed.setdefault(colour, []).append(
            trimesh.transform_points(ts.geometry[name].vertices, transform)
        )
    red, blue = placed[(255, 0, 0)], placed[(0, 0, 255)]
    tetra = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=float)
    left = tetra + [-2, 0, 5]
    # rotation 0 1 0 90 degrees turns +X into -Z: (x, y, z) -> (z, y, -x)
    right = np.column_stack([tetra[:, 2], tetra[:, 1], -tetra[:, 0]]) + [2, 0, 5]
    got = sorted((np.unique(p.round(5), axis=0) for p in red), key=lambda p: p[:, 0].min())
    np.testing.assert_allclose(got[0], np.unique(left, axis=0), atol=1e-5)
    np.testing.assert_allclose(got[1], np.unique(right.round(5), axis=0), atol=1e-5)
    (box,) = blue
    np.testing.assert_allclose(
        [box.min(axis=0), box.max(axis=0)], [[-1, 2, 4], [1, 4, 6]], atol=1e-6
    )
    facts = metadata(scene)
    assert facts["material_count"] == 2 and facts["part_count"] == 3


def test_a_used_shape_is_one_mesh_placed_twice(world):
    ts = load(world).trimesh_scene
    placements = [ts.graph[node][1] for node in ts.graph.nodes_geometry]
    assert len(placements) == 3 and len(set(placements)) == 2


def test_a_gzipped_world_reads_like_the_plain_one(world, tmp_path):
    packed = tmp_path / "packed.wrl"
    packed.write_bytes(gzip.compress(world.read_bytes()))
    assert load(packed).triangle_count == load(world).triangle_count > 0


def test_a_vrml_world_converts_to_glb(world, tmp_path):
    written = save(load(world), tmp_path / "world.glb")
    reopened = trimesh.load_scene(written[0])
    np.testing.assert_allclose(reopened.bounds, load(world).trimesh_scene.bounds, atol=1e-6)


def test_a_text_node_is_refused_with_the_reason():
    with pytest.raises(ReadError, match=r"cannot read 'HelloWorld.wrl' as VRML: .*Text"):
        load(DATA / "HelloWorld.wrl")


@pytest.mark.parametrize(
    ("first_line", "reason"),
    [
        ("#VRML V1.0 ascii", "not a VRML97 file"),
        ("#X3D V3.3 utf8", "X3D classic encoding is not supported"),
    ],
)
def test_other_vrml_versions_are_refused(tmp_path, first_line, reason):
    path = tmp_path / "old.wrl"
    path.write_text(f"{first_line}\nSeparator {{ }}\n")
    with pytest.raises(ReadError, match=reason):
        load(path)


def test_x3d_is_not_offered():
    with pytest.raises(UnsupportedFormatError, match="unsupported format '.x3d'"):
        load(DATA / "scene.x3d")
