"""The operator's deployment files pass the checks of the tools that read them.

`cluster.yaml` goes through what `ray up` runs before it first talks to AWS (YAML
load, `prepare_config`, `validate_config` against Ray's `ray-schema.json`), and each
node's `node_config` and the security-group rules through botocore's own EC2 request
shapes, so a typo fails here rather than half-way through a launch.
`deploy/serve_config.yaml` goes through Serve's `ServeDeploySchema` and Serve's own
application builder. No network, no AWS credentials, no Ray cluster.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from tasks.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_FILE = ROOT / "cluster.yaml"
SERVE_FILE = ROOT / "deploy" / "serve_config.yaml"

# Keys of node_config that Ray's AWS provider consumes itself instead of passing to EC2.
RAY_ONLY_NODE_CONFIG_KEYS = {"SubnetIds"}
# Settings that must come from the nodes' environment (cluster.yaml): Serve `args`
# override the environment, so setting them there would hide the operator's values.
ENVIRONMENT_ONLY_SETTINGS = {
    "storage",
    "storage_options",
    "api_key",
    "api_key_sha256",
    "callback_secret",
}


def load_cluster(text: str | None = None) -> dict:
    return yaml.safe_load(CLUSTER_FILE.read_text() if text is None else text)


def load_serve() -> dict:
    return yaml.safe_load(SERVE_FILE.read_text())


def ray_up_validation(config: dict) -> dict:
    """The checks `ray up` runs on a cluster file before it contacts the cloud."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def ec2_request_errors(operation: str, params: dict) -> str:
    """botocore's report on `params` as input of an EC2 API call ('' when valid)."""
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("ec2")
    shape = model.operation_model(operation).input_shape
    return ParamValidator().validate(params, shape).generate_report()


def node_config_errors(node_config: dict) -> str:
    params = {k: v for k, v in node_config.items() if k not in RAY_ONLY_NODE_CONFIG_KEYS}
    return ec2_request_errors("RunInstances", {**params, "MinCount": 1, "MaxCount": 1})


def settings_env_names(text: str) -> set[str]:
    return set(re.findall(r"\b(PIXYZ_[A-Z0-9_]+)=", text))


def unknown_settings_env_names(text: str) -> set[str]:
    known = {f"PIXYZ_{name.upper()}" for name in Settings.model_fields}
    return settings_env_names(text) - known


def serve_app_config() -> dict:
    (app,) = load_serve()["applications"]
    return app


# -- cluster.yaml ---------------------------------------------------------------------


def test_cluster_file_passes_ray_up_validation():
    prepared = ray_up_validation(load_cluster())

    assert prepared["head_node_type"] == "head"
    assert set(prepared["available_node_types"]) == {"head", "cpu", "gpu", "gpuhigh"}


@pytest.mark.parametrize(
    ("before", "after", "reason"),
    [
        ("idle_timeout_minutes:", "idle_timout_minutes:", "'idle_timout_minutes' was unexpected"),
        ("    min_workers: 1\n", "    min_worker: 1\n", "'min_worker' was unexpected"),
        ("head_node_type: head", "head_node_type: heads", "must be one of `available_node_types`"),
        ('"GPU": 1}', '"GPU": 0.5}', "0.5 is not of type 'integer'"),
    ],
    ids=["top-level-key", "node-type-key", "head-node-type", "fractional-resource"],
)
def test_a_typo_in_the_cluster_file_fails_validation(before, after, reason):
    import jsonschema

    text = CLUSTER_FILE.read_text()
    assert before in text, "the mutation no longer matches cluster.yaml: update the test"

    with pytest.raises((jsonschema.ValidationError, ValueError), match=re.escape(reason)):
        ray_up_validation(load_cluster(text.replace(before, after, 1)))


def test_every_node_config_is_a_valid_ec2_launch_request():
    for name, node_type in load_cluster()["available_node_types"].items():
        assert node_config_errors(node_type["node_config"]) == "", name

    typo = dict(load_cluster()["available_node_types"]["gpu"]["node_config"])
    typo["InstanceTyp"] = typo.pop("InstanceType")
    assert "InstanceTyp" in node_config_errors(typo)


def test_the_api_port_rule_is_a_valid_security_group_rule():
    rules = load_cluster()["provider"]["security_group"]["IpPermissions"]

    assert any(rule["FromPort"] <= 8000 <= rule["ToPort"] for rule in rules)
    assert (
        ec2_request_errors(
            "AuthorizeSecurityGroupIngress", {"GroupId": "sg-0", "IpPermissions": rules}
        )
        == ""
    )


def test_the_head_takes_no_job_work_and_every_queue_has_a_worker_type():
    node_types = load_cluster()["available_node_types"]
    workers = {name: t["resources"] for name, t in node_types.items() if name != "head"}
    queues = serve_app_config()["args"]["queue_resources"]

    assert node_types["head"]["resources"]["CPU"] == 0
    for queue, wanted in queues.items():
        demand = {"CPU": wanted.get("num_cpus", 1), "GPU": wanted.get("num_gpus", 0)}
        demand.update(wanted.get("resources") or {})
        fits = [
            name
            for name, offered in workers.items()
            if all(offered.get(res, 0) >= amount for res, amount in demand.items() if amount)
        ]
        assert fits, f"no worker type in cluster.yaml can run the '{queue}' queue: {demand}"
    assert workers["gpu"].get("GPU", 0) >= 1
    assert workers["gpuhigh"].get("gpuhigh", 0) >= 1 and workers["gpuhigh"].get("GPU", 0) >= 1


def test_the_nodes_environment_names_real_settings():
    text = CLUSTER_FILE.read_text()

    assert {"PIXYZ_STORAGE", "PIXYZ_API_KEY_SHA256"} <= settings_env_names(text)
    assert unknown_settings_env_names(text) == set()
    assert unknown_settings_env_names("'PIXYZ_STORGE=s3://b/p'") == {"PIXYZ_STORGE"}


def test_every_placeholder_is_listed_at_the_top():
    text = CLUSTER_FILE.read_text()
    header = text.split("\ncluster_name:", 1)[0]
    body = text[len(header) :]

    used = set(re.findall(r"REPLACE_ME_[A-Z0-9_]+", body))
    listed = set(re.findall(r"REPLACE_ME_[A-Z0-9_]+", header))
    assert used, "cluster.yaml should keep its cloud-specific values as placeholders"
    assert used == listed


def test_the_commands_point_at_files_that_exist():
    config = load_cluster()
    commands = "\n".join(
        config["setup_commands"]
        + config["head_start_ray_commands"]
        + config["worker_start_ray_commands"]
    )

    assert config["file_mounts"] == {"~/pixyz": "."}
    assert "scripts/setup.sh" in commands and (ROOT / "scripts" / "setup.sh").is_file()
    assert "serve deploy deploy/serve_config.yaml" in commands and SERVE_FILE.is_file()
    for start in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert "--metrics-export-port=8080" in " ".join(config[start]), start


def test_the_pinned_ray_satisfies_the_project_requirement():
    import tomllib

    from packaging.requirements import Requirement

    (pin,) = re.findall(r"ray==([0-9][0-9.]*)", CLUSTER_FILE.read_text())
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (ray_req,) = [
        Requirement(r) for r in pyproject["project"]["dependencies"] if r.startswith("ray")
    ]
    assert ray_req.specifier.contains(pin), f"cluster.yaml pins ray=={pin}, project needs {ray_req}"


# -- deploy/serve_config.yaml ---------------------------------------------------------


def test_serve_config_passes_serves_schema():
    from ray.serve.schema import ServeApplicationSchema, ServeDeploySchema

    raw = load_serve()
    config = ServeDeploySchema.model_validate(raw)

    # Serve ignores unknown keys at these two levels (forward compatibility): a typo'd
    # key would be dropped without a word, so name only fields Serve knows.
    assert set(raw) <= set(ServeDeploySchema.model_fields)
    assert set(serve_app_config()) <= set(ServeApplicationSchema.model_fields)
    (app,) = config.applications
    assert (app.name, app.route_prefix, app.import_path) == (
        "pixyz",
        "/",
        "serve_app.deployment:app_builder",
    )
    assert (config.http_options.host, config.http_options.port) == ("0.0.0.0", 8000)
    assert config.logging_config.enable_access_log is False


@pytest.mark.parametrize(
    "mutate",
    [
        lambda raw: raw["http_options"].update(port="eight thousand"),
        lambda raw: raw.update(proxy_location="Headonly"),
        lambda raw: raw["logging_config"].update(enable_acces_log=False),
        lambda raw: raw["applications"][0].pop("import_path"),
    ],
    ids=["http-port", "proxy-location", "logging-key", "no-import-path"],
)
def test_a_broken_serve_config_fails_serves_schema(mutate):
    from pydantic import ValidationError
    from ray.serve.schema import ServeDeploySchema

    raw = load_serve()
    mutate(raw)

    with pytest.raises(ValidationError):
        ServeDeploySchema.model_validate(raw)


def test_serve_args_are_settings_and_leave_the_environment_alone():
    args = serve_app_config()["args"]

    assert set(args) <= set(Settings.model_fields), set(args) - set(Settings.model_fields)
    assert not set(args) & ENVIRONMENT_ONLY_SETTINGS
    settings = Settings(**args)
    assert set(settings.queue_resources) == {"cpu", "gpu", "gpuhigh"}


def test_the_app_builds_from_the_serve_config_without_a_cluster():
    import ray
    from ray import serve
    from ray._common.utils import import_attr
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve._private.build_app import build_app

    app_config = serve_app_config()
    ray_was_up = ray.is_initialized()  # other tests of the session may have started it

    # The same two calls Serve's controller makes in its build task.
    app = call_user_app_builder_with_args_if_necessary(
        import_attr(app_config["import_path"]), app_config["args"]
    )
    built = build_app(app, name=app_config["name"])

    assert isinstance(app, serve.Application)
    # Overrides in `deployments` must name deployments the app has ("does not exist").
    names = {d.name for d in built.deployments}
    assert {d["name"] for d in app_config.get("deployments", [])} <= names, names
    assert ray.is_initialized() == ray_was_up  # building needed no cluster


def test_a_typo_in_the_application_args_fails_the_deploy():
    from serve_app.deployment import app_builder

    with pytest.raises(ValueError, match="max_upload_byte"):
        app_builder({"max_upload_byte": 10})
