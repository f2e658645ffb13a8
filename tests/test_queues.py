"""Where each queue's work runs on clusters with and without GPU or gpuhigh nodes."""

from tasks.queues import choose_queues, escalate
from tasks.settings import Settings

QUEUES = Settings().queue_resources
CPU_ONLY = {"CPU": 8.0}
WITH_GPU = {"CPU": 8.0, "GPU": 1.0}
WITH_GPUHIGH = {"CPU": 8.0, "GPU": 2.0, "gpuhigh": 1.0}


def test_a_gpu_cluster_gives_each_queue_its_own_resources():
    choices = choose_queues(QUEUES, WITH_GPUHIGH, allow_cpu_fallback=True)
    assert choices["gpu"].options["num_gpus"] > 0 and choices["gpu"].note is None
    assert choices["gpuhigh"].options["resources"] == {"gpuhigh": 0.25}


def test_without_gpus_gpu_work_falls_back_to_cpu_and_says_so():
    choices = choose_queues(QUEUES, CPU_ONLY, allow_cpu_fallback=True)
    assert "num_gpus" not in choices["gpu"].options and choices["gpu"].runnable
    assert "running on CPU workers" in choices["gpu"].note
    assert choices["cpu"].note is None


def test_the_operator_can_forbid_the_fallback():
    choices = choose_queues(QUEUES, CPU_ONLY, allow_cpu_fallback=False)
    assert not choices["gpu"].runnable
    assert "PIXYZ_ALLOW_CPU_FALLBACK" in choices["gpu"].note
    assert choices["cpu"].runnable


def test_retries_escalate_to_gpuhigh_only_where_such_nodes_exist():
    assert escalate("gpu", choose_queues(QUEUES, WITH_GPUHIGH, True), "gpuhigh") == "gpuhigh"
    assert escalate("cpu", choose_queues(QUEUES, WITH_GPUHIGH, True), "gpuhigh") == "gpuhigh"
    assert escalate("gpu", choose_queues(QUEUES, WITH_GPU, True), "gpuhigh") == "gpu"
    assert escalate("gpuhigh", choose_queues(QUEUES, WITH_GPUHIGH, True), "gpuhigh") == "gpuhigh"


def test_resources_the_autoscaler_can_add_are_waited_for_not_replaced():
    choices = choose_queues(QUEUES, CPU_ONLY, True, scalable={"GPU": 1})
    assert choices["gpu"].note is None and choices["gpu"].options["num_gpus"] > 0
    assert "running on CPU workers" in choices["gpuhigh"].note  # not scalable here


def test_escalation_follows_the_operators_queue_map():
    without_gpuhigh = {k: v for k, v in QUEUES.items() if k != "gpuhigh"}
    choices = choose_queues(without_gpuhigh, WITH_GPUHIGH, True)
    assert escalate("gpu", choices, "gpuhigh") == "gpu"  # not configured: stays
    big = {**without_gpuhigh, "big": {"num_cpus": 1, "resources": {"gpuhigh": 0.25}}}
    assert escalate("cpu", choose_queues(big, WITH_GPUHIGH, True), "big") == "big"
    assert escalate("cpu", choose_queues(big, WITH_GPUHIGH, True), "") == "cpu"


def test_settings_refuse_a_queue_map_that_does_not_hold_together():
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="needs a 'cpu' queue"):
        Settings(queue_resources={"gpu": {"num_gpus": 1}})
    with pytest.raises(ValidationError, match="retry_queue 'gpuhigh' is not in queue_resources"):
        Settings(queue_resources={"cpu": {"num_cpus": 1}})
    assert Settings(queue_resources={"cpu": {"num_cpus": 1}}, retry_queue="").retry_queue == ""
