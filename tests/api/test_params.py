"""Every process's params are a contract: published as JSON Schema, checked at submit.

The cases are written from each process's own schema (GET /processes/{name}), so a new
process is covered as soon as it declares a `Params` model.
"""

import json
import subprocess
import sys

import pytest

from conftest import API_KEY, DATA, REPO, error_of, submit

MODEL = DATA / "off" / "Wuson.off"
BUILTIN = [  # every built-in with declared fields (api_test's model is free-form)
    "convert_file",
    "generate_lods",
    "generate_metadata",
    "generate_thumbnails",
    "optimize",
    "sleep",
    "thumbnail_chained",
]


def schema_of(client, process) -> dict:
    answer = client.get(f"/processes/{process}").json()
    assert answer["params_schema"], process
    return answer["params_schema"]


def wrong_type(prop: dict):
    """A JSON value of a type the property does not take."""
    kinds = {p.get("type") for p in prop.get("anyOf", [prop])}
    return {"not": "this"} if "object" not in kinds else "text"


def out_of_range(prop: dict):
    prop = next((p for p in prop.get("anyOf", [prop]) if p.get("type") != "null"), prop)
    if prop.get("type") == "array":
        item = out_of_range(prop.get("items", {}))
        return None if item is None else [item]
    if prop.get("type") == "string" and "enum" not in prop:
        return None  # format names and file names: their own tests say what is refused
    if "maximum" in prop:
        return prop["maximum"] + 1
    if "exclusiveMaximum" in prop:
        return prop["exclusiveMaximum"]
    if "minimum" in prop:
        return prop["minimum"] - 1
    if "exclusiveMinimum" in prop:
        return prop["exclusiveMinimum"]
    if "enum" in prop:
        return "none-of-these"
    return None


@pytest.mark.parametrize("process", BUILTIN)
def test_a_wrong_type_is_a_400_naming_the_field(client, process):
    schema = schema_of(client, process)
    for field, prop in schema["properties"].items():
        details = submit(client, process, file=MODEL, params={field: wrong_type(prop)}, expect=400)
        assert details.startswith(f"params.{field}"), (field, details)


def bounded_processes() -> list[str]:
    """The built-ins with at least one param that has a bound to go past."""
    from tasks.processes import discover, params_model

    specs = discover()
    return [
        name
        for name in BUILTIN
        if any(
            out_of_range(prop) is not None
            for prop in params_model(specs[name]).model_json_schema()["properties"].values()
        )
    ]


@pytest.mark.parametrize("process", bounded_processes())
def test_an_out_of_range_value_is_a_400_naming_the_field(client, process):
    schema = schema_of(client, process)
    bounded = {f: out_of_range(p) for f, p in schema["properties"].items()}
    for field, value in bounded.items():
        if value is None:
            continue
        details = submit(client, process, file=MODEL, params={field: value}, expect=400)
        assert details.startswith(f"params.{field}"), (field, details)


@pytest.mark.parametrize("process", BUILTIN)
def test_a_queue_the_server_does_not_have_is_a_400_naming_its_queues(client, process):
    details = submit(client, process, file=MODEL, config={"queue": "gpux"}, expect=400)
    assert (
        details
        == "config.queue: 'gpux' is not a queue of this server; its queues: cpu, gpu, gpuhigh"
    )


@pytest.mark.parametrize("process", BUILTIN)
def test_the_doc_lists_every_param(client, process):
    answer = client.get(f"/processes/{process}").json()
    assert answer["doc"].startswith(f"Process '{process}' documentation:")
    for field in answer["params_schema"]["properties"]:
        assert f"- `{field}` (" in answer["doc"], field


def test_params_the_model_takes_are_accepted_and_defaults_apply(client):
    from conftest import wait_for

    job = submit(client, "sleep", params={"duration": 0})
    assert wait_for(client, job["uuid"])["status"] == "SUCCESS"
    assert client.get(f"/jobs/{job['uuid']}/details").json()["result"] == {"slept": 0.0}
    # api_test's model is free-form: any object, echoed back, nothing to warn about
    job = submit(client, "api_test", params={"anything": [1, {"a": None}]})
    assert wait_for(client, job["uuid"])["status"] == "SUCCESS"
    details = client.get(f"/jobs/{job['uuid']}/details").json()
    assert details["result"]["params"] == {"anything": [1, {"a": None}]}
    assert details["warnings"] == []
    schema = client.get("/processes/api_test").json()["params_schema"]
    assert schema["additionalProperties"] is True and schema["properties"] == {}


def test_pixyz_doc_prints_the_params_schema(service):
    env = {"PIXYZ_URL": service.url, "PIXYZ_API_KEY": API_KEY, "PATH": "/usr/bin:/bin"}
    run = [sys.executable, "-m", "pixyz_client.cli", "doc", "-n", "generate_thumbnails"]
    shown = subprocess.run(run, env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert (
        "- `width` (integer in [16, 4096], default 512): Thumbnail width in pixels" in shown.stdout
    )
    schema = json.loads(shown.stdout.split("JSON Schema of params:\n", 1)[1])
    assert schema["properties"]["up_axis"]["enum"] == ["auto", "x", "y", "z"]
    as_json = subprocess.run(
        [*run, "--json"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert json.loads(as_json.stdout)["params_schema"] == schema


def test_a_bad_params_body_is_refused_before_the_upload_is_kept(client, service):
    jobs = service.storage / "jobs"
    before = set(jobs.iterdir()) if jobs.exists() else set()
    response = client.post(
        "/jobs",
        data={"process": "optimize", "params": json.dumps({"ratio": 2})},
        files={"file": (MODEL.name, MODEL.read_bytes())},
    )
    assert (
        error_of(response, 400) == "params.ratio: Input should be less than or equal to 1 (got 2)"
    )
    assert (set(jobs.iterdir()) if jobs.exists() else set()) == before
