"""The few exceptions edgeprune raises on purpose.

    EdgepruneError            anything the CLI turns into one line and a non-zero exit
     ├── ConfigError          bad flags, options or output folders
     ├── DataError            a data file that is missing, unreadable or the wrong shape
     ├── ModelError           a model that cannot be loaded, or does not fit its data
     ├── PruningError         a pruning schedule that cannot prune, or did not
     ├── ConversionError      one TFLite variant failed to convert (recorded, not fatal)
     ├── ManifestError        a manifest that is missing or does not match its schema
     ├── DeviceError          a device that cannot be reached or measured
     │    ├── HostKeyError      its host key is unknown (and not accepted) or changed
     │    └── PythonMissingError  its `python` does not exist or cannot run
     └── StoreError           a database that cannot be opened, is too new, or lacks a run

Everything else is a bug and shows a traceback with ``--debug``.
"""
from __future__ import annotations


class EdgepruneError(Exception):
    """An error the user can act on; the CLI prints ``Error: <message>``."""

    exit_code = 1


class ConfigError(EdgepruneError):
    """Bad flags, options or output folders."""

    exit_code = 2


class DataError(EdgepruneError):
    """A data file that is missing, unreadable, or has the wrong keys or shapes."""


class ModelError(EdgepruneError):
    """A model that cannot be loaded, or whose input/output does not fit the data."""


class PruningError(EdgepruneError):
    """A pruning schedule that would not prune, or a pruned model that is not sparse."""


class ConversionError(EdgepruneError):
    """One TFLite variant failed to convert."""


class ManifestError(EdgepruneError):
    """A manifest that is missing, unreadable or invalid against its schema."""


class DeviceError(EdgepruneError):
    """A device that cannot be reached or measured. ``kind`` is the error kind its stored results get."""

    kind = "connection"


class HostKeyError(DeviceError):
    """The device's host key is unknown (and not accepted) or has changed."""

    kind = "host-key"


class PythonMissingError(DeviceError):
    """The profile's ``python`` does not exist on the device (exit 127) or cannot be executed (126)."""

    kind = "python-missing"


class StoreError(EdgepruneError):
    """A database that cannot be opened, is from a newer edgeprune, or lacks a run."""
