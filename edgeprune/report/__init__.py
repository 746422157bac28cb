"""report: the comparison table built from the store alone, and its views (terminal, CSV, Markdown, HTML, PNG).

Never re-measures and never imports TensorFlow or paramiko.
"""
from .table import FORMATS, compare, default_out, list_runs, load, parse_formats, print_report, write

__all__ = ["FORMATS", "compare", "default_out", "list_runs", "load", "parse_formats", "print_report", "write"]
