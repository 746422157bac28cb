"""Helpers of the test suite and the benchmarks: real SSH devices, login devices, the device lab, the Pi-like
Python, the device-agent harness, and the CLI and store helpers the test folders share.

pytest puts ``tests/`` on sys.path (``pythonpath`` in pyproject.toml), so tests import ``support.<module>``; the
benchmarks get the same through benchmarks/_runfolder.py. Fixtures built from these live in tests/conftest.py.

This file imports nothing: ``support.raw_outputs`` also runs under the Pi's Python 3.9 (``python -m
tests.support.raw_outputs`` from the repository root), where nothing but numpy and tflite-runtime is installed.
"""
