"""What every SDK function the stub does not provide turns into."""


def missing(qualified: str):
    if qualified.rsplit(".", 1)[-1].startswith("__"):
        raise AttributeError(qualified)

    def call(*args, **kwargs):
        raise NotImplementedError(f"{qualified}: the Pixyz SDK is not installed (stub pxz)")

    call.__name__ = qualified
    return call
