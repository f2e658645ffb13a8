"""convert_file through the service: upload a model, download it in another format, re-open it."""

import io
import zipfile

import numpy as np
import pytest
import trimesh

from conftest import DATA, submit, wait_for


def run(client, file, params=None) -> tuple[dict, dict]:
    job = submit(client, "convert_file", file=file, params=params)
    state = wait_for(client, job["uuid"])
    return state, client.get(f"/jobs/{job['uuid']}/details").json()


def download(client, job_id, name) -> bytes:
    response = client.get(f"/jobs/{job_id}/outputs/{name}")
    assert response.status_code == 200, response.text
    return response.content


def test_a_zip_of_obj_mtl_and_texture_becomes_a_textured_glb(client, tmp_path):
    archive = tmp_path / "fuze.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in (DATA / "obj" / "fuze").iterdir():
            zf.write(path, f"fuze/{path.name}")

    state, details = run(client, archive)

    assert state["status"] == "SUCCESS", details
    assert details["result"]["output"] == "output.glb"
    glb = download(client, details["uuid"], "output.glb")
    mesh = trimesh.load(io.BytesIO(glb), file_type="glb", force="mesh")
    assert len(mesh.faces) == 1000
    texture = mesh.visual.material.baseColorTexture
    assert texture is not None and texture.size == (1024, 1024)
    # the label's colours survive, not a flat grey
    assert np.asarray(texture.convert("RGB")).std() > 20
    assert [s["info"] for s in details["steps"]][-3:-1] == [
        "Read fuze.obj (OBJ): 1 part(s), 1,000 triangles",
        "Wrote output.glb as glTF (1 file(s))",
    ]


def test_gltf_output_comes_with_its_bin_and_reopens(client, tmp_path):
    state, details = run(
        client, DATA / "off" / "Wuson.off", {"extension": ".GLTF", "filename": "wuson.off"}
    )

    assert state["status"] == "SUCCESS", details
    result = details["result"]
    assert result["output"] == "wuson.gltf" and result["files"] == ["wuson.gltf", "wuson.bin"]
    outputs = client.get(f"/jobs/{details['uuid']}/outputs").json()["outputs"]
    assert sorted(outputs) == sorted(result["files"])
    for name in result["files"]:
        (tmp_path / name).write_bytes(download(client, details["uuid"], name))
    mesh = trimesh.load(tmp_path / "wuson.gltf", force="mesh")
    assert len(mesh.faces) == result["triangles"] == 3732


@pytest.mark.parametrize(
    "file,expected",
    [
        ("fbx/transparentTest.fbx", "cannot read 'transparentTest.fbx' as FBX: "),
        ("off/OutOfMemory.off", "cannot read 'OutOfMemory.off' as OFF: "),
    ],
)
def test_a_broken_file_fails_with_a_line_naming_file_and_format(client, file, expected):
    state, details = run(client, DATA / file)

    assert state["status"] == "FAILURE"
    assert state["error"].startswith(expected), state["error"]
    assert "\n" not in state["error"] and "Traceback" not in state["error"]


def test_an_unknown_input_format_fails_as_unsupported(client, tmp_path):
    drawing = tmp_path / "plan.dwg"
    drawing.write_bytes(b"AC1032" + bytes(100))

    state, _ = run(client, drawing)

    assert state["status"] == "FAILURE"
    assert state["error"].startswith("unsupported format '.dwg' for 'plan.dwg'; this server reads")
    assert "step" in state["error"]


@pytest.mark.parametrize(
    "params,expected",
    [
        (
            {"extension": "dwg"},
            "params.extension: unsupported format '.dwg'; this server writes 3mf, fbx, glb,",
        ),
        ({"extension": 3}, "params.extension: Input should be a valid string (got 3)"),
        ({"filename": "../../etc/x"}, "params.filename: must be 1-100 letters"),
        ({"filename": ".step"}, "params.filename: must be 1-100 letters"),
    ],
)
def test_bad_params_are_refused_at_submit_with_the_param_named(client, params, expected):
    before = len(client.get("/jobs").json()["jobs"])
    details = submit(
        client, "convert_file", file=DATA / "off" / "Wuson.off", params=params, expect=400
    )
    assert details.startswith(expected), details
    assert len(client.get("/jobs").json()["jobs"]) == before  # nothing was stored


def test_unknown_params_are_kept_with_a_warning(client):
    job = submit(client, "convert_file", file=DATA / "off" / "Wuson.off", params={"colour": 1})
    assert wait_for(client, job["uuid"])["status"] == "SUCCESS"
    details = client.get(f"/jobs/{job['uuid']}/details").json()
    assert details["warnings"] == [
        "params.colour is not a parameter of process 'convert_file'; it was kept and is ignored"
    ]


def test_the_process_documents_its_params_and_result(client):
    doc = client.get("/processes/convert_file").json()["doc"]
    for word in ("`extension`", '"glb"', "`filename`", '"output"', '"files"', "Result"):
        assert word in doc


def test_a_step_plate_comes_out_at_its_size_in_the_unit_asked_for(client):
    state, details = run(
        client, DATA / "step" / "as1-oc-214.stp", {"extension": "stl", "output_unit": "cm"}
    )

    assert state["status"] == "SUCCESS", details
    result = details["result"]
    assert result["source_unit"] == {"unit": "mm", "metres_per_unit": 0.001, "up_axis": "z"}
    assert result["output_unit"] == {"unit": "cm", "metres_per_unit": 0.01, "up_axis": "z"}
    mesh = trimesh.load(io.BytesIO(download(client, details["uuid"], "output.stl")), "stl")
    # the 200 x 150 x 84 mm plate, in centimetres and still Z-up as its STEP file draws it
    assert mesh.extents == pytest.approx([20.0, 15.0, 8.4], abs=0.02)


def test_an_unknown_unit_is_refused_at_submit(client):
    details = submit(client, "convert_file", params={"output_unit": "cubit"}, expect=400)
    assert details.startswith("params.output_unit: Input should be 'um', 'mm'"), details


def test_an_ifc_house_becomes_a_glb_in_metres_with_its_named_elements(client):
    state, details = run(client, DATA / "ifc" / "IfcOpenHouse.ifc")

    assert state["status"] == "SUCCESS", details
    result = details["result"]
    assert result["output"] == "output.glb"
    assert result["source_unit"] == {"unit": "mm", "metres_per_unit": 0.001, "up_axis": "z"}
    glb = trimesh.load(io.BytesIO(download(client, details["uuid"], "output.glb")), "glb")
    assert {"South wall", "North wall", "Footing", "Roof"} <= set(glb.graph.nodes)
    # the 10 m by 3 m south wall (a 360 mm thick extrusion of 10000 x 3000 mm), +Y up
    matrix, name = glb.graph["South wall"]
    wall = glb.geometry[name].copy().apply_transform(matrix)
    assert wall.extents == pytest.approx([10.0, 3.0, 0.36], abs=1e-4)
