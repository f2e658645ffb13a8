"""PLY and OFF files that other readers open: odd headers load, damaged attributes warn.

Expected counts are read from the files here, independently of the reader.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trimesh

from tasks.steps.errors import ReadError
from tasks.steps.io import load

DATA = Path(__file__).parents[1] / "data"

CUBE_HEADER = """ply
format ascii 1.0
element vertex 4
property float x
property float y
property float z
property uchar red
property uchar green
property uchar blue
element face 3
property list uchar int vertex_indices
end_header
"""
VERTICES = "0 0 0 255 0 0\n1 0 0 255 0 0\n0 1 0 255 0 0\n0 0 1 255 0 0\n"
FACES = "3 0 1 2\n3 0 1 3\n3 0 2 3\n"


def header_counts(path: Path) -> dict[str, int]:
    counts = {}
    for line in path.read_text(encoding="latin-1").split("end_header")[0].splitlines():
        words = line.split()
        if words[:1] == ["element"]:
            counts[words[1]] = int(words[2])
    return counts


def test_blender_247_ply_with_a_bare_header_line_loads():
    path = DATA / "ply/Wuson.ply"
    assert "\nCreated by Blender3D 247" in path.read_text(encoding="latin-1")
    scene = load(path)
    # every face line is a triangle ("3 a b c"), so triangles == the declared faces
    assert scene.triangle_count == header_counts(path)["face"] == 3732
    [mesh] = scene.trimesh_scene.geometry.values()
    assert mesh.visual.kind == "texture"  # the s/t coordinates were read
    assert scene.warnings == []


def test_ply_whose_vertex_lines_lack_a_declared_list_warns():
    # assimp issue #623: the vertex element declares vertex_indices, no line holds it
    path = DATA / "ply/issue623.ply"
    scene = load(path)
    [cloud] = scene.trimesh_scene.geometry.values()
    assert isinstance(cloud, trimesh.PointCloud)
    assert len(cloud.vertices) == header_counts(path)["vertex"] == 24
    assert scene.warnings == [
        "ignored vertex property vertex_indices: 24 of 24 vertex lines stop before it"
    ]


def test_faces_naming_a_missing_vertex_are_dropped_with_a_warning(tmp_path):
    path = tmp_path / "oob.ply"
    path.write_text(CUBE_HEADER + VERTICES + "3 0 1 2\n3 0 1 3\n3 0 2 9\n")
    scene = load(path)
    assert scene.triangle_count == 2
    assert scene.warnings == ["ignored 1 of 3 faces that name a vertex beyond the file's 4"]


def test_a_colour_cut_short_is_dropped_for_every_vertex_with_a_warning(tmp_path):
    path = tmp_path / "colour.ply"
    path.write_text(CUBE_HEADER + VERTICES.replace("0 1 0 255 0 0", "0 1 0 255") + FACES)
    scene = load(path)
    [mesh] = scene.trimesh_scene.geometry.values()
    assert scene.triangle_count == 3
    assert mesh.visual.kind is None  # no colour rather than a shifted one
    assert sorted(map(tuple, mesh.vertices.round(6))) == [
        (0, 0, 0),
        (0, 0, 1),
        (0, 1, 0),
        (1, 0, 0),
    ]
    assert scene.warnings == [
        "ignored vertex properties red, green, blue: 1 of 4 vertex lines stop before them"
    ]


def test_a_file_cut_inside_its_faces_keeps_the_whole_faces(tmp_path):
    path = tmp_path / "cut.ply"
    path.write_text(CUBE_HEADER + VERTICES + "3 0 1 2\n3 0 1")
    scene = load(path)
    assert scene.triangle_count == 1
    assert scene.warnings == [
        "the file ends after 2 of the 3 face lines its header declares; the missing 1 faces "
        "are not read",
        "ignored 1 face lines that stop before their last value",
    ]


def test_a_file_cut_inside_its_vertices_is_a_read_error(tmp_path):
    path = tmp_path / "cut.ply"
    path.write_text(CUBE_HEADER + "0 0 0 255 0 0\n1 0")
    with pytest.raises(
        ReadError, match="the file ends after 2 of the 4 vertex lines its header declares"
    ):
        load(path)


def test_fuzzer_ply_with_a_truncated_header_still_fails_on_it():
    with pytest.raises(ReadError, match=r"header is truncated \(no 'end_header' line\)"):
        load(DATA / "ply/crash-30d6d0f7c529b3b66b4131700b7a4580cd7082df.ply")


def test_latin1_comment_in_a_ply_header_loads(tmp_path):
    path = tmp_path / "latin1.ply"
    path.write_bytes(
        CUBE_HEADER.replace("end_header", "comment Cr\xe9\xe9 par Jos\xe9\nend_header").encode(
            "latin-1"
        )
        + (VERTICES + FACES).encode()
    )
    assert load(path).triangle_count == 3


def test_off_with_the_count_glued_to_the_keyword_loads():
    path = DATA / "off/whitespace.off"
    words = path.read_text().split()
    assert words[0] == "OFF8"  # the header as trimesh's test corpus has it
    scene = load(path)
    # 6 quad faces ("4 a b c d ...") become 12 triangles
    assert scene.triangle_count == 2 * int(words[1]) == 12
