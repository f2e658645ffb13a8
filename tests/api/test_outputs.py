"""Outputs: listing, byte-exact streaming downloads, the zip archive, and paths that try to escape."""

import io
import zipfile

import pytest

from conftest import submit, wait_for

WRITER = """
import os
def main(pc, params):
    with open(pc.get_output_dir("model.bin"), "wb") as f:
        f.write(bytes(range(256)) * 4096)
    with open(pc.get_output_dir("views/iso.png"), "wb") as f:
        f.write(b"\\x89PNG fake")
    os.symlink("/etc/passwd", os.path.join(pc.get_output_dir(), "passwd"))
    with open(pc.get_input_file(), "rb") as f:
        size = len(f.read())
    return {"input_size": size}
"""


@pytest.fixture(scope="module")
def finished_job(service):
    with service.client() as client:
        job = submit(client, "custom", script=WRITER, file=_input_file())
        state = wait_for(client, job["uuid"])
        assert state["status"] == "SUCCESS", client.get(f"/jobs/{job['uuid']}/details").json()
        return job["uuid"]


def _input_file():
    from conftest import DATA

    path = DATA.parent / ".upload-check.txt"
    path.write_bytes(b"x" * 12345)
    return path


def test_outputs_are_listed_without_links(client, finished_job):
    outputs = client.get(f"/jobs/{finished_job}/outputs").json()["outputs"]
    assert outputs == ["model.bin", "views/iso.png"]


def test_the_input_reached_the_process(client, finished_job):
    assert client.get(f"/jobs/{finished_job}/details").json()["result"] == {"input_size": 12345}


def test_download_is_byte_identical_with_length_and_name(client, finished_job):
    response = client.get(f"/jobs/{finished_job}/outputs/model.bin")
    assert response.status_code == 200
    assert response.content == bytes(range(256)) * 4096
    assert response.headers["content-length"] == str(256 * 4096)
    assert response.headers["content-type"] == "application/octet-stream"
    assert 'filename="model.bin"' in response.headers["content-disposition"]
    nested = client.get(f"/jobs/{finished_job}/outputs/views/iso.png")
    assert nested.status_code == 200 and nested.content == b"\x89PNG fake"


def test_archive_holds_every_output(client, finished_job):
    for _ in range(60):  # clients retry 425 every second for up to 30 s
        response = client.get(f"/jobs/{finished_job}/outputs/archive")
        if response.status_code != 425:
            break
        assert response.json()["detail"]["code"] == 425
        import time

        time.sleep(0.5)
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(response.content))
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        assert sorted(zf.namelist()) == ["model.bin", "views/iso.png"]
        assert zf.read("model.bin") == bytes(range(256)) * 4096


def test_archive_of_an_unfinished_job_is_425(client):
    job = submit(client, "sleep", params={"duration": 3})
    response = client.get(f"/jobs/{job['uuid']}/outputs/archive")
    assert response.status_code == 425 and response.headers["retry-after"] == "1"
    client.delete(f"/jobs/{job['uuid']}")


@pytest.mark.parametrize(
    "path,codes",
    [
        ("../state.json", {400, 404}),
        ("..%2Fstate.json", {400, 404}),
        ("%2E%2E/%2E%2E/index.json", {400, 404}),
        ("views/../../state.json", {400, 404}),
        ("%2Fetc%2Fpasswd", {400, 404}),
        ("views/..%5C..%5Cstate.json", {400, 404}),
        ("passwd", {404}),
        ("missing.glb", {404}),
    ],
)
def test_paths_escaping_the_outputs_are_refused(client, finished_job, path, codes):
    response = client.get(f"/jobs/{finished_job}/outputs/{path}")
    assert response.status_code in codes, (path, response.status_code)
    assert b"root:" not in response.content and b'"uuid"' not in response.content


def test_an_archive_that_cannot_be_built_says_why_instead_of_425_forever(client, service):
    import time

    job = submit(client, "custom", script=WRITER, file=_input_file())
    assert wait_for(client, job["uuid"])["status"] == "SUCCESS"
    # An output lost from storage (a disk swapped, a bucket rule): the zip cannot be made.
    (service.storage / "jobs" / job["uuid"] / "outputs" / "model.bin").unlink()
    deadline = time.monotonic() + 30
    while (response := client.get(f"/jobs/{job['uuid']}/outputs/archive")).status_code == 425:
        assert time.monotonic() < deadline, "still 425"
        time.sleep(0.2)
    details = response.json()["detail"]["details"]
    assert response.status_code == 500, response.text
    assert details.startswith("building the archive failed (") and "model.bin" in details, details
    assert details.endswith("ask again to retry it")
    assert client.get(f"/jobs/{job['uuid']}/outputs/archive").status_code == 425  # building again
