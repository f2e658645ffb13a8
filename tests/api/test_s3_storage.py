"""The same service on S3 storage (moto's S3 server on 127.0.0.1, through s3fs as in production)."""

import io
import json
import zipfile

import httpx
import pytest
import s3fs
from ray import serve

from conftest import API_KEY, MAX_UPLOAD, error_of, submit, wait_for

BUCKET = "pixyz-test"


@pytest.fixture(scope="module")
def s3_service(service, moto_server):
    from serve_app.deployment import app_builder
    from tasks.settings import hash_key

    options = {"endpoint_url": moto_server, "key": "testing", "secret": "testing"}
    s3fs.S3FileSystem(**options).mkdir(BUCKET)
    args = {
        "storage": f"s3://{BUCKET}/service",
        "storage_options": options,
        "api_key_sha256": [hash_key(API_KEY)],
        "allow_scripts": True,
        "store_name": "pixyz-jobstore-s3",
        "max_upload_bytes": MAX_UPLOAD,
    }
    serve.run(app_builder(args), name="pixyz-s3", route_prefix="/s3")
    yield service, options
    serve.delete("pixyz-s3")


@pytest.fixture()
def s3_client(s3_service):
    service, _ = s3_service
    with service.client(prefix="/s3") as c:
        yield c


SCRIPT = """
def main(pc, params):
    data = open(pc.get_input_file(), "rb").read()
    with open(pc.get_output_dir("out/reversed.bin"), "wb") as f:
        f.write(data[::-1])
    return {"size": len(data)}
"""


def test_jobs_inputs_outputs_and_state_live_in_the_bucket(s3_client, s3_service, tmp_path):
    _, options = s3_service
    model = tmp_path / "part.bin"
    payload = bytes(range(256)) * 9000  # 2.3 MB: several upload chunks
    model.write_bytes(payload)
    job = submit(s3_client, "custom", script=SCRIPT, file=model)
    assert wait_for(s3_client, job["uuid"])["status"] == "SUCCESS"
    assert s3_client.get(f"/jobs/{job['uuid']}/details").json()["result"] == {"size": len(payload)}
    assert s3_client.get(f"/jobs/{job['uuid']}/outputs").json()["outputs"] == ["out/reversed.bin"]
    download = s3_client.get(f"/jobs/{job['uuid']}/outputs/out/reversed.bin")
    assert download.content == payload[::-1]
    assert download.headers["content-length"] == str(len(payload))

    fs = s3fs.S3FileSystem(**options)
    base = f"{BUCKET}/service/jobs/{job['uuid']}"
    assert fs.cat(f"{base}/inputs/part.bin") == payload
    assert json.loads(fs.cat(f"{base}/state.json"))["status"] == "SUCCESS"
    index = json.loads(fs.cat(f"{BUCKET}/service/state/index.json"))
    assert job["uuid"] in [j["uuid"] for j in index["jobs"]]

    for _ in range(60):
        archive = s3_client.get(f"/jobs/{job['uuid']}/outputs/archive")
        if archive.status_code == 200:
            break
        import time

        time.sleep(0.5)
    with zipfile.ZipFile(io.BytesIO(archive.content)) as zf:
        assert zf.read("out/reversed.bin") == payload[::-1]


def test_large_files_can_skip_the_proxy_with_a_presigned_upload(s3_client):
    payload = b"presigned" * 100_000
    ticket = s3_client.post("/uploads", json={"filename": "big part.bin", "size": len(payload)})
    assert ticket.status_code == 200, ticket.text
    ticket = ticket.json()
    put = httpx.put(ticket["url"], content=payload, timeout=60)
    assert put.status_code == 200, put.text
    data = {"process": "custom", "file_url": ticket["file_url"], "params": "{}", "config": "{}"}
    job = s3_client.post("/jobs", data=data, files={"script": ("s.py", SCRIPT.encode())})
    assert job.status_code == 200, job.text
    job_id = job.json()["uuid"]
    assert wait_for(s3_client, job_id)["status"] == "SUCCESS"
    assert s3_client.get(f"/jobs/{job_id}/details").json()["result"] == {"size": len(payload)}


def test_file_url_must_come_from_uploads(s3_client):
    not_ours = "file_url must be the 'file_url' value returned by POST /uploads"
    for bad, reason in (
        ("../../etc/passwd", not_ours),
        ("uploads/xyz/a.stl", not_ours),
        (
            f"uploads/{'0' * 32}/missing.stl",
            f"nothing was uploaded to uploads/{'0' * 32}/missing.stl (PUT the file to the"
            " presigned URL first)",
        ),
    ):
        response = s3_client.post("/jobs", data={"process": "api_test", "file_url": bad})
        assert error_of(response, 400) == reason, bad


def test_presigned_uploads_are_held_to_the_upload_limit(s3_client, s3_service):
    over = s3_client.post("/uploads", json={"filename": "huge.bin", "size": MAX_UPLOAD + 1})
    assert f"over this server's limit of {MAX_UPLOAD:,} bytes" in error_of(over, 413)

    # A client that declares the limit and sends more: the store refuses the PUT (the size is
    # signed), or, where a store does not check that, the job that claims the object is refused.
    ticket = s3_client.post("/uploads", json={"filename": "liar.bin", "size": MAX_UPLOAD}).json()
    put = httpx.put(ticket["url"], content=b"\0" * (MAX_UPLOAD + 1024), timeout=60)
    job = s3_client.post("/jobs", data={"process": "api_test", "file_url": ticket["file_url"]})
    if put.status_code == 200:
        assert "over this server's limit" in error_of(job, 413)
    else:
        assert put.status_code in (400, 403), put.text
        assert "nothing was uploaded" in error_of(job, 400)
    _, options = s3_service
    assert not s3fs.S3FileSystem(**options).exists(f"{BUCKET}/service/{ticket['file_url']}")


def test_unclaimed_uploads_expire(s3_client, s3_service):
    import ray

    _, options = s3_service
    ticket = s3_client.post("/uploads", json={"filename": "left.bin", "size": 4}).json()
    assert httpx.put(ticket["url"], content=b"left", timeout=60).status_code == 200
    fs = s3fs.S3FileSystem(**options)
    assert fs.exists(f"{BUCKET}/service/{ticket['file_url']}")
    store = ray.get_actor("pixyz-jobstore-s3", namespace="pixyz")
    assert ray.get(store.expire_uploads.remote(1.0)) == 0  # younger than an hour: kept
    assert ray.get(store.expire_uploads.remote(0.0)) >= 1
    fs.invalidate_cache()
    assert not fs.exists(f"{BUCKET}/service/{ticket['file_url']}")
    job = s3_client.post("/jobs", data={"process": "api_test", "file_url": ticket["file_url"]})
    assert "nothing was uploaded" in error_of(job, 400)


def test_local_storage_says_it_cannot_presign(client):
    response = client.post("/uploads", json={"filename": "a.step", "size": 10})
    assert response.status_code == 400
    assert "POST /jobs" in response.json()["detail"]["details"]


@pytest.mark.parametrize("chunk", [1024 * 1024, 5 * 1024 * 1024], ids=["copied", "merged"])
def test_a_chunked_upload_lands_in_the_bucket_and_feeds_a_job(s3_client, chunk):
    import base64
    import os

    payload = os.urandom(11 * 1024 * 1024 + 7)
    tus = {"Tus-Resumable": "1.0.0"}
    name = base64.b64encode(b"big.bin").decode()
    created = s3_client.post(
        "/uploads/tus",
        headers={**tus, "Upload-Length": str(len(payload)), "Upload-Metadata": f"filename {name}"},
    )
    assert created.status_code == 201, created.text
    location = created.headers["location"]
    assert location.startswith("/s3/uploads/tus/")  # under the application's route prefix
    location = location.removeprefix("/s3")
    for offset in range(0, len(payload), chunk):
        response = s3_client.patch(
            location,
            content=payload[offset : offset + chunk],
            headers={
                **tus,
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
            },
        )
        assert response.status_code == 204, response.text
    assert s3_client.head(location, headers=tus).headers["upload-offset"] == str(len(payload))
    job = s3_client.post(
        "/jobs",
        data={"process": "custom", "file_url": response.headers["upload-file-url"]},
        files={"script": ("script.py", SCRIPT.encode())},
    )
    assert job.status_code == 200, job.text
    assert wait_for(s3_client, job.json()["uuid"])["status"] == "SUCCESS"
    details = s3_client.get(f"/jobs/{job.json()['uuid']}/details").json()
    assert details["result"] == {"size": len(payload)}
    output = s3_client.get(f"/jobs/{job.json()['uuid']}/outputs/out/reversed.bin")
    assert output.content == payload[::-1]  # the job read every byte, in order


def test_the_sdk_puts_large_files_straight_into_the_bucket(s3_service, monkeypatch, tmp_path):
    import hashlib
    import os

    import pixyz_client.client as sdk_client
    from pixyz_client import Client

    service, _ = s3_service
    monkeypatch.setattr(sdk_client, "CHUNKED_UPLOAD_BYTES", 1024 * 1024)
    patched = []
    real = Client.request
    monkeypatch.setattr(
        Client,
        "request",
        lambda self, method, path, **kw: patched.append(method) or real(self, method, path, **kw),
    )
    model = tmp_path / "big.bin"
    model.write_bytes(os.urandom(3 * 1024 * 1024 + 1))
    with Client(service.url + "/s3", API_KEY, progress=False) as sdk:
        job = sdk.submit("custom", file=model, script=SCRIPT.encode())
        assert job.wait()["result"] == {"size": model.stat().st_size}
        reversed_back = job.download("out/reversed.bin", tmp_path / "r.bin").read_bytes()
    assert (
        hashlib.sha256(reversed_back[::-1]).digest() == hashlib.sha256(model.read_bytes()).digest()
    )
    assert "PATCH" not in patched  # the presigned PUT, not the chunked path
