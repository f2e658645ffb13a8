"""pxz.core (stub): the licence and session calls the anchor's worker makes."""


def checkLicense(*args, **kwargs):
    return True


def configureLicenseServer(*args, **kwargs):
    return None


def resetSession(*args, **kwargs):
    return None


def __getattr__(name):
    from ._missing import missing

    return missing(f"pxz.core.{name}")
