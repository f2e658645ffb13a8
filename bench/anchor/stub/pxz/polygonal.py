"""pxz.polygonal (stub): no functions; each raises NotImplementedError when called."""


def __getattr__(name):
    from ._missing import missing

    return missing(f"pxz.polygonal.{name}")
