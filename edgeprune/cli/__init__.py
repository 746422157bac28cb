"""The ``edgeprune`` command line: parsing, one call per command, errors as one line. Drawing is in ``display``."""
from .commands import main
from . import sweep_cmd  # noqa: F401 (registers the command)
from . import explain_cmd  # noqa: F401 (registers the command)
from . import devices_cmd  # noqa: F401 (registers the devices group)

__all__ = ["main"]
