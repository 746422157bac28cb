"""A small manifest for the store tests: one ok variant and one whose conversion failed, as a run records them."""
from __future__ import annotations

from typing import Any, Dict

MANIFEST: Dict[str, Any] = {
    "baseline": {"source": "built-in"},
    "dataset": {"name": "digits"},
    "variants": [
        {"name": "baseline-float32", "status": "ok", "file": "b.tflite", "sha256": "0" * 64, "size_bytes": 100,
         "gzip_bytes": 90, "sparsity": 0.0, "accuracy": 0.98, "predictions_digest": "0" * 16},
        {"name": "pruned-int8", "status": "error", "error": "conversion failed"},
    ],
}
