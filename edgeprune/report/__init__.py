"""report: the comparison table built from the store alone, and its views (terminal, CSV, Markdown, HTML, PNG).

Never re-measures and never imports TensorFlow or paramiko. By job: ``columns`` describes every column once and
picks the latency unit; ``frame`` builds the table (``load``, ``compare``, ``list_runs``); ``noise`` finds each
device's A/A noise band and its unsettled cells; ``verdict`` judges each speed-up against that band and says per
device what pruning and quantization bought; ``views`` formats it per device for ``terminal``, ``markdown`` and
``html``; ``plots`` draws it; ``export`` writes the files; ``diff`` sets two runs side by side; ``stats`` holds the
statistics over rounds (docs/statistics.md). (``compare`` here is the function, so no module bears its name.)
"""
from .export import FORMATS, default_out, parse_formats, write
from .frame import compare, list_runs, load
from .terminal import print_report

__all__ = ["FORMATS", "compare", "default_out", "list_runs", "load", "parse_formats", "print_report", "write"]
