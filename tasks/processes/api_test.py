"""api_test: the smallest job, to check that the service answers end to end."""

from tasks.processes._params import ProcessParams


class Params(ProcessParams):
    """Any JSON object: it is echoed back."""


def main(pc, params):
    """Return a greeting and echo the params back.

    Result: `{"output": "Hello World!", "params": <params>}`.
    """
    pc.progress_set_total(1)
    pc.progress_next("Said hello")
    return {"output": "Hello World!", "params": params}
