"""Self-contained HTML reports and PNG image grids.

A `Report` is a list of blocks (headings, text, metric tables, image grids, plots) rendered into
one HTML file with inline CSS and every image embedded as a base64 PNG, so a report can be mailed,
attached to an issue or opened offline with nothing beside it.
"""

from __future__ import annotations

import base64
import html
import io
import math
import numbers
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from artok.data.base import to_uint8
from artok.hub import atomic_write_bytes

#: Grids of small images are upscaled (nearest neighbour) until a cell is at least this many pixels.
MIN_CELL_PIXELS = 64


# ---------------------------------------------------------------------------------------------
# Image grids


def image_grid(
    images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: int = 255, scale: int = 1
) -> np.ndarray:
    """Tile images into one picture.

    Args:
        images: ``B x C x H x W`` float in [-1, 1] (clamped) or uint8, with C = 1 or 3.
        nrow: images per row.
        padding: pixels between cells and around the border (before scaling).
        pad_value: grey level of the padding, 0..255.
        scale: integer nearest-neighbour upscaling factor applied to the whole grid.

    Returns:
        ``height x width x C`` uint8 numpy array.
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3) or images.shape[0] == 0:
        raise ValueError(f"expected a non-empty B x C x H x W batch with C in (1, 3), got {tuple(images.shape)}")
    if nrow < 1 or padding < 0 or scale < 1:
        raise ValueError(f"need nrow >= 1, padding >= 0, scale >= 1; got {nrow}, {padding}, {scale}")
    pixels = images.detach().cpu() if images.dtype == torch.uint8 else to_uint8(images).cpu()
    count, channels, height, width = pixels.shape
    columns = min(nrow, count)
    rows = math.ceil(count / columns)
    grid = np.full(
        (rows * (height + padding) + padding, columns * (width + padding) + padding, channels),
        pad_value,
        dtype=np.uint8,
    )
    cells = pixels.permute(0, 2, 3, 1).numpy()
    for i in range(count):
        top = padding + (i // columns) * (height + padding)
        left = padding + (i % columns) * (width + padding)
        grid[top : top + height, left : left + width] = cells[i]
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    return grid


def _to_pil(grid: np.ndarray) -> Image.Image:
    return Image.fromarray(grid[:, :, 0] if grid.shape[2] == 1 else grid)


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def save_image_grid(
    path: str | os.PathLike,
    images: torch.Tensor,
    nrow: int = 8,
    padding: int = 2,
    pad_value: int = 255,
    scale: int = 1,
) -> Path:
    """Write `image_grid` of ``images`` to ``path`` as a PNG (atomically). Returns the path."""
    return atomic_write_bytes(path, _png_bytes(_to_pil(image_grid(images, nrow, padding, pad_value, scale))))


def default_scale(height: int, width: int) -> int:
    """Smallest integer factor that makes an ``height x width`` cell at least `MIN_CELL_PIXELS` on
    its short side (1 for images that are already that big)."""
    return max(1, math.ceil(MIN_CELL_PIXELS / min(height, width)))


# ---------------------------------------------------------------------------------------------
# Numbers


def format_number(value: Any) -> str:
    """Compact human formatting: integers (and floats holding a whole number, such as counts
    stored as floats) with thousands separators and no ".0"; other floats to 4 significant digits
    (one decimal from 1,000, none from 100,000); scientific notation for tiny and huge magnitudes."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    value = float(value)
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1e15:
        return f"{value:.3e}"
    if value.is_integer():
        return f"{int(value):,}"
    if magnitude >= 1e5:
        return f"{value:,.0f}"
    if magnitude >= 1000:
        return f"{value:,.1f}"
    if magnitude < 1e-3:
        return f"{value:.2e}"
    return f"{value:.4g}"


def _is_number(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() == 1
    return isinstance(value, (numbers.Real, np.generic)) and not isinstance(value, bool)


# ---------------------------------------------------------------------------------------------
# Units and meanings of the metric keys the reports show

#: ``key: (unit, meaning)`` for the metric names artok's reports use; a newcomer reading a table
#: sees the unit beside the number and the meaning as a tooltip (and in the "meaning" column of
#: two-column tables). Keys are matched after dropping a ``tokenizer.`` / ``generator.`` prefix.
METRIC_UNITS: dict[str, tuple[str, str]] = {
    "psnr": ("dB", "peak signal-to-noise ratio of reconstructions against the originals; higher is better"),
    "ssim": ("0-1", "structural similarity of reconstructions and originals; 1 is identical"),
    "lpips": ("", "learned perceptual distance (VGG16 features); lower is better"),
    "fd": ("", "Frechet distance between reference-classifier features of the images and of real images; lower is better"),
    "fd_reference": ("", "FD between two sets of real images of the same size: the floor FD can reach"),
    "class_accuracy": ("fraction", "share of generated images the reference classifier puts in the class asked for"),
    "codebook_usage": ("fraction", "share of the codebook's codes used at least once"),
    "codebook_size": ("codes", "entries of the codebook"),
    "codes_used": ("codes", "codes used at least once"),
    "perplexity": ("codes", "exp(entropy) of the code frequencies: how many codes are effectively in use"),
    "entropy_bits": ("bits", "entropy of the code frequencies"),
    "rank_frequency_slope": ("", "slope of log frequency against log rank of the codes (0: uniform use)"),
    "bits_per_image": ("bits", "tokens x bits per token: the compressed size of one image"),
    "tokens_per_image": ("tokens", "tokens that describe one image"),
    "num_tokens": ("tokens", "tokens decoded (a prefix of the sequence)"),
    "tokens_timed": ("tokens", "decode steps timed per call (the rest of the sequence is extrapolated)"),
    "images": ("images", "images evaluated"),
    "num_samples": ("images", "generated images evaluated"),
    "num_reference": ("images", "real images the generated ones are compared with"),
    "train_images": ("images", "images in the training split"),
    "test_images": ("images", "images in the test split"),
    "batch_size": ("images", "images per call"),
    "params": ("parameters", "number of weights"),
    "steps": ("steps", "optimisation steps"),
    "seconds": ("s", "wall time"),
    "seconds_total": ("s", "wall time of the whole run"),
    "sample_seconds_per_image": ("s", "sampling wall time divided by the number of images"),
    "latency_s": ("s", "wall time of one batch, for the whole token sequence"),
    "latency_ms": ("ms", "wall time of one batch"),
    "ms_per_step": ("ms", "wall time of one decode step of the whole batch"),
    "images_per_s": ("images/s", "throughput: images finished per second"),
    "encode_images_per_s": ("images/s", "encoding throughput"),
    "decode_images_per_s": ("images/s", "decoding throughput"),
    "roofline_images_per_s": ("images/s", "images/s at the slower of the memory-bandwidth and compute floors"),
    "roofline_fraction": ("fraction", "measured images/s over roofline images/s (1 = at the hardware floor)"),
    "bound": ("", "which floor limits the roofline: memory bandwidth or compute"),
    "peak_mb": ("MB", "most memory a call needed above what was allocated before it (MB = 2^20 bytes)"),
    "peak_memory_mb": ("MB", "most memory a call needed above what was allocated before it (MB = 2^20 bytes)"),
    "encode_peak_memory_mb": ("MB", "peak extra memory of an encode call (MB = 2^20 bytes)"),
    "decode_peak_memory_mb": ("MB", "peak extra memory of a decode call (MB = 2^20 bytes)"),
}

#: Units of keys not in `METRIC_UNITS`, by how the name ends.
_UNIT_SUFFIXES = (("_per_s", "per s"), ("_mb", "MB"), ("_ms", "ms"), ("_s", "s"), ("_seconds", "s"))


def metric_unit(key: Any) -> tuple[str, str]:
    """``(unit, meaning)`` of a metric key ("" for either when unknown). ``tokenizer.psnr`` and
    ``psnr fashion-mnist`` are looked up as ``psnr``; unknown keys get a unit from their ending."""
    name = str(key).split(".")[-1]
    for candidate in (name, name.split(" ")[0]):
        if candidate in METRIC_UNITS:
            return METRIC_UNITS[candidate]
    for suffix, unit in _UNIT_SUFFIXES:
        if name.endswith(suffix):
            return unit, ""
    return "", ""


# ---------------------------------------------------------------------------------------------
# The report

_CSS = """
:root { color-scheme: light; }
body { font-family: -apple-system, BlinkMacSystemFont, "Segoe UI", Helvetica, Arial, sans-serif;
       max-width: 1100px; margin: 2rem auto; padding: 0 1.25rem; color: #1f2328; line-height: 1.5;
       background: #ffffff; }
h1 { font-size: 1.8rem; border-bottom: 2px solid #d0d7de; padding-bottom: .3rem; }
h2 { font-size: 1.35rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; }
h3 { font-size: 1.1rem; margin-top: 1.5rem; }
p { margin: .6rem 0; }
figure { margin: 1rem 0 1.5rem; }
figcaption { color: #57606a; font-size: .9rem; margin-top: .35rem; }
img { max-width: 100%; height: auto; }
img.pixels { image-rendering: pixelated; image-rendering: crisp-edges; }
.table-scroll { overflow-x: auto; max-width: 100%; margin: .8rem 0 1.4rem; }
table.metrics { border-collapse: collapse; font-size: .92rem; }
table.metrics th, table.metrics td { border: 1px solid #d0d7de; padding: .3rem .7rem; vertical-align: top; }
table.metrics th { background: #f6f8fa; text-align: left; font-weight: 600; }
table.metrics th[title] { text-decoration: underline dotted #8c959f; cursor: help; }
table.metrics th .unit { font-weight: 400; color: #57606a; white-space: nowrap; }
table.metrics td.number { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap;
                          font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
table.metrics td.meaning { color: #57606a; font-size: .85rem; min-width: 16rem; }
table.metrics tr:nth-child(even) td { background: #fbfcfd; }
table.nested { border-collapse: collapse; font-size: .85rem; }
table.metrics table.nested th, table.metrics table.nested td { border: none; border-bottom: 1px solid #eaeef2;
                                                              padding: .1rem .5rem .1rem 0; background: none; }
table.metrics table.nested th { color: #57606a; font-weight: 500; }
table.grid { border-collapse: collapse; }
table.grid th { text-align: right; padding-right: .8rem; font-weight: 600; color: #57606a;
                white-space: nowrap; vertical-align: middle; }
table.grid td { padding: 0; }
table.grid img { display: block; }
"""


def _format_cell(value: Any, depth: int = 0) -> str:
    """One table cell's HTML: numbers via `format_number`, dicts as a nested key/value table (so a
    settings dict reads as settings, not as Python's repr), lists and tuples comma-separated."""
    if isinstance(value, Mapping):
        if not value:
            return "&mdash;"
        if depth >= 3:
            return html.escape(", ".join(f"{key}: {item}" for key, item in value.items()))
        rows = "".join(f"<tr><th>{html.escape(str(key))}</th><td>{_format_cell(item, depth + 1)}</td></tr>"
                       for key, item in value.items())
        return f'<table class="nested">{rows}</table>'
    if isinstance(value, (list, tuple)):
        return html.escape(", ".join(format_number(item) for item in value))
    return html.escape(format_number(value))


def _cell(value: Any) -> str:
    css = ' class="number"' if _is_number(value) else ""
    return f"<td{css}>{_format_cell(value)}</td>"


def _breakable(name: str) -> str:
    """A column name that may wrap after its underscores, so long names do not widen the table
    (never before a last part of one or two letters: ``latency_s`` stays whole)."""
    parts = name.split("_")
    while len(parts) > 1 and len(parts[-1]) <= 2:
        parts[-2:] = [f"{parts[-2]}_{parts[-1]}"]
    return "_<wbr>".join(html.escape(part) for part in parts)


def _header(column: Any) -> str:
    unit, meaning = metric_unit(column)
    title = f' title="{html.escape(meaning)}"' if meaning else ""
    unit_html = f' <span class="unit">({html.escape(unit)})</span>' if unit else ""
    return f"<th{title}>{_breakable(str(column))}{unit_html}</th>"


def _key_value_table(metrics: Mapping[str, Any]) -> str:
    """metric | value | unit | meaning, one row per key (the unit and meaning columns only when
    some key has one, so a settings table stays two columns)."""
    if not metrics:
        raise ValueError("add_metrics_table needs at least one metric or row")
    units = {name: metric_unit(name) for name in metrics}
    with_unit = any(unit for unit, _ in units.values())
    with_meaning = any(meaning for _, meaning in units.values())
    body = []
    for name, value in metrics.items():
        unit, meaning = units[name]
        title = f' title="{html.escape(meaning)}"' if meaning else ""
        cells = f"<th{title}>{html.escape(str(name))}</th>{_cell(value)}"
        cells += f"<td>{html.escape(unit)}</td>" if with_unit else ""
        cells += f'<td class="meaning">{html.escape(meaning)}</td>' if with_meaning else ""
        body.append(f"<tr>{cells}</tr>")
    head = "<th>metric</th><th>value</th>" + ("<th>unit</th>" if with_unit else "") + ("<th>meaning</th>" if with_meaning else "")
    return f'<table class="metrics"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _row_table(rows: list[Mapping[str, Any]]) -> str:
    """One row per dict, one column per key (union in first-seen order), units in the header."""
    if not rows:
        raise ValueError("add_metrics_table needs at least one metric or row")
    columns = list(dict.fromkeys(key for row in rows for key in row))
    head = "".join(_header(column) for column in columns)
    body = "".join(f"<tr>{''.join(_cell(row.get(column, '')) for column in columns)}</tr>" for row in rows)
    return f'<table class="metrics"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


class Report:
    """An HTML report built block by block and written with `save`.

    Example::

        report = Report("digits: VQ tokenizer")
        report.add_metrics_table({"psnr": 24.1, "ssim": 0.91})
        report.add_image_grid(samples, nrow=10, caption="samples, one class per row")
        report.save("runs/report.html")
    """

    def __init__(self, title: str) -> None:
        self.title = title
        self.blocks: list[str] = []

    def add_heading(self, text: str, level: int = 2) -> None:
        """A section heading (``level`` 2 or 3; level 1 is the report title)."""
        if level not in (2, 3):
            raise ValueError(f"heading level must be 2 or 3, got {level}")
        self.blocks.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def add_text(self, text: str) -> None:
        """Plain text (HTML-escaped); blank lines separate paragraphs."""
        for paragraph in text.strip().split("\n\n"):
            self.blocks.append(f"<p>{html.escape(paragraph.strip())}</p>")

    def add_metrics_table(
        self,
        metrics: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        caption: str | None = None,
    ) -> None:
        """A table of numbers, formatted with `format_number` and right-aligned, with units.

        Args:
            metrics: a ``{name: value}`` dict (rendered as metric, value, unit and meaning
                columns), or a list of row dicts (columns are the union of their keys in
                first-seen order; missing cells stay empty; a column's unit follows its name and
                its meaning is the header's tooltip), e.g. one row per model. Values that are
                dicts are shown as small nested tables, lists as comma-separated values.
            caption: optional text under the table.

        Wide tables scroll sideways inside their own box instead of running off the page.
        """
        if isinstance(metrics, Mapping):
            table = _key_value_table(metrics)
        else:
            table = _row_table(list(metrics))
        self.blocks.append(self._figure(f'<div class="table-scroll">{table}</div>', caption))

    def add_image_grid(
        self,
        images: torch.Tensor,
        nrow: int = 8,
        caption: str | None = None,
        row_labels: Sequence[str] | None = None,
        scale: int | None = None,
        padding: int = 2,
    ) -> None:
        """An embedded PNG grid of ``images`` (``B x C x H x W`` in [-1, 1]).

        Args:
            nrow: images per row.
            caption: optional text under the grid.
            row_labels: one label per grid row (``ceil(B / nrow)`` of them), shown to its left.
            scale: nearest-neighbour upscaling factor; default `default_scale` (cells of at least
                64 px, so 16 x 16 digits are readable).
            padding: pixels between cells, before scaling.
        """
        if images.dim() != 4 or images.shape[0] == 0:
            raise ValueError(f"expected a non-empty B x C x H x W batch, got {tuple(images.shape)}")
        scale = default_scale(images.shape[2], images.shape[3]) if scale is None else scale
        if row_labels is None:
            content = self._img(image_grid(images, nrow, padding, scale=scale), "image grid")
        else:
            num_rows = math.ceil(images.shape[0] / nrow)
            if len(row_labels) != num_rows:
                raise ValueError(f"{images.shape[0]} images in rows of {nrow} make {num_rows} rows, got {len(row_labels)} row labels")
            rows = []
            for r, label in enumerate(row_labels):
                # Each row is its own image so the label lines up with it whatever the zoom.
                row = images[r * nrow : (r + 1) * nrow]
                top_padding = padding if r == 0 else 0
                grid = image_grid(row, nrow, padding, scale=scale)[top_padding * scale :]
                rows.append(f"<tr><th>{html.escape(str(label))}</th><td>{self._img(grid, str(label))}</td></tr>")
            content = f'<table class="grid">{"".join(rows)}</table>'
        self.blocks.append(self._figure(content, caption))

    def add_plot(
        self,
        plot: Any,
        caption: str | None = None,
        *,
        xlabel: str | None = None,
        ylabel: str | None = None,
        logx: bool = False,
        logy: bool = False,
    ) -> None:
        """An embedded PNG plot.

        Args:
            plot: a matplotlib ``Figure`` (rendered as is; the axis options are ignored), or
                ``(x, {name: y_values})`` to draw one line per series.
            caption: optional text under the plot.
            xlabel, ylabel, logx, logy: axes of a plot drawn from series.
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        if isinstance(plot, Figure):
            figure = plot
        else:
            try:
                x, series = plot
                series = dict(series)
            except (TypeError, ValueError):
                raise ValueError("plot must be a matplotlib Figure or (x, {name: y_values})") from None
            # A bare Figure (not pyplot) never touches pyplot's global figure list or backend.
            figure = Figure(figsize=(6.4, 3.8), dpi=100, layout="constrained")
            FigureCanvasAgg(figure)  # render with Agg whatever pyplot's backend is
            axes = figure.add_subplot()
            for name, values in series.items():
                axes.plot(np.asarray(x), np.asarray(values), label=str(name), marker="o" if len(values) <= 20 else None)
            axes.set_xlabel(xlabel or "")
            axes.set_ylabel(ylabel or "")
            if logx:
                axes.set_xscale("log")
            if logy:
                axes.set_yscale("log")
            axes.grid(True, alpha=0.3)
            if len(series) > 1:
                axes.legend()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=figure.dpi)
        encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
        image = f'<img src="data:image/png;base64,{encoded}" alt="{html.escape(caption or "plot")}">'
        self.blocks.append(self._figure(image, caption))

    @staticmethod
    def _img(grid: np.ndarray, alt: str) -> str:
        encoded = base64.b64encode(_png_bytes(_to_pil(grid))).decode("ascii")
        return f'<img class="pixels" src="data:image/png;base64,{encoded}" alt="{html.escape(alt)}">'

    @staticmethod
    def _figure(content: str, caption: str | None) -> str:
        caption_html = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        return f"<figure>{content}{caption_html}</figure>"

    def to_html(self) -> str:
        """The whole report as one HTML document."""
        title = html.escape(self.title)
        body = "\n".join(self.blocks)
        return (
            f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n"
            f"<body>\n<h1>{title}</h1>\n{body}\n</body>\n</html>\n"
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the report to ``path`` (atomically: temporary file, then rename). Returns the path."""
        return atomic_write_bytes(path, self.to_html().encode("utf-8"))
