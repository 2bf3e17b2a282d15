"""Charts as PNG bytes for the governance emails and the inspectors' evidence pack.

People read a trend from these pictures at email width, so every chart is plain: a title,
labelled axes, a light horizontal grid, no frame on top or right, and the Okabe–Ito palette,
which stays distinguishable with the common colour-vision deficiencies. Colour is never the
only cue: highlighted bars carry a bold label, flagged control-chart points a different marker.

Output is deterministic (the same input gives byte-identical PNGs, so a resent email or a
rebuilt evidence pack does not change): matplotlib's Agg renderer is used directly through a
`Figure` (never pyplot, whose global figure registry is not thread-safe), every chart is drawn
under matplotlib's built-in default style plus the settings below (a user's matplotlibrc does
not leak in), the bundled DejaVu Sans is the only font, and the PNG carries no version text.

Labels come from form answers and so are hostile: control characters, bidirectional
overrides, characters the font lacks and megabyte-long text are cleaned, and mathtext is off,
so ``$5 and $10`` reads as typed and never as a formula.

matplotlib is imported on first use: a run that draws nothing does not pay its import time.
"""

from __future__ import annotations

import io
import itertools
import math
import numbers
import os
import sys
import tempfile
import textwrap
import threading
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.figure import Figure
    from matplotlib.text import Text

__all__ = ["DPI", "NO_DATA", "OKABE_ITO", "bars", "before_after", "control", "weekly"]

# Okabe & Ito (2008), "Color Universal Design".
ORANGE = "#E69F00"
SKY_BLUE = "#56B4E9"
GREEN = "#009E73"
YELLOW = "#F0E442"
BLUE = "#0072B2"
VERMILLION = "#D55E00"
PURPLE = "#CC79A7"
BLACK = "#000000"
OKABE_ITO = (ORANGE, SKY_BLUE, GREEN, YELLOW, BLUE, VERMILLION, PURPLE, BLACK)

# Yellow is left out of lines: it is barely visible on white.
_SERIES_COLOURS = (BLUE, ORANGE, GREEN, PURPLE, SKY_BLUE, VERMILLION, BLACK)
_SERIES_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
_SERIES_STYLES = ("-", "--", ":")
# Beyond this, two lines would share colour, marker and dash and could not be told apart.
MAX_SERIES = len(_SERIES_COLOURS) * len(_SERIES_STYLES)

BAR = BLUE
HIGHLIGHT = ORANGE
BEFORE, AFTER = ORANGE, BLUE
COUNTS = BLUE
FLAGGED = VERMILLION  # used for nothing else on a control chart, so its presence means a flag
INK = "#222222"
QUIET = "#555555"  # limits, notes: neutral grey reads the same to every eye
GRID = "#DDDDDD"

DPI = 96
MIN_WIDTH, MIN_HEIGHT = 320, 200
MAX_SIDE = 4000
NO_DATA = "no reports in this period"

_TITLE_PT, _TEXT_PT, _TICK_PT, _VALUE_PT, _SMALL_PT = 11, 9, 8.5, 8, 7
_GAP_PX = 3  # the least space between two labels
_LABEL_CHARS = 200  # longer labels are cut before any work is done on them

_RC: dict[str, Any] = {
    "font.family": ["DejaVu Sans"],  # bundled with matplotlib, so present everywhere
    "font.size": _TEXT_PT,
    "text.parse_math": False,
    "text.usetex": False,
    "text.color": INK,
    "axes.labelcolor": INK,
    "axes.edgecolor": QUIET,
    "axes.linewidth": 0.8,
    "xtick.color": INK,
    "ytick.color": INK,
    "xtick.labelsize": _TICK_PT,
    "ytick.labelsize": _TICK_PT,
    "legend.fontsize": _TICK_PT,
    "legend.frameon": False,
}

_LOCK = threading.Lock()  # matplotlib's rcParams are global; one chart is drawn at a time
_glyphs: frozenset[int] | None = None


# -- public charts -----------------------------------------------------------------------


def bars(title: str, labels: Sequence[str], values: Sequence[float], *,
         ylabel: str = "reports", xlabel: str = "", width: int = 720, height: int = 360,
         highlight: Sequence[str] = ()) -> bytes:
    """Vertical bars, one per label, each with its value on top.

    Bars whose label is in `highlight` are drawn in a second colour with a bold label.
    Long labels are wrapped, or turned upright when there are many; when even upright
    labels cannot be told apart, ValueError says so (group the smallest into "other").
    All-zero or no data gives an empty chart that says so.
    """
    counts = _counts("values", values, len(labels))
    marked = set(highlight)
    with _figure(width, height) as fig:
        ax = _axes(fig, title, xlabel, ylabel)
        colours = [HIGHLIGHT if label in marked else BAR for label in labels]
        container = ax.bar(range(len(counts)), counts, width=0.7, color=colours)
        _category_axis(fig, ax, labels, bold={i for i, c in enumerate(colours) if c == HIGHLIGHT})
        _count_axis(ax, counts)
        _value_labels(fig, ax, container.patches, counts, slot=1.0)
        if not any(counts):
            _note(ax, NO_DATA)
        return _png(fig)


def weekly(title: str, weeks: Sequence[str], series: Mapping[str, Sequence[float | None]], *,
           ylabel: str = "reports", xlabel: str = "week", width: int = 720, height: int = 360,
           ) -> bytes:
    """One line with markers per series (reports per week by category, say), in order.

    A missing value (None or NaN) leaves a gap in its line. With two or more series the
    legend sits below the plot, in as many columns as fit. At most `MAX_SERIES` series.
    """
    if len(series) > MAX_SERIES:
        raise ValueError(f"{len(series)} series cannot be told apart on one chart; "
                         f"at most {MAX_SERIES} (group the smallest into 'other')")
    lines = {name: _counts(f"series {name!r}", values, len(weeks), missing=True)
             for name, values in series.items()}
    with _figure(width, height) as fig:
        ax = _axes(fig, title, xlabel, ylabel)
        handles = []
        hues = len(_SERIES_COLOURS)
        for i, values in enumerate(lines.values()):
            # unclipped, so a marker at zero shows whole rather than cut by the axis
            (line,) = ax.plot(range(len(weeks)), values, color=_SERIES_COLOURS[i % hues],
                              marker=_SERIES_MARKERS[i % hues], markersize=4, linewidth=1.6,
                              linestyle=_SERIES_STYLES[i // hues], clip_on=False)
            handles.append(line)
        if len(lines) > 1:
            _legend(fig, handles, [_clean(name) for name in lines])
        everything = [v for values in lines.values() for v in values]
        _count_axis(ax, everything)
        _week_axis(fig, ax, weeks)
        if not any(v for v in everything if not math.isnan(v)):
            _note(ax, NO_DATA)
        return _png(fig)


def control(title: str, weeks: Sequence[str], counts: Sequence[float | None], centre: float,
            lcl: float, ucl: float, flagged: Sequence[bool], *, ylabel: str = "reports",
            xlabel: str = "week", width: int = 720, height: int = 360) -> bytes:
    """A c-chart: weekly counts against their centre line and control limits.

    The centre line is solid, the limits dashed, each labelled with its value at the
    right. Flagged points (a fall below the lower limit, a long run below centre: a warning
    that people have stopped reporting) get a distinct colour and marker. A point above the
    upper limit is drawn as an ordinary point even if flagged: more reporting is no warning.
    """
    n = len(weeks)
    values = _counts("counts", counts, n, missing=True)
    flags = [bool(f) for f in flagged]
    if len(flags) != n:
        raise ValueError(f"flagged has {len(flags)} values for {n} weeks")
    limits = [float(lcl), float(centre), float(ucl)]
    if not all(math.isfinite(v) and v >= 0 for v in limits) or limits != sorted(limits):
        raise ValueError(f"limits must be finite with 0 <= lcl <= centre <= ucl: {limits}")
    lcl, centre, ucl = limits
    warn = [f and not math.isnan(v) and v <= ucl for f, v in zip(flags, values, strict=True)]
    with _figure(width, height) as fig:
        ax = _axes(fig, title, xlabel, ylabel)
        x = range(n)
        # unclipped, so a marker at zero shows whole rather than cut by the axis
        ax.plot(x, values, color=COUNTS, marker="o", markersize=4, linewidth=1.6, zorder=3,
                clip_on=False)
        if any(warn):
            (marker,) = ax.plot([i for i in x if warn[i]], [values[i] for i in x if warn[i]],
                                linestyle="none", marker="v", markersize=9, color=FLAGGED,
                                markeredgecolor=FLAGGED, zorder=4, clip_on=False)
            _legend(fig, [marker], ["fewer reports than expected"])
        captions = []
        for value, name, style in ((ucl, "upper limit", "--"), (centre, "centre", "-"),
                                   (lcl, "lower limit", "--")):
            ax.axhline(value, color=QUIET, linestyle=style, linewidth=1, zorder=2)
            captions.append(ax.annotate(f"{name} {_number(value)}", xy=(1, value),
                                        xycoords=ax.get_yaxis_transform(), xytext=(4, 0),
                                        textcoords="offset points", ha="left", va="center",
                                        color=QUIET, fontsize=_TICK_PT, annotation_clip=False,
                                        clip_on=False))
        _count_axis(ax, [*values, ucl])
        _week_axis(fig, ax, weeks)
        _spread(fig, ax, captions, limits[::-1])
        if not any(v for v in values if not math.isnan(v)):
            _note(ax, NO_DATA)
        return _png(fig)


def before_after(title: str, labels: Sequence[str], before: Sequence[float],
                 after: Sequence[float], *, ylabel: str = "repeats", xlabel: str = "",
                 width: int = 720, height: int = 360) -> bytes:
    """Grouped bars: repeats in a window before each verified action and the same length
    after, so a reader can see whether the fix worked. Labels fit as in `bars`."""
    pre = _counts("before", before, len(labels))
    post = _counts("after", after, len(labels))
    with _figure(width, height) as fig:
        ax = _axes(fig, title, xlabel, ylabel)
        x = range(len(labels))
        left = ax.bar([i - 0.2 for i in x], pre, width=0.38, color=BEFORE)
        right = ax.bar([i + 0.2 for i in x], post, width=0.38, color=AFTER)
        _legend(fig, [left, right], ["before the action", "after the action"])
        _category_axis(fig, ax, labels, bold=set())
        _count_axis(ax, [*pre, *post])
        _value_labels(fig, ax, [*left.patches, *right.patches], [*pre, *post], slot=0.5)
        if not any(pre) and not any(post):
            _note(ax, NO_DATA)
        return _png(fig)


# -- the figure, its text and its axes -----------------------------------------------------


def _prepare_config_dir() -> None:
    """Point matplotlib at a writable config and cache directory before it is imported.

    With a read-only (or no) home, or an unwritable MPLCONFIGDIR, matplotlib makes a fresh
    temporary directory on every import, rebuilds its font cache there and logs a warning
    to stderr. A stable private directory under the system's temporary one avoids both.
    """
    if "matplotlib" in sys.modules:
        return
    wanted = _matplotlib_dirs()
    if wanted and all(_writable(d) for d in wanted):
        return
    uid = os.getuid() if hasattr(os, "getuid") else os.getpid()
    private = Path(tempfile.gettempdir(), f"nearmiss-matplotlib-{uid}")
    try:
        private.mkdir(mode=0o700, exist_ok=True)
        info = private.lstat()
        # someone else's directory (or a planted link) in a shared /tmp is not trusted
        owned = not hasattr(os, "getuid") or info.st_uid == os.getuid()
        if private.is_symlink() or not owned or not _writable(private):
            raise PermissionError(private)
    except OSError:
        private = Path(tempfile.mkdtemp(prefix="nearmiss-matplotlib-"))
    os.environ["MPLCONFIGDIR"] = str(private)


def _matplotlib_dirs() -> list[Path]:
    """The config and cache directories matplotlib would use (as in its own
    `_get_config_or_cache_dir`); empty when there is no home directory to find them in."""
    explicit = os.environ.get("MPLCONFIGDIR")
    if explicit:
        return [Path(explicit)]
    try:
        home = Path.home()
    except RuntimeError:
        return []
    if sys.platform.startswith(("linux", "freebsd")):
        return [Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config", "matplotlib"),
                Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache", "matplotlib")]
    local = os.environ.get("LOCALAPPDATA")
    if sys.platform == "win32" and local and not (home / ".matplotlib").is_dir():
        return [Path(local, "matplotlib")]
    return [home / ".matplotlib"]


def _writable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return directory.is_dir() and os.access(directory, os.W_OK)


@contextmanager
def _figure(width: int, height: int) -> Iterator[Figure]:
    """A blank figure of exactly `width` × `height` pixels, drawn under the fixed style."""
    for name, side, least in (("width", width, MIN_WIDTH), ("height", height, MIN_HEIGHT)):
        if not isinstance(side, numbers.Integral) or not least <= side <= MAX_SIDE:
            raise ValueError(f"{name} must be a whole number of pixels from {least} "
                             f"to {MAX_SIDE}: {side!r}")
    _prepare_config_dir()
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with _LOCK, matplotlib.style.context(["default", _RC]):
        fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white",
                     layout="constrained")
        FigureCanvasAgg(fig)
        yield fig


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    # no "Software" text: the bytes then depend on the picture, not on the library version
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    return buffer.getvalue()


def _renderer(fig: Figure) -> RendererAgg:
    return fig.canvas.get_renderer()  # type: ignore[attr-defined]


def _glyph_set() -> frozenset[int]:
    """The characters both DejaVu Sans faces in use (regular and bold) can draw."""
    global _glyphs
    if _glyphs is None:
        from matplotlib import font_manager

        faces = [font_manager.get_font(font_manager.findfont(
            font_manager.FontProperties(family="DejaVu Sans", weight=weight)))
            for weight in ("normal", "bold")]
        _glyphs = frozenset.intersection(*(frozenset(f.get_charmap()) for f in faces))
    return _glyphs


def _clean(text: object, limit: int = _LABEL_CHARS) -> str:
    """`text` as one safe line: controls become spaces, format characters (bidirectional
    overrides, zero-width joiners) go, characters the font lacks become U+FFFD (matplotlib
    would warn on each), and runs of space collapse. The layout engine orders right-to-left
    script itself."""
    glyphs = _glyph_set()
    raw = unicodedata.normalize("NFC", str(text)[: limit * 4])
    out = []
    for ch in raw:
        kind = unicodedata.category(ch)
        if kind == "Cc" or ch.isspace():
            out.append(" ")
        elif kind != "Cf":
            out.append(ch if ord(ch) in glyphs else "\ufffd")
    line = " ".join("".join(out).split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _fit(text: str, max_px: float, measure: Callable[[str], float], max_lines: int) -> str:
    """`text` wrapped to lines no wider than `max_px`; cut with an ellipsis past
    `max_lines`. A word longer than a line is broken."""
    if measure(text) <= max_px:
        return text
    chars = max(1, int(len(text) * max_px / max(measure(text), 1)))
    while True:
        lines = textwrap.wrap(text, chars) or [""]
        if len(lines) > max_lines:
            lines = lines[:max_lines]
            lines[-1] = lines[-1][: max(chars - 1, 1)].rstrip() + "…"
        if chars == 1 or all(measure(line) <= max_px for line in lines):
            return "\n".join(lines)
        chars -= max(1, chars // 10)


def _measure(fig: Figure, size: float, weight: str = "normal") -> Callable[[str], float]:
    from matplotlib.font_manager import FontProperties

    renderer, font = _renderer(fig), FontProperties(size=size, weight=weight)
    return lambda s: renderer.get_text_width_height_descent(s, font, ismath=False)[0]


def _axes(fig: Figure, title: str, xlabel: str, ylabel: str) -> Axes:
    """The one plot area, plain: no top or right frame, a light grid behind the data."""
    ax = fig.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    ax.yaxis.grid(True, color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)
    ax.set_xlabel(_clean(xlabel, 80), parse_math=False)
    ax.set_ylabel(_clean(ylabel, 60), parse_math=False)
    # the title is aligned with the figure's left edge, as a heading in the email is
    pad = 8
    room = fig.bbox.width - 2 * pad
    heading = _fit(_clean(title), room, _measure(fig, _TITLE_PT, "bold"), max_lines=2)
    fig.suptitle(heading, x=pad / fig.bbox.width, ha="left", fontsize=_TITLE_PT,
                 fontweight="bold", parse_math=False)
    return ax


def _note(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color=QUIET,
            fontsize=_TEXT_PT + 1, fontstyle="italic", parse_math=False)


def _legend(fig: Figure, handles: Sequence[Any], labels: Sequence[str]) -> None:
    """A legend below the plot, in as many columns as fit with whole names (each at most a
    third of the width). When that is too tall for the figure: more columns with shortened
    names, then smaller type. Still too tall is a ValueError, since a legend that cannot be
    read leaves every line anonymous."""
    room = fig.bbox.width - 16
    renderer = _renderer(fig)
    most = min(len(labels), 6)

    def place(names: list[str], size: float, columns: int) -> Any:
        legend = fig.legend(handles, names, loc="outside lower center", ncols=columns,
                            fontsize=size)
        for text in legend.get_texts():
            text.set_parse_math(False)
        return legend

    for size in (_TICK_PT, _SMALL_PT):
        measure = _measure(fig, size)
        whole = [_fit(label, room / min(len(labels), 3), measure, 1) for label in labels]
        fitting = 1
        for columns in range(most, 1, -1):
            legend = place(whole, size, columns)
            wide = legend.get_window_extent(renderer).width
            legend.remove()
            if wide <= room:
                fitting = columns
                break
        handle = 5 * size * DPI / 72  # the line sample, its padding and the column gap
        for columns in range(fitting, most + 1):
            budget = min(room / min(len(labels), 3), room / columns - handle)
            names = whole if columns == fitting else [_fit(s, budget, measure, 1)
                                                       for s in labels]
            legend = place(names, size, columns)
            box = legend.get_window_extent(renderer)
            if box.width <= room and box.height <= fig.bbox.height * 0.3:
                return
            legend.remove()
    raise ValueError(f"a legend of {len(labels)} entries does not fit a "
                     f"{fig.bbox.width:.0f}×{fig.bbox.height:.0f} chart; make it larger")


def _counts(name: str, values: Sequence[float | None], n: int, *,
            missing: bool = False) -> list[float]:
    """`values` as floats, checked: one per label, finite, not negative (they are counts).
    With `missing`, None and NaN stand for a week without data."""
    out = [math.nan if v is None and missing else float(v) for v in values]  # type: ignore[arg-type]
    if len(out) != n:
        raise ValueError(f"{name} has {len(out)} values for {n} labels")
    for v in out:
        if not (missing and math.isnan(v)) and not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be counts, finite and not negative: {v!r}")
    return out


def _number(value: float) -> str:
    """A count as people write it: 12, 1,204, 5.3 (never -0 or 12.0)."""
    return f"{round(value, 1) + 0.0:,.1f}".removesuffix(".0")


def _count_axis(ax: Axes, values: Sequence[float]) -> None:
    """A y axis from zero, in whole numbers when the data are, with a little room on top."""
    from matplotlib.ticker import MaxNLocator, StrMethodFormatter

    known = [v for v in values if not math.isnan(v)]
    top = max(known, default=0.0)
    ax.set_ylim(0, top * 1.08 if top > 0 else 1)
    if all(v.is_integer() for v in known):
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))


def _overlap(texts: Sequence[Text], renderer: RendererAgg) -> bool:
    """Whether any two of `texts` (side by side along the x axis) come closer than the gap."""
    boxes = sorted((t.get_window_extent(renderer) for t in texts if t.get_text()),
                   key=lambda b: b.x0)
    return any(b.x0 < a.x1 + _GAP_PX for a, b in itertools.pairwise(boxes))


def _category_axis(fig: Figure, ax: Axes, labels: Sequence[str], bold: set[int]) -> None:
    """Every category labelled, none overlapping: wrapped across up to three lines between
    words, then the same smaller, else upright, else upright and smaller; a ValueError when
    not even that fits."""
    ax.set_xlim(-0.5, max(len(labels), 1) - 0.5)
    ax.tick_params(axis="x", length=0)
    if not labels:
        ax.set_xticks([])
        return
    names = [_clean(label) for label in labels]
    fig.draw_without_rendering()  # lays the axes out, so their width is known
    slot = ax.bbox.width / len(names) - _GAP_PX
    renderer = _renderer(fig)
    for size, rotation in ((_TICK_PT, 0), (_SMALL_PT, 0), (_TICK_PT, 90), (_SMALL_PT, 90)):
        if rotation == 0:
            measure = _measure(fig, size, "bold")
            # lines of a few letters each, or a word broken across lines ("Safeguardin /
            # g"), are harder to read than a label turned upright
            if slot < measure("abcdefghij") and any(measure(s) > slot for s in names):
                continue
            if any(measure(word) > slot for s in names for word in s.split()):
                continue
            texts = [_fit(s, slot, measure, 3) for s in names]
        else:
            longest = fig.bbox.height * 0.35
            texts = [_fit(s, longest, _measure(fig, size, "bold"), 1) for s in names]
        ax.set_xticks(range(len(names)), texts, fontsize=size, rotation=rotation,
                      parse_math=False)
        ticks = ax.get_xticklabels()
        for i in bold:
            ticks[i].set_fontweight("bold")
        if not _overlap(ticks, renderer):
            return
    raise ValueError(f"{len(names)} categories cannot be labelled legibly in "
                     f"{fig.bbox.width:.0f} px; make the chart wider or group the smallest")


def _week_axis(fig: Figure, ax: Axes, weeks: Sequence[str]) -> None:
    """Weeks along the x axis; when their labels would crowd, every k-th is shown, counted
    back from the latest week, which is the one a review reads first."""
    n = len(weeks)
    ax.set_xlim(-0.5, max(n, 1) - 0.5)
    if not n:
        ax.set_xticks([])
        return
    names = [_fit(_clean(w), 150, _measure(fig, _TICK_PT), 1) for w in weeks]
    fig.draw_without_rendering()
    slot = ax.bbox.width / n
    widest = max(map(_measure(fig, _TICK_PT), names))
    step = max(1, math.ceil((widest + 2 * _GAP_PX) / slot))
    renderer = _renderer(fig)
    while True:
        shown = [i for i in range(n) if (n - 1 - i) % step == 0]
        ax.set_xticks(shown, [names[i] for i in shown], parse_math=False)
        if step >= n or not _overlap(ax.get_xticklabels(), renderer):
            return
        step += 1


def _value_labels(fig: Figure, ax: Axes, patches: Sequence[Any], values: Sequence[float],
                  slot: float) -> None:
    """Each bar's value on top of it, zero included. They turn upright when too wide for
    their bar's share of the axis (`slot`, in data units); when not even that fits they are
    left out and the grid gives the values. The y axis grows to keep them inside."""
    if not values:
        return
    fig.draw_without_rendering()
    room = ax.bbox.width / (ax.get_xlim()[1] - ax.get_xlim()[0]) * slot - _GAP_PX
    texts = [_number(v) for v in values]
    for size, rotation in ((_VALUE_PT, 0), (_VALUE_PT, 90), (_SMALL_PT, 90)):
        measure = _measure(fig, size)
        needed = max(map(measure, texts)) if rotation == 0 else size * 1.25 * DPI / 72
        if needed <= room:
            break
    else:
        return
    renderer = _renderer(fig)
    labels = [ax.annotate(text, xy=(p.get_x() + p.get_width() / 2, v), xytext=(0, 2),
                          textcoords="offset points", ha="center", va="bottom",
                          fontsize=size, rotation=rotation, parse_math=False, clip_on=False)
              for p, v, text in zip(patches, values, texts, strict=True)]
    # The labels sit a fixed number of pixels above their bars, so the top of the axis must
    # leave that many pixels: solve top so that bar_px + label_px fits the axis height.
    height = ax.bbox.height
    top = ax.get_ylim()[1]
    for label, v in zip(labels, values, strict=True):
        extra = label.get_window_extent(renderer).height + 2 * DPI / 72 + _GAP_PX
        if extra < height * 0.9:
            top = max(top, v * height / (height - extra))
    ax.set_ylim(0, top)


def _spread(fig: Figure, ax: Axes, captions: Sequence[Any], values: Sequence[float]) -> None:
    """Move the limit captions apart vertically so they never overlap, each as near its
    line as it can be (the lower limit and the centre are often close together)."""
    fig.draw_without_rendering()
    renderer = _renderer(fig)
    wanted = [float(ax.transData.transform((0, v))[1]) for v in values]  # top to bottom
    step = max(c.get_window_extent(renderer).height for c in captions) + 1
    placed: list[float] = []
    for y in wanted:
        placed.append(y if not placed else min(y, placed[-1] - step))
    # if that pushed the lowest below the axis, shift the whole stack back up
    lift = max(0.0, ax.bbox.y0 - placed[-1])
    for caption, y, target in zip(captions, wanted, placed, strict=True):
        caption.xyann = (4, (target + lift - y) * 72 / DPI)
