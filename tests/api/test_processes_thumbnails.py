"""generate_thumbnails and thumbnail_chained through the service: the PNGs, the preview, the metadata."""

import io

import numpy as np
import pytest
import trimesh
from PIL import Image

from conftest import DATA, submit, wait_for

OUTPUTS = ["iso.png", "metadata.json", "preview.glb", "x.png", "y.png", "z.png"]
SMALL = {"width": 200, "height": 120, "max_triangles": 1000}


def finished(client, process, file, params=None) -> tuple[dict, dict[str, bytes]]:
    """Run a job to SUCCESS; its details and every output's bytes."""
    job = submit(client, process, file=file, params=params)
    state = wait_for(client, job["uuid"], timeout=90)
    details = client.get(f"/jobs/{job['uuid']}/details").json()
    assert state["status"] == "SUCCESS", details
    names = client.get(f"/jobs/{job['uuid']}/outputs").json()["outputs"]
    files = {name: client.get(f"/jobs/{job['uuid']}/outputs/{name}").content for name in names}
    return details, files


@pytest.fixture(scope="module")
def as1(service):
    with service.client() as client:
        return finished(client, "generate_thumbnails", DATA / "step" / "as1-oc-214.stp")


@pytest.fixture(scope="module")
def wuson(service):
    with service.client() as client:
        return finished(client, "generate_thumbnails", DATA / "off" / "Wuson.off", SMALL)


@pytest.fixture(scope="module")
def wuson_chained(service):
    with service.client() as client:
        return finished(client, "thumbnail_chained", DATA / "off" / "Wuson.off", SMALL)


def covered(png: bytes) -> float:
    """Share of the picture the model covers (alpha at least half)."""
    return float((np.asarray(Image.open(io.BytesIO(png)))[..., 3] > 127).mean())


def test_the_outputs_are_four_views_a_preview_and_the_metadata(as1):
    details, files = as1
    assert sorted(files) == OUTPUTS
    assert details["result"]["thumbs"] == {v: f"{v}.png" for v in ("iso", "x", "y", "z")}


def test_each_view_is_a_512_rgba_png_that_shows_the_model(as1):
    _, files = as1
    pixels = {}
    for view in ("iso", "x", "y", "z"):
        image = Image.open(io.BytesIO(files[f"{view}.png"]))
        assert image.format == "PNG" and image.mode == "RGBA" and image.size == (512, 512)
        assert 0.1 < covered(files[f"{view}.png"]) < 0.95, view
        pixels[view] = np.asarray(image)
    # the assembly's green plate, red rod and blue nuts are all seen from the iso corner
    iso = pixels["iso"][pixels["iso"][..., 3] > 127][:, :3].astype(int)
    dominant = iso.argmax(axis=1)
    assert all((dominant == channel).mean() > 0.01 for channel in (0, 1, 2))
    # four different pictures, not one repeated
    assert len({p.tobytes() for p in pixels.values()}) == 4


def test_the_preview_reopens_with_every_triangle_of_a_small_model(as1):
    details, files = as1
    preview = details["result"]["preview"]
    assert preview["file"] == "preview.glb" and preview["size"] == len(files["preview.glb"])
    scene = trimesh.load(io.BytesIO(files["preview.glb"]), file_type="glb")
    triangles = sum(
        len(scene.geometry[scene.graph[node][1]].faces) for node in scene.graph.nodes_geometry
    )
    assert triangles == preview["triangles"] == details["result"]["metadata"]["polygon_count"]


def test_the_metadata_counts_the_assembly(as1):
    import json

    details, files = as1
    metadata = details["result"]["metadata"]
    assert json.loads(files["metadata.json"]) == metadata
    assert metadata["part_count"] == 18 and metadata["material_count"] == 5
    assert metadata["brep_body_count"] == 18


def test_a_step_names_the_renderer_and_the_job_ran_on_the_gpu_queue(as1):
    details, _ = as1
    assert details["queue"] == "gpu"
    assert any("rendered on CPU (llvmpipe)" in s["info"] for s in details["steps"]) or any(
        "rendered on GPU" in s["info"] for s in details["steps"]
    )
    assert details["result"]["renderer"].startswith("rendered on ")


def test_the_requested_size_and_triangle_budget_are_kept(wuson):
    details, files = wuson
    for view in ("iso", "x", "y", "z"):
        assert Image.open(io.BytesIO(files[f"{view}.png"])).size == (200, 120)
        assert covered(files[f"{view}.png"]) > 0.05
    scene = trimesh.load(io.BytesIO(files["preview.glb"]), file_type="glb", force="mesh")
    assert 500 < len(scene.faces) <= 1000 == SMALL["max_triangles"]
    assert details["result"]["metadata"]["polygon_count"] == 3732


def test_chained_runs_a_cpu_stage_then_a_gpu_stage_as_children(client, wuson_chained):
    details, _ = wuson_chained
    meta = client.get(f"/backend/get_task_meta/{details['uuid']}").json()
    infos = [child["info"] for child in meta["children"]]
    assert len(infos) == 2
    assert infos[0].startswith("CPU stage") and infos[0].endswith("[cpu]")
    assert infos[1].startswith("Render stage") and infos[1].endswith("[gpu]")
    steps = [s["info"] for s in details["steps"]]
    assert any(s.startswith("CPU stage") for s in steps)
    assert any(s.startswith("Render stage") for s in steps)


def test_chained_gives_the_same_outputs_as_the_single_job(wuson, wuson_chained):
    (direct, direct_files), (chained, chained_files) = wuson, wuson_chained
    assert sorted(chained_files) == OUTPUTS
    assert chained["result"]["thumbs"] == direct["result"]["thumbs"]
    assert chained["result"]["metadata"] == direct["result"]["metadata"]
    assert chained["result"]["preview"]["triangles"] == direct["result"]["preview"]["triangles"]
    for view in ("iso", "x", "y", "z"):
        a = np.asarray(Image.open(io.BytesIO(direct_files[f"{view}.png"])), dtype=int)
        b = np.asarray(Image.open(io.BytesIO(chained_files[f"{view}.png"])), dtype=int)
        assert np.abs(a - b).mean() < 1.0, view


@pytest.mark.parametrize(
    "params,expected",
    [
        ({"width": "x"}, "params.width: Input should be a valid integer (got 'x')"),
        ({"height": 8}, "params.height: Input should be greater than or equal to 16 (got 8)"),
        ({"max_triangles": 1.5}, "params.max_triangles: Input should be a valid integer"),
        ({"up_axis": "w"}, "params.up_axis: Input should be 'auto', 'x', 'y' or 'z' (got 'w')"),
        ({"input_unit": "furlong"}, "params.input_unit: Input should be 'um', 'mm', 'cm'"),
        (
            {"width": 5000, "height": 0},
            "params.width: Input should be less than or equal to 4096 (got 5000);"
            " params.height: Input should be greater than or equal to 16 (got 0)",
        ),
    ],
)
@pytest.mark.parametrize("process", ["generate_thumbnails", "thumbnail_chained"])
def test_bad_params_are_refused_at_submit_with_the_param_named(client, process, params, expected):
    details = submit(client, process, file=DATA / "off" / "Wuson.off", params=params, expect=400)
    assert details.startswith(expected), details


def test_both_processes_document_their_params_and_outputs(client):
    for process in ("generate_thumbnails", "thumbnail_chained"):
        doc = client.get(f"/processes/{process}").json()["doc"]
        for word in ("`width`", "`height`", "512", "`max_triangles`", "500000", "preview.glb"):
            assert word in doc, (process, word)
