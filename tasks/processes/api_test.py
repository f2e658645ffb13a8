"""api_test: the smallest job, to check that the service answers end to end."""


def main(pc, params):
    """Return a greeting and echo the params back.

    Params: any JSON object.

    Result: `{"output": "Hello World!", "params": <params>}`.
    """
    pc.progress_set_total(1)
    pc.progress_next("Said hello")
    return {"output": "Hello World!", "params": params}
