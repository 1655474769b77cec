import numpy as np
import pytest
import torch
from PIL import Image

from artok.evaluation import Report, format_number, image_grid, save_image_grid


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
