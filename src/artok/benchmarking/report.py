"""The bench table, its HTML report and JSON."""

from __future__ import annotations

import json
import math
import platform
from dataclasses import asdict
from pathlib import Path

import torch

from artok.benchmarking.config import BenchResult, BenchRow


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


# -- reporting -------------------------------------------------------------------------------------
HEADER = (f"{'sampler':8s} {'batch':>5s} {'tokens':>6s} {'ms/step':>9s} {'latency s':>10s} {'img/s':>9s} "
          f"{'peak MB':>9s} {'roofline img/s':>15s} {'fraction':>8s} {'bound':>7s}")


def format_row(row: BenchRow) -> str:
    if row.error:
        return f"{row.sampler:8s} {row.batch_size:5d} {row.tokens_timed:6d}  {row.error}"
    return (f"{row.sampler:8s} {row.batch_size:5d} {row.tokens_timed:6d} {row.ms_per_step:9.3f} {row.latency_s:10.4f} "
            f"{row.images_per_s:9.2f} {row.peak_memory_mb:9.2f} {row.roofline_images_per_s:15.1f} "
            f"{row.roofline_fraction:8.4f} {row.bound:>7s}")


def describe(result: BenchResult) -> str:
    """Header lines: the model, the sampler settings and the roofline inputs."""
    model, roofline = result.model, result.roofline
    lines = [f"{model['preset'] or model['checkpoint']} ({model['kind']}, {model['params'] / 1e6:.1f}M params, "
             f"{model['dtype']}) on {result.environment['device']}, torch {result.environment['torch']}, "
             f"{result.environment['threads']} threads",
             f"sampler: {format_settings(model['sampler'])}"]
    if "weight_bytes_per_step" in roofline:
        bandwidth = roofline["bandwidth_gbs"]
        batch1 = (roofline["seq_len"] * roofline["weight_bytes_per_step"] + roofline["kv_bytes_per_image_valid"]) / (bandwidth * 1e9)
        lines.append(
            f"roofline @ {bandwidth:.0f} GB/s ({roofline['bandwidth_source']}): weights {roofline['weight_bytes_per_step'] / 1e6:.0f} MB/step, "
            f"KV {roofline['kv_bytes_per_image_valid'] / 1e9:.3f} GB/image (valid-length; "
            f"{roofline['kv_bytes_per_image_full'] / 1e9:.3f} GB full-cache); batch-1 floor {1e3 * batch1:.1f} ms/image, "
            f"large-batch bound {bandwidth * 1e9 / roofline['kv_bytes_per_image_valid']:.0f} img/s")
    if "flops_per_image" in roofline:
        lines.append(
            f"compute: {roofline['flops_per_image'] / 1e9:.2f} GFLOP/image (matmul + attention, counted) at "
            f"{roofline['peak_tflops']:.1f} TFLOP/s ({roofline['peak_source']}); weights read "
            f"{roofline['weight_bytes_per_batch'] / 1e9:.3f} GB/batch")
    if len(lines) == 2:
        lines.append("roofline: not computed (count_cost off and not a raster generator)")
    if "memory_method" in result.environment:
        lines.append(f"peak MB: the most memory a row needed beyond what was allocated before it; "
                     f"{result.environment['memory_method']}")
    return "\n".join(lines)


def format_settings(settings: dict) -> str:
    """``key: value, key: value`` (a settings dict for people, not Python's repr)."""
    return ", ".join(f"{key}: {value}" for key, value in settings.items())


def write_report(result: BenchResult, path: str | Path) -> Path:
    """An HTML report of a benchmark: the setup, images/s against batch size for every sampler beside
    the roofline, the fraction of the roofline reached, and the table."""
    from artok.evaluation.report import Report

    model = result.model
    report = Report(f"artok bench: {model['preset'] or model['checkpoint']}")
    report.add_text("\n\n".join(describe(result).splitlines()))
    rows = [row for row in result.rows if not row.error]
    samplers = list(dict.fromkeys(row.sampler for row in rows))
    batches = sorted({row.batch_size for row in rows})
    if rows and len(batches) > 1:
        def series(sampler: str, field: str) -> list:
            by_batch = {row.batch_size: getattr(row, field) for row in rows if row.sampler == sampler}
            return [by_batch.get(batch, float("nan")) for batch in batches]

        throughput = {sampler: series(sampler, "images_per_s") for sampler in samplers}
        if not all(math.isnan(row.roofline_images_per_s) for row in rows):
            throughput["roofline"] = series(samplers[0], "roofline_images_per_s")
        report.add_plot((batches, throughput), "images/s against batch size (log-log), with the roofline",
                        xlabel="batch size", ylabel="images / s", logx=True, logy=True)
        report.add_plot((batches, {sampler: series(sampler, "roofline_fraction") for sampler in samplers}),
                        "fraction of the roofline reached", xlabel="batch size", ylabel="fraction", logx=True)
    report.add_metrics_table([{key: value for key, value in asdict(row).items() if value is not None}
                              for row in result.rows], "one row per sampler and batch size")
    report.add_heading("Setup")
    report.add_metrics_table({"model": model, "roofline": result.roofline, "environment": result.environment,
                              "options": result.config})
    return report.save(path)


def write_json(result: BenchResult, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_dict(), indent=2, default=str))
    return path
