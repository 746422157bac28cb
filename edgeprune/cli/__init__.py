"""The ``edgeprune`` command line: parsing, one call per command, errors as one line. Drawing is in ``display``."""
from .commands import main

__all__ = ["main"]
