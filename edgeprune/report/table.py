"""Old name of the report's API, kept only until ``cli/commands.py`` imports from ``edgeprune.report``; delete then.

Nothing in ``edgeprune.report`` imports this module.
"""
from .export import FORMATS, default_out, parse_formats, write
from .frame import BASELINE, RunReport, compare, list_runs, load
from .terminal import print_report

__all__ = ["BASELINE", "FORMATS", "RunReport", "compare", "default_out", "list_runs", "load", "parse_formats",
           "print_report", "write"]
