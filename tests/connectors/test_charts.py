"""The charts: valid PNGs of the asked size, with something drawn, the same bytes for the same
input, no warnings, and labels that neither overlap nor break on hostile text."""

from __future__ import annotations

import io
import itertools
import os
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from connectors import charts

WHITE = (255, 255, 255, 255)
FLAGGED = (0xD5, 0x5E, 0x00, 255)
HIGHLIGHT = (0xE6, 0x9F, 0x00, 255)
WEEKS = [f"2026-W{i:02d}" for i in range(1, 27)]
COUNTS = [6, 5, 7, 4, 8, 6, 5, 3, 13, 6, 5, 4, 2, 1, 0, 1, 2, 5, 6, 7, 6, 5, 4, 6, 7, 5]
LONG = "Supported living at Riverside flats, the annex and the garden cottages by the station"
HOSTILE = [
    "tab\there\nnewline\x00nul\x07bell\x1b[31mred",
    "x" * 100_000,
    "שלום עולם — דיווח",
    "تقرير الحوادث",
    "\u202eevil override\u202c and \u200fmarks\u200e",
    "$5 and $10",
    r"costs $\frac{ and $",
    r"$x^2$ \alpha",
    "中文标签 and emoji 😀",
    "lone \ud800 surrogate",
    "",
    "   ",
]


@pytest.fixture(autouse=True)
def _no_warnings() -> Iterator[None]:
    """Any warning the drawing raises fails the test; an unclosed socket or file another
    test left for the garbage collector may surface here and says nothing of charts."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("default", ResourceWarning)
        yield


def picture(png: bytes, width: int = 720, height: int = 360) -> Image.Image:
    """The PNG read back, checked to be valid, of the asked size, opaque and not blank."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    image.load()
    assert image.format == "PNG"
    assert image.size == (width, height)
    image = image.convert("RGBA")
    assert image.getextrema()[3] == (255, 255), "transparent pixels vanish on dark-mode mail"
    return image


def colours(image: Image.Image) -> dict[tuple[int, ...], int]:
    return {colour: count for count, colour in image.getcolors(image.width * image.height)}


def ink(image: Image.Image) -> float:
    """The share of pixels that are not background."""
    return 1 - colours(image).get(WHITE, 0) / (image.width * image.height)


def series(n: int, weeks: int = len(WEEKS)) -> dict[str, list[float]]:
    return {f"Service {i} — {LONG[: 10 + 3 * i]}": [(i * 7 + j * 3) % 11 for j in range(weeks)]
            for i in range(n)}


def control_ordinary(**kwargs: Any) -> bytes:
    flags = [False] * 13 + [True, True, True] + [False] * 10
    return charts.control("Reports per week — Riverside", WEEKS, COUNTS, 5.3, 0, 12.2, flags,
                          **kwargs)


ORDINARY: dict[str, Callable[..., bytes]] = {
    "bars": lambda **kw: charts.bars("Reports by service, October",
                                     ["Home care north", "Riverside", "Day centre", "Respite"],
                                     [12, 3, 0, 27], highlight=["Day centre"], **kw),
    "weekly": lambda **kw: charts.weekly("Reports per week by category", WEEKS, series(4),
                                         **kw),
    "control": control_ordinary,
    "before_after": lambda **kw: charts.before_after(
        "Did the fix work?", ["Bed rails checked weekly", "Double signing", "Slings labelled"],
        [5, 8, 3], [1, 8, 0], **kw),
}

EMPTY: dict[str, Callable[[], bytes]] = {
    "bars": lambda: charts.bars("Nothing", [], []),
    "bars zero": lambda: charts.bars("All zero", ["a", "b", "c"], [0, 0, 0]),
    "weekly": lambda: charts.weekly("Nothing", [], {}),
    "weekly no series": lambda: charts.weekly("No series", WEEKS, {}),
    "weekly zero": lambda: charts.weekly("All zero", WEEKS[:4], {"a": [0] * 4, "b": [0] * 4}),
    "weekly missing": lambda: charts.weekly("No data", WEEKS[:3], {"a": [None] * 3}),
    "control": lambda: charts.control("Nothing", [], [], 0, 0, 0, []),
    "control zero": lambda: charts.control("All zero", WEEKS[:5], [0] * 5, 0, 0, 0, [False] * 5),
    "before_after": lambda: charts.before_after("Nothing", [], [], []),
    "before_after zero": lambda: charts.before_after("All zero", ["a", "b"], [0, 0], [0, 0]),
}


@pytest.mark.parametrize("name", ORDINARY)
def test_ordinary_charts_are_drawn(name: str) -> None:
    assert ink(picture(ORDINARY[name]())) > 0.05


@pytest.mark.parametrize("name", EMPTY)
def test_empty_and_zero_data_give_a_valid_chart_with_a_note(name: str) -> None:
    # axes, title and "no reports in this period" only: little ink, but some
    assert 0.01 < ink(picture(EMPTY[name]())) < 0.1


@pytest.mark.parametrize("name", ORDINARY)
@pytest.mark.parametrize(("width", "height"), [(charts.MIN_WIDTH, charts.MIN_HEIGHT),
                                               (1201, 631)])
def test_size_is_exactly_the_asked_pixels(name: str, width: int, height: int) -> None:
    picture(ORDINARY[name](width=width, height=height), width, height)


@pytest.mark.parametrize("name", ORDINARY)
def test_same_input_gives_the_same_bytes(name: str) -> None:
    assert ORDINARY[name]() == ORDINARY[name]()


def test_charts_drawn_at_once_from_threads_are_the_same() -> None:
    def draw(name: str) -> bytes:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            warnings.simplefilter("default", ResourceWarning)
            return ORDINARY[name]()

    names = list(ORDINARY) * 2
    with ThreadPoolExecutor(max_workers=4) as pool:
        drawn = list(pool.map(draw, names))
    for name, png in zip(names, drawn, strict=True):
        assert png == drawn[names.index(name)]


def test_flagged_points_have_their_own_colour_only_when_flagged() -> None:
    assert colours(picture(control_ordinary())).get(FLAGGED, 0) > 20
    unflagged = charts.control("t", WEEKS, COUNTS, 5.3, 0, 12.2, [False] * len(WEEKS))
    assert FLAGGED not in colours(picture(unflagged))


def test_a_flagged_point_above_the_upper_limit_is_no_warning() -> None:
    flags = [c > 12.2 for c in COUNTS]
    assert any(flags)
    above = charts.control("t", WEEKS, COUNTS, 5.3, 0, 12.2, flags)
    assert FLAGGED not in colours(picture(above))


def test_highlighted_bars_have_their_own_colour() -> None:
    plain = charts.bars("t", ["a", "b"], [3, 4])
    marked = charts.bars("t", ["a", "b"], [3, 4], highlight=["b"])
    assert HIGHLIGHT not in colours(picture(plain))
    assert colours(picture(marked)).get(HIGHLIGHT, 0) > 100


def test_missing_weeks_leave_gaps() -> None:
    gappy = {"a": [1, 2, None, float("nan"), 5, 6], "b": [None, None, 3, 4, 5, 6]}
    assert ink(picture(charts.weekly("Gaps", WEEKS[:6], gappy))) > 0.05


@pytest.mark.parametrize("n", [1, 8, charts.MAX_SERIES])
def test_many_series_with_long_names_fit(n: int) -> None:
    assert ink(picture(charts.weekly("Per service " + LONG, WEEKS, series(n)))) > 0.05


def test_more_series_than_can_be_told_apart_is_refused() -> None:
    with pytest.raises(ValueError, match="told apart"):
        charts.weekly("t", WEEKS, series(charts.MAX_SERIES + 1))


@pytest.fixture
def ticks(monkeypatch: pytest.MonkeyPatch) -> list[list[Any]]:
    """The x tick labels' boxes (in pixels) of each chart drawn, as saved."""
    seen: list[list[Any]] = []
    save = charts._png

    def spy(fig: Any) -> bytes:
        png = save(fig)
        renderer = fig.canvas.get_renderer()
        (ax,) = fig.axes
        seen.append([t.get_window_extent(renderer) for t in ax.get_xticklabels()
                     if t.get_text()])
        return png

    monkeypatch.setattr(charts, "_png", spy)
    return seen


def apart(boxes: list[Any]) -> bool:
    boxes = sorted(boxes, key=lambda b: b.x0)
    return all(a.x1 <= b.x0 for a, b in itertools.pairwise(boxes))


@pytest.mark.parametrize("n", [3, 8, 20, 45])
def test_long_category_labels_never_overlap(ticks: list[list[Any]], n: int) -> None:
    labels = [f"{i}: {LONG}" for i in range(n)]
    picture(charts.bars("Long labels", labels, list(range(n))))
    picture(charts.before_after("Long labels", labels, list(range(n)), [1] * n))
    for boxes in ticks:
        assert len(boxes) == n, "every category keeps its label"
        assert apart(boxes)


def test_crowded_weeks_are_thinned_from_the_latest(ticks: list[list[Any]]) -> None:
    weeks = [f"week beginning {i:02d} November" for i in range(52)]
    picture(charts.weekly("A year", weeks, {"a": list(range(52)), "b": [3] * 52}))
    picture(charts.control("A year", weeks, [3] * 52, 3, 0, 8.2, [False] * 52))
    for boxes in ticks:
        assert 1 < len(boxes) < 52
        assert apart(boxes)


def test_too_many_categories_for_the_width_are_refused() -> None:
    with pytest.raises(ValueError, match="legibly"):
        charts.bars("t", [str(i) for i in range(300)], [1] * 300)


@pytest.mark.parametrize("label", HOSTILE)
def test_a_hostile_label_does_not_raise(label: str) -> None:
    small = {"width": charts.MIN_WIDTH, "height": charts.MIN_HEIGHT}  # the text is the test
    picture(charts.bars(label, [label, "plain"], [2, 1], ylabel=label, xlabel=label,
                        highlight=[label], **small), **small)


HOSTILE_CHARTS: dict[str, Callable[[str], bytes]] = {
    "bars": lambda title: charts.bars(title, HOSTILE, range(len(HOSTILE)), ylabel=HOSTILE[0]),
    "weekly": lambda title: charts.weekly(title, HOSTILE, {h: [1] * len(HOSTILE)
                                                          for h in HOSTILE[:6]}),
    "control": lambda title: charts.control(title, HOSTILE, [1] * len(HOSTILE), 1, 0, 4,
                                            [True] * len(HOSTILE), xlabel=HOSTILE[-4]),
    "before_after": lambda title: charts.before_after(title, HOSTILE, [3] * len(HOSTILE),
                                                      [1] * len(HOSTILE)),
}


@pytest.mark.parametrize("name", HOSTILE_CHARTS)
def test_hostile_labels_do_not_raise_anywhere(name: str) -> None:
    picture(HOSTILE_CHARTS[name](" ".join(HOSTILE)))


def test_dollar_signs_are_text_not_mathtext() -> None:
    # the same label would fail to parse as mathtext, so passing shows it is taken literally
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    broken = r"costs $\frac{ and $"
    fig = Figure()
    fig.text(0, 0, broken, parse_math=True)
    with pytest.raises(ValueError):
        FigureCanvasAgg(fig).draw()
    assert charts._clean(broken) == broken
    picture(charts.bars(broken, [broken], [1]))


def test_cleaned_labels() -> None:
    assert charts._clean("a\tb\n\x00c  d") == "a b c d"
    assert charts._clean("\u202eabc\u200f") == "abc"
    assert charts._clean("中") == "\ufffd"
    assert len(charts._clean("x" * 10_000)) == 200
    assert charts._clean("x" * 10_000).endswith("…")


@pytest.mark.parametrize(("value", "text"), [(0, "0"), (12.0, "12"), (5.25, "5.2"),
                                             (1204, "1,204"), (-0.01, "0"), (12.25, "12.2")])
def test_numbers(value: float, text: str) -> None:
    assert charts._number(value) == text


@pytest.mark.parametrize("call", [
    lambda: charts.bars("t", ["a", "b"], [1]),
    lambda: charts.bars("t", ["a"], [-1]),
    lambda: charts.bars("t", ["a"], [float("nan")]),
    lambda: charts.bars("t", ["a"], [1], width=100),
    lambda: charts.bars("t", ["a"], [1], height=10_000),
    lambda: charts.bars("t", ["a"], [1], width=720.5),  # type: ignore[arg-type]
    lambda: charts.weekly("t", WEEKS[:2], {"a": [1, 2, 3]}),
    lambda: charts.weekly("t", WEEKS[:2], {"a": [1, float("inf")]}),
    lambda: charts.control("t", WEEKS[:2], [1, 2], 1, 0, 3, [False]),
    lambda: charts.control("t", WEEKS[:2], [1, 2], 1, 2, 3, [False, False]),
    lambda: charts.control("t", WEEKS[:2], [1, 2], float("nan"), 0, 3, [False, False]),
    lambda: charts.before_after("t", ["a"], [1], [1, 2]),
])
def test_bad_input_is_refused(call: Callable[[], bytes]) -> None:
    with pytest.raises(ValueError):
        call()


def test_import_is_lazy_and_a_read_only_home_prints_nothing(tmp_path: Path) -> None:
    # a home under a regular file cannot be created, even by root
    (tmp_path / "file").touch()
    (tmp_path / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in {"MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"}}
    env |= {"HOME": str(tmp_path / "file" / "home"), "TMPDIR": str(tmp_path / "tmp"),
            "PYTHONWARNINGS": "error"}
    script = (
        "import sys\n"
        "from connectors import charts\n"
        "assert 'matplotlib' not in sys.modules, 'imported before first use'\n"
        "sys.stdout.buffer.write(charts.bars('t', ['a'], [1]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          cwd=Path(charts.__file__).parents[1], timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b""
    picture(done.stdout)
