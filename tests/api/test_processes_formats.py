"""Every corpus format, through the API: converted to a GLB that opens, described, thumbnailed.

Multi-file models (glTF + .bin, OBJ + MTL + textures, layered USD) are uploaded
as a .zip the way users send them; the runner finds the root model inside.
"""

import io
import zipfile

import pytest
import trimesh
from PIL import Image

from conftest import DATA, submit, wait_for

SINGLE = {
    "3mf": "3mf/cube_gears.3mf",
    "dae": "dae/teapot_instancenodes.DAE",
    "fbx": "fbx/spider.fbx",
    "glb": "glb/CesiumMilkTruck.glb",
    "iges": "iges/sunglasses_lens.igs",
    "off": "off/Wuson.off",
    "ply": "ply/cycloidal.ply",
    "step": "step/red_cube_blue_cylinder.step",
    "stl": "stl/Spider_ascii.stl",
}
FOLDERS = {"gltf": "gltf/2CylinderEngine_draco", "obj": "obj/fuze", "usd": "usd/teapot"}
FORMATS = sorted([*SINGLE, *FOLDERS])


def upload_for(fmt: str, tmp_path):
    if fmt in SINGLE:
        return DATA / SINGLE[fmt]
    folder = DATA / FOLDERS[fmt]
    archive = tmp_path / f"{fmt}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in folder.rglob("*"):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    return archive


@pytest.fixture(scope="module")
def jobs(service, tmp_path_factory):
    """Submit every (format, process) pair at once, then wait: the cluster works through them."""
    tmp = tmp_path_factory.mktemp("formats")
    with service.client() as client:
        submitted = {}
        for fmt in FORMATS:
            upload = upload_for(fmt, tmp)
            for process, params in (
                ("convert_file", {}),
                ("generate_metadata", {}),
                ("generate_thumbnails", {"width": 128, "height": 128}),
            ):
                submitted[fmt, process] = submit(client, process, file=upload, params=params)[
                    "uuid"
                ]
        finished = {}
        for key, job_id in submitted.items():
            wait_for(client, job_id, timeout=300)
            finished[key] = client.get(f"/jobs/{job_id}/details").json()
        return finished


@pytest.mark.parametrize("fmt", FORMATS)
def test_converts_to_a_glb_that_opens_with_triangles(client, jobs, fmt):
    details = jobs[fmt, "convert_file"]
    assert details["status"] == "SUCCESS", details["error"]
    assert details["result"]["output"] == "output.glb"
    glb = client.get(f"/jobs/{details['uuid']}/outputs/output.glb").content
    scene = trimesh.load(io.BytesIO(glb), file_type="glb", force="scene")
    triangles = sum(len(g.faces) for g in scene.geometry.values() if hasattr(g, "faces"))
    assert triangles > 0
    assert details["result"]["triangles"] >= triangles  # placed instances count once per placement


@pytest.mark.parametrize("fmt", FORMATS)
def test_metadata_counts_the_polygons(jobs, fmt):
    details = jobs[fmt, "generate_metadata"]
    assert details["status"] == "SUCCESS", details["error"]
    metadata = details["result"]["metadata"]
    assert metadata["polygon_count"] > 0 and metadata["part_count"] > 0 and metadata["aabb"] > 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_thumbnails_show_the_model(client, jobs, fmt):
    details = jobs[fmt, "generate_thumbnails"]
    assert details["status"] == "SUCCESS", details["error"]
    png = client.get(f"/jobs/{details['uuid']}/outputs/iso.png").content
    image = Image.open(io.BytesIO(png))
    assert image.size == (128, 128) and image.mode == "RGBA"
    alpha = image.getchannel("A")
    opaque = sum(1 for a in alpha.getdata() if a > 0) / (128 * 128)
    assert 0.02 < opaque < 0.95, f"{fmt}: {opaque:.1%} of the thumbnail is covered"
