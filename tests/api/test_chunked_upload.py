"""Chunked, resumable uploads (tus 1.0 at `/uploads/tus`): large files in bounded memory."""

import base64
import hashlib
import os
import threading
import time

import psutil
import pytest

from pixyz_client import Client

from conftest import API_KEY, FINAL, error_of

TUS = {"Tus-Resumable": "1.0.0"}
CHUNK = {**TUS, "Content-Type": "application/offset+octet-stream"}
MiB = 1024 * 1024


def create(client, length: int, filename: str = "part.stl"):
    name = base64.b64encode(filename.encode()).decode()
    headers = {**TUS, "Upload-Length": str(length), "Upload-Metadata": f"filename {name}"}
    return client.post("/uploads/tus", headers=headers)


def patch(client, location: str, offset: int, data: bytes):
    return client.patch(location, content=data, headers={**CHUNK, "Upload-Offset": str(offset)})


def test_a_file_sent_in_chunks_becomes_a_jobs_input(private_service, tmp_path):
    client, _ = private_service()
    body = os.urandom(3 * MiB + 123)
    created = create(client, len(body))
    assert created.status_code == 201, created.text
    location = created.headers["location"]
    assert location.startswith("/uploads/tus/") and created.headers["tus-resumable"] == "1.0.0"
    assert client.head(location, headers=TUS).headers["upload-offset"] == "0"
    first = patch(client, location, 0, body[: 2 * MiB])
    assert first.status_code == 204 and first.headers["upload-offset"] == str(2 * MiB)
    assert "upload-file-url" not in first.headers
    # A client that lost track asks where to resume; a chunk at another offset is a 409.
    assert client.head(location, headers=TUS).headers["upload-offset"] == str(2 * MiB)
    assert patch(client, location, 0, body[:10]).status_code == 409
    last = patch(client, location, 2 * MiB, body[2 * MiB :])
    assert last.status_code == 204 and last.headers["upload-offset"] == str(len(body))
    file_url = last.headers["upload-file-url"]
    assert file_url.endswith("/part.stl")
    assert client.head(location, headers=TUS).headers["upload-file-url"] == file_url
    assert patch(client, location, len(body), b"").status_code == 409  # complete already

    job = client.post("/jobs", data={"process": "api_test", "file_url": file_url})
    assert job.status_code == 200, job.text
    job_id = job.json()["uuid"]
    stored = tmp_path / "storage0" / "jobs" / job_id / "inputs" / "part.stl"
    assert stored.read_bytes() == body
    for _ in range(600):
        if client.get(f"/jobs/{job_id}").json()["status"] in FINAL:
            break
        time.sleep(0.05)
    assert client.get(f"/jobs/{job_id}").json()["status"] == "SUCCESS"


def test_chunked_uploads_refuse_what_they_cannot_take(private_service, tmp_path):
    from tasks.settings import hash_key

    keys = tmp_path / "keys.txt"
    keys.write_text(f"{hash_key('other-key-0001')} submit other\n")
    client, _ = private_service(max_upload_bytes=20 * MiB, api_keys_file=str(keys))
    assert "over this server's limit" in error_of(create(client, 21 * MiB), 413)
    assert "filename" in error_of(client.post("/uploads/tus", headers={"Upload-Length": "5"}), 400)
    wrong = client.post("/uploads/tus", headers={"Tus-Resumable": "0.2.2", "Upload-Length": "5"})
    assert wrong.status_code == 412
    location = create(client, 10 * MiB).headers["location"]
    assert "at most 8,388,608 bytes" in error_of(patch(client, location, 0, b"x" * (9 * MiB)), 413)
    assert "past Upload-Length" in error_of(
        patch(client, create(client, 4).headers["location"], 0, b"12345"), 400
    )
    plain = client.patch(location, content=b"x", headers={**TUS, "Upload-Offset": "0"})
    assert plain.status_code == 415
    other = {**CHUNK, "Upload-Offset": "0", "x-api-key": "other-key-0001"}
    assert client.patch(location, content=b"x", headers=other).status_code == 404  # not theirs
    assert client.head(location, headers=other).status_code == 404
    assert client.head("/uploads/tus/" + "0" * 32, headers=TUS).status_code == 404


class PatternFile:
    """`size` bytes of a repeating random pattern, read like a file and never held whole."""

    def __init__(self, size: int, name: str = "big.bin"):
        self.size, self.name, self.position = size, name, 0
        self.pattern = os.urandom(MiB + 17)  # not a divisor of any chunk size

    def read(self, n: int = -1) -> bytes:
        n = self.size - self.position if n < 0 else min(n, self.size - self.position)
        start = self.position % len(self.pattern)
        repeats = (start + n) // len(self.pattern) + 1
        data = (self.pattern * repeats)[start : start + n]
        self.position += n
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.position, os.SEEK_END: self.size}[whence]
        self.position = base + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def sha256(self) -> str:
        digest = hashlib.sha256()
        self.seek(0)
        while chunk := self.read(8 * MiB):
            digest.update(chunk)
        self.seek(0)
        return digest.hexdigest()


SERVING = ("ray::ProxyActor", "ray::ServeReplica", "ray::JobStore", "raylet", "gcs_server")


def serving_processes() -> list[psutil.Process]:
    """The processes an upload passes through, among this test session's descendants:
    Serve's proxy and replicas, the JobStore, Ray's raylet (object store) and GCS."""
    found = []
    for proc in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if proc.name().startswith(SERVING):
                found.append(proc)
        except psutil.Error:
            pass
    return found


def memory(procs) -> tuple[int, int]:
    """(sum of RSS, sum of PSS): RSS counts a page shared by two processes twice (Ray's
    object store is mapped by the proxy and the replica), PSS splits it between them."""
    rss = pss = 0
    for proc in procs:
        try:
            info = proc.memory_full_info()
        except psutil.Error:
            continue
        rss, pss = rss + info.rss, pss + info.pss
    return rss, pss


@pytest.fixture()
def big_service(service):
    """The session's service again, at /big, with a 1 GiB upload limit (same store and storage)."""
    from ray import serve

    from serve_app.deployment import app_builder

    args = service.settings.model_dump(mode="json") | {"max_upload_bytes": 1024**3}
    serve.run(app_builder(args), name="pixyz-big", route_prefix="/big")
    yield service.url + "/big"
    serve.delete("pixyz-big")


def test_a_512_mib_upload_grows_the_service_by_at_most_64_mib(big_service, service):
    size = 512 * MiB
    source = PatternFile(size)
    expected = source.sha256()
    with Client(big_service, API_KEY, progress=False) as sdk:
        sdk.upload(PatternFile(8 * MiB, "warm.bin"))  # first requests: imports, buffers
        procs = serving_processes()
        names = sorted(p.name() for p in procs)
        assert any(n.startswith("ray::ProxyActor") for n in names), names
        assert sum(n.startswith("ray::ServeReplica") for n in names) >= 2, names
        before = memory(procs)
        peak = list(before)
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                now = memory(procs)
                peak[:] = [max(p, n) for p, n in zip(peak, now, strict=True)]
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        try:
            file_url = sdk.upload(source)
        finally:
            stop.set()
            sampler.join()
        seconds = time.monotonic() - started
        rss, pss = ((p - b) / MiB for p, b in zip(peak, before, strict=True))
        print(f"\n512 MiB chunked upload: {seconds:.1f} s; serving processes RSS +{rss:.0f} MiB,")
        print(f"PSS +{pss:.0f} MiB: {', '.join(names)}")
        assert pss <= 64, f"the service grew by {pss:.0f} MiB (PSS) during a 512 MiB upload"

        response = sdk.request(
            "POST", "/jobs", data={"process": "checksum", "file_url": file_url}
        ).json()
        details = sdk.job(response["uuid"]).wait()
    assert details["status"] == "SUCCESS", details
    assert details["result"] == {"bytes": size, "sha256": expected}  # as the job read it
    stored = service.storage / "jobs" / response["uuid"] / "inputs" / "big.bin"
    stored.unlink()  # 512 MiB less on the test machine's disk


def test_the_sdk_sends_large_files_in_chunks_and_small_ones_in_the_form(
    service, monkeypatch, tmp_path
):
    import pixyz_client.client as sdk_client

    monkeypatch.setattr(sdk_client, "CHUNKED_UPLOAD_BYTES", 1 * MiB)
    monkeypatch.setattr(sdk_client, "CHUNK_BYTES", 1 * MiB)
    seen = []
    real = Client.request

    def spy(self, method, path, **kwargs):
        seen.append((method, str(path).split("/uploads/tus/")[0]))
        return real(self, method, path, **kwargs)

    monkeypatch.setattr(Client, "request", spy)
    big, small = tmp_path / "big.stl", tmp_path / "small.stl"
    big.write_bytes(os.urandom(3 * MiB + 5))
    small.write_bytes(os.urandom(1000))
    with Client(service.url, API_KEY, progress=False) as sdk:
        for path in (big, small):
            seen.clear()
            details = sdk.submit("checksum", file=path).wait()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            assert details["result"] == {"bytes": path.stat().st_size, "sha256": digest}
            patches = sum(method == "PATCH" for method, _ in seen)
            assert patches == (4 if path is big else 0), seen
