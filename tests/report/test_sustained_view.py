"""The sustained-run view (issue 13): one cell kept running for minutes, sampled each second, summarized in one
sentence and one plot. The runs are synthetic, built second by second the way the agent samples them, so every
figure the summary gives is known in advance."""
from __future__ import annotations

import io
import re
import time
from typing import Any, Callable, Dict, List, Optional

import pytest
from matplotlib.image import imread
from rich.console import Console

from edgeprune.report import plots, sustained
from edgeprune.text import clean, for_html, for_markdown, for_matplotlib

TEMP = "/sys/class/thermal/thermal_zone0/temp"
FREQ = "/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq"
SOURCES = {"temp": TEMP, "freq": FREQ, "throttle": "vcgencmd"}
#: vcgencmd get_throttled values: soft temperature limit and arm frequency capped now (and so since boot).
HOT = (1 << 3) | (1 << 1) | (1 << 19) | (1 << 17)
UNDER_VOLTAGE = 0x50005  # under-voltage and throttled, now and since boot: the classic weak power supply
HOSTILE = "\x1b[31m[bold]x[/bold] <script>alert(1)</script> | $x$"
SHOWN = clean(HOSTILE)
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def run(seconds: int = 600, p50: Callable[[int], Optional[float]] = lambda t: 1210.5,
        temp: Callable[[int], Optional[float]] = lambda t: 48.0 + 33.0 * t / 600,
        freq: Callable[[int], Optional[float]] = lambda t: 1800.0,
        bits: Callable[[int], Optional[int]] = lambda t: 0, sources: Optional[Dict[str, Any]] = None,
        **extra: Any) -> Dict[str, Any]:
    samples = [{"t_s": float(t), "runs": 800, "p50_us": p50(t), "temp_c": temp(t), "freq_mhz": freq(t),
                "throttled": bits(t)} for t in range(1, seconds + 1)]
    return {"cell": "baseline-float32", "seconds": float(seconds), "stopped_by": "seconds",
            "sources": dict(SOURCES if sources is None else sources), "samples": samples, **extra}


def throttling_run() -> Dict[str, Any]:
    """A Pi that reaches its soft temperature limit at 212 s: the clock is capped to 600 MHz and p50 rises."""
    return run(p50=lambda t: 1210.5 + (t % 3) if t < 212 else 1580.0 + (t % 5),
               freq=lambda t: 1800.0 if t < 212 else 600.0, bits=lambda t: HOT if t >= 212 else 0)


def rendered(lines: List[str]) -> str:
    console = Console(file=io.StringIO(), width=3000, color_system=None)
    for line in lines:
        console.print(line, highlight=False)
    return console.file.getvalue()


# -- the summary and its sentence ----------------------------------------------------------------------------------

def test_a_run_that_throttles_midway():
    summary = sustained.summarize("pi4", throttling_run())
    assert (summary.duration_s, summary.samples, summary.window_s) == (600.0, 600, 60.0)
    assert summary.first_p50_us == 1211.5 and summary.last_p50_us == 1582.0  # medians of t <= 60 and t >= 540
    assert summary.ratio == pytest.approx(1582.0 / 1211.5)
    assert (summary.temp_min, summary.temp_max) == (48.055, 81.0)
    assert (summary.temp_first, summary.temp_last) == (48.055, 81.0)
    assert (summary.freq_min, summary.freq_max) == (600.0, 1800.0)
    assert summary.throttle == sustained.THROTTLED and summary.throttled_at_s == 212.0
    assert summary.reasons == ("soft temperature limit", "arm frequency capped")
    assert summary.under_voltage_at_s is None and summary.spans == ((212.0, 601.0),)
    assert sustained.statement(summary) == (
        "pi4: throttled after 212 s (soft temperature limit, arm frequency capped): p50 rose from 1.21 ms to "
        "1.58 ms (1.31x) over 600 s; CPU 48-81 °C, 600-1800 MHz")


def test_a_steady_run_says_so():
    summary = sustained.summarize("pi5", run(p50=lambda t: 1000.0 + t / 20, temp=lambda t: 50.0))  # +3% at the end
    assert summary.throttle == sustained.NOT_THROTTLED and summary.spans == ()
    assert sustained.statement(summary) == (
        "pi5: not throttled: p50 steady (1.00 ms to 1.03 ms, 1.03x) over 600 s; CPU 50 °C, 1800 MHz")


def test_a_faster_end_says_fell_and_microseconds_stay_microseconds():
    summary = sustained.summarize("pi5", run(seconds=120, p50=lambda t: 800.0 if t < 60 else 600.0))
    assert summary.window_s == 12.0  # a tenth of a run shorter than ten minutes
    assert "p50 fell from 800 µs to 600 µs (0.75x) over 120 s" in sustained.statement(summary)


def test_without_temperature_or_vcgencmd_a_falling_clock_is_reported():
    data = run(temp=lambda t: None, bits=lambda t: None, freq=lambda t: 1800.0 if t < 300 else 1200.0,
               sources={"temp": None, "freq": FREQ, "throttle": None})
    summary = sustained.summarize("x86", data)
    assert summary.throttle == sustained.NO_VCGENCMD and summary.freq_fell == (1800.0, 1200.0)
    assert summary.temp_min is None and summary.temp_first is None
    assert sustained.statement(summary) == (
        "x86: throttle bits unavailable (no vcgencmd), CPU frequency fell from 1800 to 1200 MHz: p50 steady "
        "(1.21 ms to 1.21 ms, 1.00x) over 600 s; CPU 1200-1800 MHz")


def test_a_clock_within_ten_percent_is_not_called_a_fall():
    data = run(freq=lambda t: 1800.0 if t < 300 else 1650.0, bits=lambda t: None, sources={"throttle": None})
    summary = sustained.summarize("x86", data)
    assert summary.freq_fell is None and "fell" not in sustained.statement(summary)


def test_vcgencmd_that_gave_no_bits_is_not_called_missing():
    summary = sustained.summarize("pi", run(bits=lambda t: None))
    assert summary.throttle == sustained.NO_BITS


def test_bits_only_since_boot_mean_throttled_before_this_run():
    summary = sustained.summarize("pi", run(bits=lambda t: 0xE0000))  # 17-19: capped, throttled, soft limit
    assert summary.throttle == sustained.BEFORE and summary.throttled_at_s is None and summary.spans == ()
    assert summary.reasons == ("soft temperature limit", "arm frequency capped", "firmware throttling")
    assert sustained.statement(summary).startswith(
        "pi: throttled before this run (since boot: soft temperature limit, arm frequency capped, firmware "
        "throttling), not during it: p50 steady")


def test_an_occurred_bit_that_appears_during_the_run_was_this_run():
    """Throttled for less than a second between two samples: only the sticky bit shows it."""
    summary = sustained.summarize("pi", run(bits=lambda t: 1 << 19 if t >= 300 else 0))
    assert summary.throttle == sustained.BRIEFLY and summary.throttled_at_s == 300.0
    assert "throttled between samples, first seen at 300 s (soft temperature limit)" in sustained.statement(summary)


def test_under_voltage_is_named_on_its_own():
    summary = sustained.summarize("pi", run(bits=lambda t: UNDER_VOLTAGE if t >= 30 else 0))
    assert summary.under_voltage_at_s == 30.0 and summary.throttle == sustained.THROTTLED
    assert sustained.statement(summary).startswith(
        "pi: under-voltage at 30 s; throttled after 30 s (firmware throttling): ")
    before = sustained.summarize("pi", run(bits=lambda t: 1 << 16))
    assert before.under_voltage_before and before.throttle == sustained.NOT_THROTTLED
    assert sustained.statement(before).startswith("pi: under-voltage before this run (since boot); not throttled")


def test_a_run_cut_short_says_why():
    deadline = sustained.summarize("pi", {**run(seconds=300), "seconds": 600.0, "stopped_by": "deadline"})
    assert "over 300 s (stopped by the deadline, 600 s asked); CPU" in sustained.statement(deadline)
    error = run(seconds=5, stopped_by="error", error={"kind": "runtime", "message": "interpreter crashed"})
    assert "over 5 s (stopped by an error: runtime: interpreter crashed)" in sustained.statement(
        sustained.summarize("pi", error))


def test_no_samples():
    summary = sustained.summarize("pi", {**run(seconds=0), "stopped_by": "error", "error": {"kind": "start"}})
    assert summary.samples == 0 and summary.ratio is None and summary.temp_min is None
    assert sustained.statement(summary) == "pi: no samples (stopped by an error: start)"


def test_a_day_of_samples_is_summarized_quickly():
    started = time.perf_counter()
    summary = sustained.summarize("pi", run(seconds=86400, bits=lambda t: HOT if t % 600 < 300 else 0))
    assert time.perf_counter() - started < 5
    assert len(summary.spans) == 145 and summary.spans[1] == (600.0, 900.0) and summary.spans[-1] == (86400.0, 86401.0)


# -- the renderers -------------------------------------------------------------------------------------------------

def test_renderers_show_the_sentence_and_its_figures():
    summary = sustained.summarize("pi4", throttling_run())
    sentence = sustained.statement(summary)
    figures = ("cell baseline-float32, 600 samples; p50 first 60 s 1.21 ms, last 60 s 1.58 ms; temperature 48.1 °C "
               f"at the start, 81.0 °C at the end; sources: freq {FREQ}, temp {TEMP}, throttle vcgencmd")
    assert sustained.details(summary) == figures
    assert rendered(sustained.terminal_lines([summary])) == f"Sustained runs\n  {sentence}\n  {figures}\n"
    assert sustained.markdown([summary]) == (
        f"## Sustained runs\n\n- **{for_markdown(sentence, 800)}**\n  {for_markdown(figures, 800)}\n")
    assert sustained.html([summary]) == (
        f'<section class="sustained"><h2>Sustained runs</h2><ul><li><strong>{sentence}</strong><br>'
        f'<span class="meta">{figures}</span></li></ul></section>')


def test_no_run_gives_empty_output():
    assert sustained.terminal_lines([]) == [] and sustained.markdown([]) == "" and sustained.html([]) == ""


def hostile_summary() -> sustained.SustainedSummary:
    data = run(seconds=30, cell=HOSTILE, stopped_by="error", error={"kind": HOSTILE, "message": HOSTILE},
               sources={"temp": HOSTILE, "freq": None, "throttle": "vcgencmd"})
    return sustained.summarize(HOSTILE, data)


def test_terminal_shows_device_text_literally():
    text = rendered(sustained.terminal_lines([hostile_summary()]))
    assert not CONTROL.search(text.replace("\n", ""))
    assert f"  {SHOWN}: not throttled: " in text and f"(stopped by an error: {SHOWN}: {SHOWN})" in text
    assert f"cell {SHOWN}, 30 samples" in text and f"temp {SHOWN}, throttle vcgencmd" in text


def test_markdown_and_html_escape_device_text():
    summary = hostile_summary()
    markdown, html = sustained.markdown([summary]), sustained.html([summary])
    for text in (markdown, html):
        assert not CONTROL.search(text.replace("\n", ""))
    assert not re.search(r"(?<!\\)[<$|]", markdown.replace("- **", "")) and "[bold]" not in markdown
    assert for_markdown(f"cell {SHOWN}") in markdown
    assert "<script" not in html and for_html(f"(stopped by an error: {SHOWN}: {SHOWN})") in html


# -- the plot ------------------------------------------------------------------------------------------------------

def test_the_plot_is_a_png_of_the_report_size(tmp_path):
    path = sustained.plot(sustained.summarize("pi4", throttling_run()), tmp_path / "sustained.png")
    assert path.stat().st_size > 10_000
    assert imread(str(path)).shape[:2] == (plots.PIXELS[1], plots.PIXELS[0])


def test_the_plot_draws_latency_temperature_and_the_throttled_span():
    fig = sustained.figure(sustained.summarize("pi4", throttling_run()))
    latency, temperature = fig.axes
    assert latency.get_ylabel() == "p50 latency (ms)" and temperature.get_ylabel() == "CPU temperature (°C)"
    assert latency.lines[0].get_ydata()[0] == pytest.approx(1.2115)
    assert [label.get_text() for label in latency.get_legend().get_texts()] == [
        "p50 latency", "throttled", "CPU temperature"]
    assert len(latency.patches) == 1 and latency.patches[0].get_x() == 212.0  # the shaded span


def test_missing_temperatures_are_not_drawn(tmp_path):
    gaps = run(temp=lambda t: None if 100 < t < 200 else 55.0)
    assert len(sustained.figure(sustained.summarize("pi", gaps)).axes) == 2
    none = run(temp=lambda t: None, sources={"temp": None, "freq": None, "throttle": None})
    assert len(sustained.figure(sustained.summarize("pi", none)).axes) == 1
    path = sustained.plot(none, tmp_path / "no-temp.png", device="pi")  # the run's data, not a summary
    assert imread(str(path)).size


BROKEN_MATH = "pi $\\frac{$ [/]"  # broken mathtext: unescaped in a label, matplotlib raises while drawing


@pytest.mark.parametrize("data, device", [(run(seconds=0), BROKEN_MATH), (run(seconds=30, cell=BROKEN_MATH), "pi"),
                                          (run(seconds=30, cell=HOSTILE), HOSTILE)])
def test_the_plot_draws_hostile_labels_and_empty_runs(tmp_path, data, device):
    path = sustained.plot(data, tmp_path / "plot.png", device=device)
    assert path.stat().st_size > 0 and imread(str(path)).shape[2] == 4


def test_plot_labels_show_device_text_as_text():
    title = sustained.figure(hostile_summary()).axes[0].get_title()
    assert title.startswith(f"{for_matplotlib(HOSTILE)}: {for_matplotlib(HOSTILE)} kept running for 30 s")
    assert "\x1b" not in title and "$x$" not in title
