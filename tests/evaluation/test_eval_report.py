import numpy as np
import pytest
import torch
from PIL import Image

from artok.evaluation import Report, format_number, image_grid, save_image_grid
from artok.evaluation.report import metric_unit


def _images(count=20, channels=1, size=16):
    return torch.rand(count, channels, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_image_grid_layout_and_padding():
    images = torch.stack([torch.full((3, 4, 4), -1.0), torch.full((3, 4, 4), 1.0), torch.zeros(3, 4, 4)])
    grid = image_grid(images, nrow=2, padding=1)
    assert grid.dtype == np.uint8 and grid.shape == (2 * 5 + 1, 2 * 5 + 1, 3)
    assert (grid[1:5, 1:5] == 0).all() and (grid[1:5, 6:10] == 255).all()
    assert (grid[6:10, 1:5] == 128).all()  # 0.0 in [-1, 1] -> 127.5 -> 128
    assert (grid[0] == 255).all() and (grid[6:10, 6:10] == 255).all()  # padding and the empty cell
    assert image_grid(images, nrow=2, padding=1, scale=3).shape == (33, 33, 3)
    assert image_grid(_images(5), nrow=8, padding=0).shape == (16, 80, 1)


def test_save_image_grid_writes_a_png(tmp_path):
    path = save_image_grid(tmp_path / "sub" / "grid.png", _images(6, channels=3), nrow=3)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (3 * 18 + 2, 2 * 18 + 2) and image.mode == "RGB"


def test_format_number():
    assert format_number(1234567) == "1,234,567"
    assert format_number(0.97531) == "0.9753"
    assert format_number(21.456) == "21.46"
    assert format_number(12345.678) == "12,345.7"
    assert format_number(1.5e-5) == "1.50e-05"
    assert format_number(float("nan")) == "n/a"
    assert format_number(torch.tensor(0.5)) == "0.5"
    assert format_number("vq-16") == "vq-16"
    assert format_number(True) == "True"
    # Counts stored as floats (images, codes used, parameters) print as integers, without ".0".
    assert format_number(1000.0) == "1,000" and format_number(np.float32(24.0)) == "24"
    assert format_number(-3.0) == "-3" and format_number(2.5e20) == "2.500e+20"
    assert format_number(1234567.89) == "1,234,568"  # no decimals that mean nothing at that size


def test_report_with_grid_table_and_plot(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    report = Report("artok <test> report")
    report.add_heading("Samples")
    report.add_text("Generated digits.\n\nOne row per class & more.")
    report.add_image_grid(_images(20), nrow=10, caption="samples", row_labels=["zero", "one"])
    report.add_image_grid(_images(4, channels=3), nrow=2)
    report.add_metrics_table({"psnr": 24.123456, "ssim": 0.9123, "tokens": 4096})
    report.add_metrics_table([{"model": "vq", "fd": 1.5}, {"model": "fsq", "fd": 1.2, "note": "best"}], caption="FD")
    report.add_plot(([1, 2, 3], {"train": [3.0, 2.0, 1.5], "test": [3.2, 2.4, 2.0]}), "loss", xlabel="step", logy=True)
    figure, axes = pyplot.subplots()
    axes.bar(["a", "b"], [1, 2])
    report.add_plot(figure, "bars")
    pyplot.close(figure)
    path = report.save(tmp_path / "out" / "report.html")

    text = path.read_text()
    assert path.exists() and text.startswith("<!DOCTYPE html>")
    assert '<img class="pixels" src="data:image/png;base64,' in text
    assert text.count('<img src="data:image/png;base64,') == 2  # the two plots
    assert "artok &lt;test&gt; report" in text and "One row per class &amp; more." in text
    assert "24.12" in text and "4,096" in text and "best" in text and ">zero<" in text
    assert "http" not in text.replace('content="width=device-width', "")  # no external assets
    assert not list(path.parent.glob("*.tmp"))


def test_grid_upscales_small_images_for_visibility():
    report = Report("r")
    report.add_image_grid(_images(1, size=16), nrow=1, padding=0)
    import base64
    import io
    import re

    encoded = re.search(r'base64,([^"]+)"', report.blocks[0]).group(1)
    with Image.open(io.BytesIO(base64.b64decode(encoded))) as image:
        assert image.size == (64, 64)


def test_report_errors():
    report = Report("r")
    with pytest.raises(ValueError, match="row labels"):
        report.add_image_grid(_images(20), nrow=10, row_labels=["only one"])
    with pytest.raises(ValueError):
        report.add_plot("not a plot")
    with pytest.raises(ValueError):
        report.add_metrics_table([])


def test_nested_dicts_render_as_tables_not_python_reprs():
    """A run-metadata dict in a summary table reads as key/value rows (it was ``{'seed': 0, ...}``)."""
    report = Report("r")
    report.add_metrics_table({"psnr": 24.0, "run": {"seed": 0, "versions": {"torch": "2.13"}, "grid": (16, 16)}})
    report.add_metrics_table([{"model": "vq", "sampler": {"cfg_scale": 4.0, "top_k": 2000}}])
    text = report.to_html()
    assert "{" not in text.split("<body>")[1] and "&#x27;" not in text
    assert text.count('<table class="nested">') == 3  # run, run.versions, sampler
    assert "<th>seed</th><td>0</td>" in text and "<th>torch</th><td>2.13</td>" in text
    assert "<th>top_k</th><td>2,000</td>" in text and "16, 16" in text


def test_wide_tables_scroll_inside_their_box():
    """A many-column table (the bench table) scrolls sideways in its own container instead of being
    cut off at the page edge; long column names may wrap after underscores."""
    report = Report("r")
    report.add_metrics_table([{f"column_number_{i}": 1000.5 * i for i in range(14)}])
    text = report.to_html()
    assert '<div class="table-scroll"><table class="metrics">' in text
    assert ".table-scroll { overflow-x: auto;" in text
    assert "<th>column_<wbr>number_3</th>" in text


def test_metric_units_and_meanings():
    """Every metric name gets its unit beside it and its meaning as a tooltip: a units and a meaning
    column in two-column tables, "(unit)" in row-table headers."""
    assert metric_unit("tokenizer.psnr")[0] == "dB" and metric_unit("psnr fashion-mnist")[0] == "dB"
    assert metric_unit("generator.class_accuracy")[0] == "fraction" and metric_unit("codebook_usage")[0] == "fraction"
    assert metric_unit("peak_memory_mb")[0] == "MB" and metric_unit("images_per_s")[0] == "images/s"
    assert metric_unit("time.encode_s") == ("s", "") and metric_unit("mystery") == ("", "")
    for key in ("psnr", "ssim", "codebook_usage", "perplexity", "fd", "class_accuracy", "images_per_s", "latency_ms",
                "peak_mb", "roofline_fraction", "seconds"):
        assert all(metric_unit(key)) or metric_unit(key)[1], key  # a meaning for every one of them
    report = Report("r")
    report.add_metrics_table({"tokenizer.psnr": 25.81, "tokenizer.codebook_usage": 0.82, "train_images": 1438})
    report.add_metrics_table([{"tokenizer": "vq", "psnr": 24.1, "decode_images_per_s": 1500.25}])
    text = report.to_html()
    assert "<th>metric</th><th>value</th><th>unit</th><th>meaning</th>" in text
    assert '<th title="peak signal-to-noise ratio' in text and "<td>dB</td>" in text and "<td>fraction</td>" in text
    assert '>1,438</td><td>images</td>' in text
    assert 'psnr <span class="unit">(dB)</span>' in text and 'images_<wbr>per_s <span class="unit">(images/s)</span>' in text
