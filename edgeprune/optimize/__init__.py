"""optimize: a Keras model (or the built-in digits CNN) to TFLite variants and a run folder with its manifest.

The only subsystem that imports TensorFlow (through ``_tf``), and only inside the functions that need it.

This package is also ``edgeprune.optimize``, the name of the Python API's first function: once the package is
imported, Python binds ``edgeprune.optimize`` to it, not to the function. So the package itself is callable and
calling it is the API's ``optimize`` (edgeprune.api.optimize): ``edgeprune.optimize(model, train=..., ...)``
works whichever of the two the name holds.
"""
import sys as _sys
import types as _types


class _CallableModule(_types.ModuleType):
    def __call__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        from ..api import optimize

        return optimize(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
