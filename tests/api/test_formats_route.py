"""`GET /formats` says what this server reads and writes, from the registry itself."""

from conftest import DATA, submit, wait_for


def test_formats_are_listed_without_a_key_from_the_registry(service):
    from tasks.steps.io.registry import FORMATS, readable_extensions, writable_extensions

    with service.client(key=None) as anonymous:
        answer = anonymous.get("/formats")
    assert answer.status_code == 200
    body = answer.json()
    assert body["readable"] == readable_extensions()
    assert body["writable"] == writable_extensions()
    by_name = {f["name"]: f for f in body["formats"]}
    assert set(by_name) == {spec.name for spec in FORMATS}
    step = by_name["STEP"]
    assert step["extensions"] == ["step", "stp"] and step["read"] and not step["write"]
    assert step["up_axis"] == "z" and step["metres_per_unit"] == 0.001
    gltf = by_name["glTF"]
    assert {"glb", "gltf"} == set(gltf["extensions"]) and gltf["read"] and gltf["write"]
    assert {"hierarchy", "materials", "textures"} <= set(gltf["holds"])


def test_what_formats_says_is_what_jobs_accept(client):
    body = client.get("/formats").json()
    # a readable extension is read (OFF here), a writable one is a valid params.extension
    assert "off" in body["readable"]
    job = submit(
        client, "convert_file", file=DATA / "off" / "Wuson.off", params={"extension": "stl"}
    )
    assert "stl" in body["writable"]
    assert wait_for(client, job["uuid"])["status"] == "SUCCESS"
    not_writable = next(e for e in body["readable"] if e not in body["writable"])
    details = submit(
        client,
        "convert_file",
        file=DATA / "off" / "Wuson.off",
        params={"extension": not_writable},
        expect=400,
    )
    assert details.startswith(
        f"params.extension: unsupported format '.{not_writable}'; this server writes "
    )


def test_ifc_and_3dm_are_readable_not_writable(service):
    with service.client(key=None) as anonymous:
        body = anonymous.get("/formats").json()
    assert {"ifc", "3dm"} <= set(body["readable"])
    assert not {"ifc", "3dm"} & set(body["writable"])
    by_name = {f["name"]: f for f in body["formats"]}
    for name in ("IFC", "3DM"):
        assert by_name[name]["up_axis"] == "z" and not by_name[name]["write"]
        assert {"hierarchy", "materials", "instances", "units"} <= set(by_name[name]["holds"])


def test_pixyz_own_format_is_refused_at_submit_naming_what_is_written(client):
    # .pxz is PiXYZ's native scene format: this server has no writer for it
    details = submit(client, "convert_file", params={"extension": "pxz"}, expect=400)
    assert details.startswith("params.extension: unsupported format '.pxz'; this server writes ")
    assert "glb" in details.split("writes ", 1)[1]
