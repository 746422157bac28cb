"""The gate's JUnit XML file (``report --compare BASE NEW --fail-if-slower PCT --junit PATH``), for CI test views.

One ``<testsuite>`` per device, one ``<testcase>`` per device x variant named ``device/variant`` (classname: the
device), so GitLab's test report, Jenkins' JUnit page and GitHub's JUnit reporter actions all group by device and
still show which pair it was wherever they list test names alone (GitLab's merge request widget, GitHub's
annotations). A regression is a ``<failure>`` (``type`` slower / less-accurate / lost), a pair the gate could not
judge a ``<skipped>``; a testcase's time is the seconds NEW spent timing that pair's invokes.

The file validates against both widely used schemas at once (tests/support/junit-xsd/): Jenkins' junit-10.xsd and
the stricter Apache Ant schema (windyroad), which is why ``<testsuites>`` has no attributes, every suite has
``package``, ``id``, ``hostname`` (the device: where the tests ran), a UTC ``timestamp`` without a zone, its
``properties`` first and ``system-out``/``system-err`` last, and a failure always has a ``type``.

Device and variant names and error texts come from stores and devices: every text is cleaned (``text.clean``:
no control characters, one line, capped) and stripped of what XML 1.0 cannot hold at all (surrogates, U+FFFE/F);
ElementTree escapes the rest. The file is written to a temporary file beside PATH and renamed over it, so a CI
job never uploads half a file.
"""
from __future__ import annotations

import datetime as _dt
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Dict, List

from .._version import __version__
from ..errors import ConfigError
from ..text import clean
from .gate import FAILED, SKIPPED, GateResult, Pair

#: What XML 1.0 cannot contain even escaped, beyond what ``clean`` removes (C0/C1 controls).
_XML_ILLEGAL = re.compile("[\ud800-\udfff\ufffe\uffff]")


def xml_text(value: Any, limit: int = 300) -> str:
    """``value`` as one line XML can hold: cleaned, capped at ``limit``, XML-illegal characters removed."""
    return _XML_ILLEGAL.sub("", clean(value, limit))


def _token(value: Any, limit: int = 200, empty: str = "(unnamed)") -> str:
    """A name attribute: the Ant schema wants a non-empty token."""
    return xml_text(value, limit) or empty


def _utc(created: Any) -> str:
    """A run's ``created`` as ``2026-12-07T01:02:03`` in UTC (the Ant schema allows no zone); now if unreadable."""
    try:
        moment = _dt.datetime.fromisoformat(str(created))
    except ValueError:
        moment = _dt.datetime.now(_dt.timezone.utc)
    if moment.tzinfo is not None:
        moment = moment.astimezone(_dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def _seconds(value: float) -> str:
    return f"{max(value, 0.0):.3f}"


def _properties(result: GateResult, device: str) -> Dict[str, str]:
    thresholds = result.thresholds
    found = {
        "edgeprune.version": __version__,
        "base.run": str(result.base["id"]), "new.run": str(result.new["id"]),
        "base.created": str(result.base.get("created") or ""), "new.created": str(result.new.get("created") or ""),
        "base.model": str(result.base.get("model_source") or ""),
        "new.model": str(result.new.get("model_source") or ""),
        "store": str(result.new.get("db") or ""),
        "rule": f"fails on a device x variant {thresholds.describe()}, or ok in run {result.base['id']} and not "
                f"in run {result.new['id']}",
        "noise": result.noise.get(device, ""),
        "timestamps": "UTC",
    }
    if thresholds.slower_pct is not None:
        found["fail-if-slower.percent"] = f"{thresholds.slower_pct:g}"
    if thresholds.accuracy_points is not None:
        found["fail-if-less-accurate.points"] = f"{thresholds.accuracy_points:g}"
    return found


def _testcase(suite: ET.Element, pair: Pair) -> None:
    case = ET.SubElement(suite, "testcase", name=_token(f"{pair.device}/{pair.variant}", 400),
                         classname=_token(pair.device), time=_seconds(pair.seconds))
    if pair.outcome == FAILED:
        failure = ET.SubElement(case, "failure", message=xml_text(pair.message, 1000),
                                type=",".join(pair.kinds) or "regression")
        failure.text = xml_text(pair.detail, 4000)
    elif pair.outcome == SKIPPED:
        ET.SubElement(case, "skipped", message=xml_text(pair.message, 1000))


def document(result: GateResult, hostname_fallback: str = "localhost") -> bytes:
    """The JUnit XML of ``result`` (UTF-8, with its declaration)."""
    root = ET.Element("testsuites")
    by_device: Dict[str, List[Pair]] = {}
    for pair in result.pairs:
        by_device.setdefault(pair.device, []).append(pair)
    timestamp = _utc(result.new.get("created"))
    for index, (device, pairs) in enumerate(by_device.items()):
        suite = ET.SubElement(root, "testsuite", {
            "name": _token(device), "package": "edgeprune.gate", "id": str(index), "timestamp": timestamp,
            "hostname": _token(device, empty=hostname_fallback), "tests": str(len(pairs)),
            "failures": str(sum(p.outcome == FAILED for p in pairs)), "errors": "0",
            "skipped": str(sum(p.outcome == SKIPPED for p in pairs)),
            "time": _seconds(sum(p.seconds for p in pairs))})
        properties = ET.SubElement(suite, "properties")
        for name, value in _properties(result, device).items():
            ET.SubElement(properties, "property", name=name, value=xml_text(value, 1000))
        for pair in pairs:
            _testcase(suite, pair)
        ET.SubElement(suite, "system-out").text = xml_text(
            f"{result.noise.get(device, '')} {result.summary()}", 4000)
        ET.SubElement(suite, "system-err")
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def check_writable(path: "str | Path") -> Path:
    """Refuse a --junit PATH that cannot be written, before any work: a folder, a missing parent, no permission."""
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"--junit {clean(path)} is a folder; give a file path")
    parent = target.parent
    if not parent.is_dir():
        problem = "is not a folder" if parent.exists() else "does not exist"
        raise ConfigError(f"--junit {clean(path)}: the folder {clean(parent)} {problem}")
    try:
        handle, probe = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.", suffix=".probe")
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"--junit {clean(path)} cannot be written: {clean(exc.strerror or exc)}") from exc
    return target


def write(result: GateResult, path: "str | Path") -> Path:
    """Write the file atomically (a temporary file in the same folder, flushed, then renamed over ``path``)."""
    target = check_writable(path)
    data = document(result)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except OSError as exc:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise ConfigError(f"--junit {clean(path)} cannot be written: {clean(exc.strerror or exc)}") from exc
    return target
