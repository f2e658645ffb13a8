"""The Python SDK against the real service: jobs, results, files, and the errors users meet."""

from __future__ import annotations

import hashlib
import socket
import time
import tracemalloc
import uuid
import zipfile

import pytest

from pixyz_client import (
    AuthError,
    BadRequest,
    Client,
    JobFailed,
    NotFound,
    PayloadTooLarge,
    PixyzError,
    TooEarly,
    Unreachable,
    WaitTimeout,
)

COPY_SCRIPT = b"""
import hashlib, time

def main(pc, params):
    time.sleep(params.get("delay", 0))
    data = open(pc.get_input_file(), "rb").read()
    open(pc.get_output_dir("copy.bin"), "wb").write(data)
    open(pc.get_output_dir("nested/reversed.bin"), "wb").write(data[::-1])
    pc.progress_set_total(1)
    pc.progress_next("Copied the input")
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
"""


@pytest.fixture()
def sdk(service):
    with Client(service.url, service.key, progress=False) as client:
        yield client


@pytest.fixture()
def payload(tmp_path):
    path = tmp_path / "part.bin"
    path.write_bytes(bytes(range(256)) * 4096 + b"tail")  # 1 MiB and a bit: several chunks
    return path


def stored_output(service, job_id: str, rel: str) -> bytes:
    """An output's bytes as the server keeps them in its storage."""
    return (service.storage / "jobs" / job_id / "outputs" / rel).read_bytes()


def test_processes_and_their_documentation(sdk):
    processes = sdk.processes()
    assert {"api_test", "sleep", "convert_file", "crash_once"} <= set(processes)
    assert "duration" in sdk.doc("sleep")
    with pytest.raises(NotFound) as caught:
        sdk.doc("no_such_process")
    assert caught.value.code == 404 and caught.value.message == "Not Found"
    assert "unknown process 'no_such_process'" in caught.value.details
    assert sdk.params_schema("sleep")["properties"]["duration"]["maximum"] == 86400
    assert "step" in sdk.formats()["readable"] and "step" not in sdk.formats()["writable"]


def test_a_job_runs_to_success_and_shows_its_result(sdk):
    job = sdk.submit("api_test", params={"hello": "world"}, name="sdk-hello")
    assert job.submitted["status"] == "SENT" and job.name == "sdk-hello"
    details = job.wait(timeout=60)
    assert details["status"] == "SUCCESS"
    assert details["steps"][-1]["info"] == "Said hello"
    assert job.result == {"output": "Hello World!", "params": {"hello": "world"}}
    assert job.status() == "SUCCESS"
    assert job.state()["progress"] == 100
    listed = {j["uuid"]: j for j in sdk.jobs()}
    assert listed[job.uuid]["name"] == "sdk-hello"


def test_outputs_download_byte_identical_one_by_one_and_as_a_zip(sdk, service, payload, tmp_path):
    job = sdk.submit(file=payload, script=COPY_SCRIPT)
    job.wait(timeout=60, raise_on_failure=True)
    data = payload.read_bytes()
    assert job.result == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert sorted(job.outputs()) == ["copy.bin", "nested/reversed.bin"]

    copy = job.download("copy.bin", tmp_path / "got" / "copy.bin")
    assert copy.read_bytes() == data == stored_output(service, job.uuid, "copy.bin")
    into_folder = job.download("nested/reversed.bin", tmp_path)  # a folder: keeps the name
    assert into_folder == tmp_path / "reversed.bin"
    assert into_folder.read_bytes() == stored_output(service, job.uuid, "nested/reversed.bin")

    archive = job.download_all(tmp_path / "all.zip")
    with zipfile.ZipFile(archive) as zf:
        assert zf.read("copy.bin") == data and zf.read("nested/reversed.bin") == data[::-1]
    folder = job.download_all(tmp_path / "unpacked", extract=True)
    assert (folder / "nested" / "reversed.bin").read_bytes() == data[::-1]
    assert sorted(p.name for p in folder.iterdir()) == ["copy.bin", "nested"]  # no zip left
    with pytest.raises(NotFound, match="no output"):
        job.download("missing.bin", tmp_path)
    assert not list(tmp_path.glob("*.part"))


def test_download_all_retries_while_the_job_runs_then_gives_the_zip(sdk, payload, tmp_path):
    job = sdk.submit(file=payload, script=COPY_SCRIPT, params={"delay": 1.5})
    with pytest.raises(TooEarly) as caught:
        job.download_all(tmp_path, max_wait=0)
    assert caught.value.code == 425 and "not finished" in caught.value.details
    start = time.monotonic()
    archive = job.download_all(tmp_path, max_wait=60)  # 425s until the job ends and is zipped
    assert time.monotonic() - start > 0.5
    assert archive == tmp_path / f"{job.uuid}.zip"
    with zipfile.ZipFile(archive) as zf:
        assert zf.read("copy.bin") == payload.read_bytes()


def test_large_uploads_stream_from_disk_with_a_progress_bar(service, tmp_path, capsys):
    big = tmp_path / "big.bin"
    block = hashlib.sha256(b"seed").digest() * 32768  # 1 MiB
    with open(big, "wb") as f:
        for _ in range(12):
            f.write(block)
    with Client(service.url, service.key) as client:  # bars on by default
        tracemalloc.start()
        job = client.submit(file=big, script=COPY_SCRIPT, progress=True)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        details = job.wait(progress=True, timeout=60)
    assert peak < 4 * 1024**2, f"submit held {peak / 1024**2:.1f} MiB for a 12 MiB upload"
    assert details["result"]["sha256"] == hashlib.sha256(big.read_bytes()).hexdigest()
    bars = capsys.readouterr().err
    assert "Uploading big.bin" in bars and "12.0M" in bars
    assert f"Job {job.uuid[:8]} SUCCESS" in bars and "Saved 2 output file(s)" in bars


def test_a_failed_job_carries_its_error(sdk):
    job = sdk.submit("custom", script=b"def main(pc, params):\n    raise ValueError('no faces')\n")
    details = job.wait(timeout=60)
    assert details["status"] == "FAILURE" and details["error"] == "ValueError: no faces"
    with pytest.raises(JobFailed) as caught:
        job.wait(raise_on_failure=True)
    failure = caught.value
    assert failure.status == "FAILURE" and failure.error == details["error"]
    assert "ValueError" in failure.job["traceback"] and failure.uuid == job.uuid
    with pytest.raises(BadRequest, match=r"params\.duration: Input should be a valid number"):
        sdk.submit("sleep", params={"duration": "x"})  # a wrong param: refused at submit
    assert job.result is None


def test_waiting_can_time_out_and_a_running_job_can_be_cancelled(sdk):
    job = sdk.submit("sleep", params={"duration": 30})
    with pytest.raises(WaitTimeout, match="did not end within 0.3 s"):
        job.wait(timeout=0.3)
    assert job.cancel()["status"] == "REVOKED"
    assert job.wait(timeout=30)["status"] == "REVOKED"
    with pytest.raises(JobFailed, match="ended REVOKED"):
        job.wait(raise_on_failure=True)

    done = sdk.submit("api_test")
    done.wait(timeout=60)
    with pytest.raises(BadRequest) as caught:
        done.cancel()
    assert (
        caught.value.code == 400 and "already finished with status SUCCESS" in caught.value.details
    )


def test_unknown_jobs_bad_requests_and_wrong_keys_raise_the_servers_error(sdk, service):
    missing = sdk.job(str(uuid.uuid4()))
    for call in (missing.status, missing.details, missing.outputs, missing.cancel):
        with pytest.raises(NotFound, match=f"no job with uuid {missing.uuid}"):
            call()
    with pytest.raises(BadRequest) as caught:
        sdk.job("not-a-uuid").status()
    assert caught.value.code == 422
    with pytest.raises(BadRequest, match="unknown process 'nope'"):
        sdk.submit("nope")

    with Client(service.url, "wrong-key", progress=False) as intruder:
        assert "api_test" in intruder.processes()  # an open route
        with pytest.raises(AuthError) as caught:
            intruder.jobs()
    assert caught.value.code == 401 and caught.value.message == "Unauthorized"
    assert isinstance(caught.value, PixyzError)


def test_an_upload_over_the_servers_limit_is_refused_with_413(sdk, service, tmp_path):
    big = tmp_path / "big.step"
    with open(big, "wb") as f:
        f.truncate(service.settings.max_upload_bytes + 1)  # sparse: nothing written to disk
    with pytest.raises(PayloadTooLarge) as caught:
        sdk.submit("api_test", file=big)
    assert caught.value.code == 413 and "over this server's limit" in caught.value.details


def test_url_and_key_come_from_the_environment(service, monkeypatch):
    monkeypatch.setenv("PIXYZ_URL", service.url)
    monkeypatch.setenv("PIXYZ_API_KEY", service.key)
    with Client(progress=False) as client:
        assert client.url == service.url
        assert isinstance(client.jobs(), list)


def test_a_server_that_does_not_answer_is_unreachable():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Client(f"http://127.0.0.1:{port}", "k", progress=False) as client:
        with pytest.raises(Unreachable, match=f"cannot reach http://127.0.0.1:{port}"):
            client.processes()
