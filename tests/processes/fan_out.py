"""An operator process that fans out child tasks (exercises pc.tasks)."""


def square(x):
    return x * x


def main(pc, params):
    """Square `params.values` in parallel child tasks, then sum them in one task on the `gpu` queue.

    Result: `{"squares": [...], "total": <sum>}`.
    """
    values = params.get("values", [1, 2, 3])
    refs = [pc.tasks.submit(square, v, info=f"square {v}") for v in values]
    squares = pc.tasks.gather(refs)
    total = pc.tasks.run(sum, squares, queue="gpu", info="sum on the gpu queue")
    return {"squares": squares, "total": total}
