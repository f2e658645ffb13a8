"""Bad input gets a clear 4xx in the documented error shape, and harms nothing else."""

import json

import pytest

from conftest import MAX_UPLOAD, error_of, submit, wait_for


@pytest.mark.parametrize("field", ["params", "config"])
def test_invalid_json_is_400_naming_the_field(client, field):
    data = {"process": "api_test", "params": "{}", "config": "{}", field: "{not json"}
    assert field in error_of(client.post("/jobs", data=data), 400)


@pytest.mark.parametrize("field,value", [("params", "[1, 2]"), ("config", '"text"')])
def test_json_that_is_not_an_object_is_400(client, field, value):
    data = {"process": "api_test", field: value}
    assert "JSON object" in error_of(client.post("/jobs", data=data), 400)


@pytest.mark.parametrize(
    "config,word",
    [
        ({"queue": "turbo"}, "queue"),
        ({"time_limit": -1}, "time_limit"),
        ({"time_limit": "soon"}, "time_limit"),
        ({"entrypoint": "os.system"}, "entrypoint"),
        ({"callback_url": "file:///etc/passwd"}, "callback_url"),
    ],
)
def test_invalid_config_values_are_400(client, config, word):
    data = {"process": "api_test", "config": json.dumps(config)}
    assert word in error_of(client.post("/jobs", data=data), 400)


def test_unknown_process_is_400_listing_the_known_ones(client):
    details = error_of(client.post("/jobs", data={"process": "render_everything"}), 400)
    assert "render_everything" in details and "api_test" in details


def test_custom_without_script_is_400(client):
    assert "script" in error_of(client.post("/jobs", data={"process": "custom"}), 400)
    # No process at all means `custom`, which needs a script too.
    assert "script" in error_of(client.post("/jobs", data={"params": "{}"}), 400)


def test_script_without_the_entry_function_is_400(client):
    files = {"script": ("s.py", b"def other(pc, params):\n    return {}\n")}
    details = error_of(client.post("/jobs", data={"process": "custom"}, files=files), 400)
    assert "'main'" in details
    files = {"script": ("s.py", b"def main(pc, params):\n    return {}\n")}
    data = {"process": "custom", "config": json.dumps({"entrypoint": "run"})}
    assert "'run'" in error_of(client.post("/jobs", data=data, files=files), 400)
    files = {"script": ("s.py", b"def main(pc, params)\n")}
    assert "not valid Python" in error_of(
        client.post("/jobs", data={"process": "custom"}, files=files), 400
    )


def test_malformed_uuid_is_422_and_unknown_job_is_404(client):
    for path in (
        "/jobs/123",
        "/jobs/123/details",
        "/jobs/123/outputs",
        "/jobs/123/outputs/archive",
        "/jobs/123/outputs/a.glb",
        "/backend/get_task_meta/123",
    ):
        error_of(client.get(path), 422)
    unknown = "7f8e0a52-8a5b-4a52-b7a4-1d0d3c1a9f00"
    for path in ("", "/details", "/outputs", "/outputs/archive", "/outputs/a.glb"):
        assert unknown in error_of(client.get(f"/jobs/{unknown}{path}"), 404)
    error_of(client.get(f"/backend/get_task_meta/{unknown}"), 404)
    error_of(client.delete(f"/jobs/{unknown}"), 404)


def test_oversize_upload_is_413_and_leaves_nothing_behind(client, service):
    before = (
        set((service.storage / "jobs").iterdir()) if (service.storage / "jobs").exists() else set()
    )
    big = b"\0" * (MAX_UPLOAD + 1024)
    response = client.post("/jobs", data={"process": "api_test"}, files={"file": ("big.stl", big)})
    assert "limit" in error_of(response, 413)

    def chunks():  # no Content-Length: the cap must hold on the bytes received
        boundary = b"--xyz"
        yield (
            boundary
            + b'\r\nContent-Disposition: form-data; name="file"; filename="big.stl"\r\n\r\n'
        )
        for _ in range(MAX_UPLOAD // (1024 * 1024) + 2):
            yield b"\0" * (1024 * 1024)
        yield b"\r\n" + boundary + b"--\r\n"

    response = client.post(
        "/jobs", content=chunks(), headers={"content-type": "multipart/form-data; boundary=xyz"}
    )
    error_of(response, 413)
    after = (
        set((service.storage / "jobs").iterdir()) if (service.storage / "jobs").exists() else set()
    )
    assert after == before


def test_truncated_multipart_is_400(client):
    body = (
        b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.stl"\r\n\r\nsolid a\n'
    )
    response = client.post(
        "/jobs", content=body, headers={"content-type": "multipart/form-data; boundary=xyz"}
    )
    assert "truncated" in error_of(response, 400) or "malformed" in error_of(response, 400)


def test_wrong_content_type_is_400(client):
    response = client.post("/jobs", json={"process": "api_test"})
    assert "multipart/form-data" in error_of(response, 400)


def test_bad_requests_do_not_disturb_a_running_job(client):
    job = submit(client, "sleep", params={"duration": 1})
    client.post("/jobs", data={"process": "custom"})
    client.post("/jobs", data={"process": "api_test", "params": "{oops"})
    client.get("/jobs/not-a-uuid")
    assert wait_for(client, job["uuid"])["status"] == "SUCCESS"


@pytest.mark.parametrize("depth", [33, 100_000])
def test_deeply_nested_params_are_400_not_a_crash(client, depth):
    params = "[" * depth + "]" * depth
    data = {"process": "api_test", "params": '{"a": ' + params + "}"}
    assert "nested too deeply" in error_of(client.post("/jobs", data=data), 400)


def test_params_over_a_megabyte_are_413(client):
    big = '{"blob": "' + "x" * (1024 * 1024 + 10) + '"}'
    files = {"params": (None, big)}
    response = client.post("/jobs", data={"process": "api_test"}, files=files)
    assert "params" in error_of(response, 413)
