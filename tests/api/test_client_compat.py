"""Requests shaped exactly like the existing PiXYZ API command-line client's.

That client (requests + requests_toolbelt) sends every form field on every job:
absent ones as *empty text parts* (`file`, `script`, `name` = None), `config`
with `"queue": null`, and the Content-Type of a MultipartEncoder; it reads
`steps[-2]`, retries the archive on 425 and maps final statuses to exit codes.
"""

import io
import json
import time
import zipfile

import requests
from requests_toolbelt import MultipartEncoder

from conftest import API_KEY


def post_like_the_cli(
    url, process, *, params=None, script=None, input_file=None, alias=None, queue=None, limit=3600
):
    config = {"entrypoint": "main", "queue": queue, "time_limit": int(limit)}
    fields = {
        "process": process,
        "params": json.dumps(params or {}),
        "config": json.dumps(config),
        "name": alias,
        "file": (input_file[0], io.BytesIO(input_file[1]), "application/octet-stream")
        if input_file
        else None,
        "script": ("script.py", io.BytesIO(script.encode()), "text/plain") if script else None,
    }
    encoder = MultipartEncoder(fields=fields)
    headers = {"x-api-key": API_KEY, "Content-Type": encoder.content_type}
    response = requests.post(
        f"{url}/jobs", data=encoder, headers=headers, stream=True, allow_redirects=True
    )
    response.raise_for_status()
    return response.json()["uuid"]


def watch_like_the_cli(url, job_id):
    headers = {"x-api-key": API_KEY}
    while True:
        details = requests.get(f"{url}/jobs/{job_id}/details", headers=headers).json()
        if details["progress"] is None:
            details["progress"] = 0
        format(details["progress"], "03d")  # the CLI formats progress as an int
        if len(details["steps"]) > 1:
            assert isinstance(details["steps"][-2]["info"], str)
        if details["status"] in ("SUCCESS", "FAILURE", "REVOKED"):
            return details
        time.sleep(0.2)


def test_process_command_with_no_input_file(service):
    job_id = post_like_the_cli(service.url, "api_test", params={"hello": "world"}, alias="cli-job")
    details = watch_like_the_cli(service.url, job_id)
    assert details["status"] == "SUCCESS" and details["name"] == "cli-job"
    assert details["result"]["params"] == {"hello": "world"}


def test_exec_command_uploads_script_and_input_then_downloads(service):
    script = (
        "def main(pc, params):\n"
        "    data = open(pc.get_input_file(), 'rb').read()\n"
        "    open(pc.get_output_dir('copy.bin'), 'wb').write(data)\n"
        "    return {'n': len(data)}\n"
    )
    payload = bytes(range(256)) * 2000
    job_id = post_like_the_cli(
        service.url, "custom", script=script, input_file=("model.step", payload)
    )
    details = watch_like_the_cli(service.url, job_id)
    assert details["status"] == "SUCCESS", details
    headers = {"x-api-key": API_KEY}
    assert requests.get(f"{service.url}/jobs/{job_id}/outputs", headers=headers).json() == {
        "outputs": ["copy.bin"]
    }

    one = requests.get(
        f"{service.url}/jobs/{job_id}/outputs/copy.bin", headers=headers, stream=True
    )
    chunks = b"".join(one.iter_content(chunk_size=1048576))
    assert chunks == payload and int(one.headers["content-length"]) == len(payload)

    for _ in range(30):  # the CLI's download_all loop: 425 → sleep 1 s, up to 30 times
        archive = requests.get(f"{service.url}/jobs/{job_id}/outputs/archive", headers=headers)
        if archive.status_code != 425:
            break
        time.sleep(1)
    assert archive.status_code == 200 and int(archive.headers["content-length"]) == len(
        archive.content
    )
    assert zipfile.ZipFile(io.BytesIO(archive.content)).read("copy.bin") == payload


def test_batch_exit_code_statuses_are_the_ones_the_cli_knows(service):
    # A model this server cannot read: the job is accepted, then fails.
    job_id = post_like_the_cli(service.url, "convert_file", input_file=("plan.dwg", b"AC1032"))
    details = watch_like_the_cli(service.url, job_id)
    known = {
        "SUCCESS",
        "FAILURE",
        "REVOKED",
        "RETRY",
        "PENDING",
        "STARTED",
        "RECEIVED",
        "REJECTED",
        "UNKNOWN",
    }
    assert details["status"] == "FAILURE" and details["status"] in known
    assert details["error"]


def test_list_and_jobs_commands(service):
    processes = requests.get(f"{service.url}/processes").json()  # `list` sends no key
    assert "api_test" in processes["processes"]
    jobs = requests.get(f"{service.url}/jobs", headers={"x-api-key": API_KEY})
    jobs.raise_for_status()
    assert all(
        set(j) == {"uuid", "name", "status", "progress", "error"} for j in jobs.json()["jobs"]
    )
