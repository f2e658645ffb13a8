"""The `pixyz` user commands against the real service.

The existing PiXYZ API client's flags, outputs and exit codes, run in this process
through `pixyz_client.cli.main` (and once through `python -m serve_app.cli`).
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from pixyz_client import Client
from pixyz_client.cli import main

from conftest import DATA, REPO

STEP = DATA / "step" / "red_cube_blue_cylinder.step"  # 2 coloured parts, 18 KB
STL = DATA / "stl" / "Spider_ascii.stl"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

SCRIPT = """
import time

def main(pc, params):
    time.sleep(params.get("sleep", 0))
    if params.get("fail"):
        raise ValueError("asked to fail")
    if params.get("copy"):
        data = open(pc.get_input_file(), "rb").read()
        open(pc.get_output_dir("out/copy.bin"), "wb").write(data)
    return {"params": params}
"""


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


@pytest.fixture()
def pixyz(service, monkeypatch, capsys):
    """Run `pixyz ARGS...` here; URL and key come from the environment, as in a user's shell."""
    monkeypatch.setenv("PIXYZ_URL", service.url)
    monkeypatch.setenv("PIXYZ_API_KEY", service.key)

    def run(*argv: str) -> Run:
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


@pytest.fixture()
def script(tmp_path) -> Path:
    path = tmp_path / "job.py"
    path.write_text(SCRIPT)
    return path


def stored_output(service, job_id: str, rel: str) -> bytes:
    return (service.storage / "jobs" / job_id / "outputs" / rel).read_bytes()


def test_list_doc_and_jobs_print_json_like_the_existing_client(pixyz):
    listed = pixyz("list")
    assert listed.code == 0 and "api_test" in listed.json()["processes"]
    assert listed.out.startswith('{\n    "processes"')  # indented for people
    assert pixyz("list", "--json").out.count("\n") == 1  # one line for machines

    doc = pixyz("doc", "-n", "sleep")
    assert doc.code == 0 and doc.out.startswith("Process 'sleep' documentation:")
    assert pixyz("doc", "-n", "sleep", "--json").json()["name"] == "sleep"
    assert isinstance(pixyz("jobs").json()["jobs"], list)


def test_exec_uploads_then_download_and_download_all_fetch_the_files(
    pixyz, service, script, tmp_path
):
    model = tmp_path / "model.bin"
    model.write_bytes(os.urandom(300_000))
    run = pixyz("exec", "-s", script, "-i", model, "-p", '{"copy": true}', "-a", "cli-exec", "-w")
    assert run.code == 0, run.err
    job_id = re.search(r"Job \[ (\S+) \] submitted \(custom\)", run.out).group(1)
    assert f"Job [ {job_id} ] SUCCESS in" in run.out
    assert run.err == ""  # no bars: stderr is not a terminal here

    details = pixyz("details", "-j", job_id).json()
    assert details["name"] == "cli-exec" and details["result"] == {"params": {"copy": True}}
    assert pixyz("outputs", "-j", job_id).json() == {"outputs": ["out/copy.bin"]}

    got = pixyz("download", "-j", job_id, "-f", "out/copy.bin", "-o", tmp_path / "copy.bin")
    assert got.code == 0 and "downloaded to" in got.out and "(293.0 KiB)" in got.out
    assert (tmp_path / "copy.bin").read_bytes() == stored_output(service, job_id, "out/copy.bin")
    assert (tmp_path / "copy.bin").read_bytes() == model.read_bytes()

    everything = pixyz("download_all", "-j", job_id, "-o", tmp_path / "all.zip", "--json")
    assert everything.code == 0 and everything.json()["path"] == str(tmp_path / "all.zip")
    with zipfile.ZipFile(tmp_path / "all.zip") as zf:
        assert zf.read("out/copy.bin") == model.read_bytes()


def test_process_status_and_result_flags(pixyz):
    submitted = pixyz("process", "-n", "api_test", "-p", '{"n": 1}', "-a", "cli-process", "--json")
    assert submitted.code == 0
    job_id = submitted.json()["uuid"]
    assert submitted.json()["status"] == "SENT"

    watched = pixyz("status", "-j", job_id, "-w")
    assert watched.code == 0 and watched.json()["status"] == "SUCCESS"
    assert watched.json()["name"] == "cli-process"
    assert pixyz("status", "-j", job_id).json()["progress"] == 100

    with_result = pixyz("process", "-n", "api_test", "-p", '{"n": 2}', "-w", "-r")
    assert with_result.code == 0
    details = json.loads(with_result.out[with_result.out.index("{") :])
    assert details["result"] == {"output": "Hello World!", "params": {"n": 2}}


def test_batch_mode_prints_the_id_and_exits_with_the_final_status(pixyz, service, script):
    submitted = pixyz("exec", "-s", script, "-b")
    assert submitted.code == 0 and UUID.match(submitted.out.strip()), submitted.out

    assert pixyz("exec", "-s", script, "-b", "-w").code == 0
    failed = pixyz("exec", "-s", script, "-p", '{"fail": true}', "-b", "-w")
    assert failed.code == 10 and UUID.match(failed.out.strip()) and failed.err == ""

    alias = f"revoke-me-{uuid.uuid4().hex[:8]}"
    canceller = threading.Thread(target=cancel_when_listed, args=(service, alias))
    canceller.start()
    revoked = pixyz("exec", "-s", script, "-p", '{"sleep": 30}', "-a", alias, "-b", "-w")
    canceller.join()
    assert revoked.code == 11


def cancel_when_listed(service, alias: str) -> None:
    with Client(service.url, service.key, progress=False) as client:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for job in client.jobs():
                if job["name"] == alias:
                    client.job(job["uuid"]).cancel()
                    return
            time.sleep(0.05)


def test_a_failed_job_is_reported_on_stderr_with_its_exit_code(pixyz, script, tmp_path):
    run = pixyz("exec", "-s", script, "-p", '{"fail": true}', "-w")
    assert run.code == 10
    assert re.search(r"Job \[ \S+ \] FAILURE: ValueError: asked to fail", run.err)

    not_a_model = tmp_path / "notes.dwg"
    not_a_model.write_text("not a model")
    converted = pixyz("convert", "-i", not_a_model, "--json")
    assert converted.code == 10 and "unsupported format '.dwg'" in converted.err
    assert converted.json()["status"] == "FAILURE" and converted.json()["files"] == []


def test_server_errors_print_code_message_and_details(pixyz, service, tmp_path):
    missing = str(uuid.uuid4())
    run = pixyz("status", "-j", missing)
    assert run.code == 1 and run.out == ""
    assert run.err.strip() == f"Error 404: Not Found: no job with uuid {missing}"

    wrong_key = pixyz("jobs", "-t", "wrong-key")
    assert wrong_key.code == 1 and wrong_key.err.startswith("Error 401: Unauthorized: ")
    unknown = pixyz("process", "-n", "nope")
    assert unknown.code == 1 and "Error 400: Bad Request: unknown process 'nope'" in unknown.err

    nobody = pixyz("-u", "http://127.0.0.1:9", "list")  # -u before the command
    assert nobody.code == 1 and nobody.err.startswith("Error: cannot reach http://127.0.0.1:9")
    assert pixyz("list", "-u", service.url, "-t", service.key).code == 0  # -u after it

    with pytest.raises(SystemExit) as usage:
        pixyz("process", "-n", "api_test", "-p", "{not json")
    assert usage.value.code == 2
    with pytest.raises(SystemExit):
        pixyz("convert", "-i", tmp_path / "absent.step")


def test_convert_names_the_output_after_o_and_fetches_its_side_files(pixyz, service, tmp_path):
    run = pixyz("convert", "-i", STEP, "-o", tmp_path / "out" / "model.gltf", "--json")
    assert run.code == 0, run.err
    report = run.json()
    assert report["result"]["output"] == "model.gltf"  # extension and name taken from -o
    gltf = tmp_path / "out" / "model.gltf"
    assert gltf.read_bytes() == stored_output(service, report["uuid"], "model.gltf")
    buffers = [b["uri"] for b in json.loads(gltf.read_text())["buffers"]]
    assert buffers and all((tmp_path / "out" / uri).is_file() for uri in buffers)
    assert sorted(report["files"]) == sorted(
        str(tmp_path / "out" / name) for name in report["result"]["files"]
    )


def test_convert_without_o_names_the_output_after_the_input(pixyz, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = pixyz("convert", "-i", STL)
    assert run.code == 0, run.err
    assert (tmp_path / "Spider_ascii.glb").read_bytes()[:4] == b"glTF"
    assert "converted" in run.out and "Spider_ascii.glb" in run.out


def test_thumbnails_downloads_every_output_into_the_folder(pixyz, tmp_path):
    params = '{"width": 64, "height": 48, "max_triangles": 1000}'
    run = pixyz("thumbnails", "-i", STL, "-p", params, "-o", tmp_path / "thumbs")
    assert run.code == 0, run.err
    names = sorted(p.name for p in (tmp_path / "thumbs").iterdir())
    assert names == ["iso.png", "metadata.json", "preview.glb", "x.png", "y.png", "z.png"]
    image = Image.open(io.BytesIO((tmp_path / "thumbs" / "iso.png").read_bytes()))
    assert image.size == (64, 48)
    assert "wrote 6 files to" in run.out


def test_metadata_writes_the_file_or_prints_it(pixyz, tmp_path):
    written = pixyz("metadata", "-i", STEP, "-o", tmp_path / "meta.json")
    assert written.code == 0, written.err
    assert json.loads((tmp_path / "meta.json").read_text())["part_count"] == 2
    printed = pixyz("metadata", "-i", STL, "--json")
    assert printed.code == 0 and printed.json()["polygon_count"] > 1000


def test_the_pixyz_command_has_the_client_commands_beside_serve(service):
    env = {**os.environ, "PIXYZ_API_KEY": service.key}
    command = [sys.executable, "-m", "serve_app.cli"]
    listed = subprocess.run(
        [*command, "-u", service.url, "jobs", "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert isinstance(json.loads(listed.stdout)["jobs"], list)
    assert "HTTP Request" not in listed.stderr  # httpx's INFO logs stay quiet
    serve = subprocess.run(
        [*command, "serve", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert serve.returncode == 0 and "--storage" in serve.stdout
