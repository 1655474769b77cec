"""Memory rooflines: bytes a raster generator reads per step and image, and the floors they imply."""

from __future__ import annotations

import math

import torch


# -- roofline --------------------------------------------------------------------------------------
def raster_traffic(generator, dtype: torch.dtype, guided: bool) -> dict:
    """Bytes a raster decode must move: weights per step, KV reads per image (valid / full)."""
    bytes_per = torch.finfo(dtype).bits // 8
    embedding = {id(p) for name, p in generator.named_parameters() if "embedding" in name}
    weights = sum(p.numel() for p in generator.parameters() if id(p) not in embedding) * bytes_per
    config = generator.config
    rows = 2 if guided else 1
    per_slot = rows * config.depth * 2 * config.dim * bytes_per
    length = config.seq_len
    return {"weight_bytes_per_step": weights, "kv_bytes_per_image_valid": per_slot * length * (length + 1) // 2,
            "kv_bytes_per_image_full": per_slot * length * length, "seq_len": length}


def raster_traffic_from_config(config, dtype: torch.dtype, guided: bool) -> dict:
    """`raster_traffic` from a `RasterConfig` alone (LLaMA block arithmetic, no model built): per
    block fused QKV + output projection (4 d^2), SwiGLU (3 d h), two RMSNorm gains; final norm; head."""
    from artok.nn import swiglu_hidden_dim

    bytes_per = torch.finfo(dtype).bits // 8
    dim, hidden = config.dim, config.hidden_dim or swiglu_hidden_dim(config.dim)
    weights = config.depth * (4 * dim * dim + 3 * dim * hidden + 2 * dim) + dim + dim * config.vocab_size
    rows = 2 if guided else 1
    per_slot = rows * config.depth * 2 * dim * bytes_per
    length = config.seq_len
    return {"weight_bytes_per_step": weights * bytes_per, "kv_bytes_per_image_valid": per_slot * length * (length + 1) // 2,
            "kv_bytes_per_image_full": per_slot * length * length, "seq_len": length}


def roofline_images_per_s(traffic: dict, batch_size: int, bandwidth_gbs: float, valid_length: bool = True) -> float:
    """Images/s at the memory-bandwidth floor for ``batch_size`` images per batch."""
    kv = traffic["kv_bytes_per_image_valid" if valid_length else "kv_bytes_per_image_full"]
    seconds = (traffic["seq_len"] * traffic["weight_bytes_per_step"] + batch_size * kv) / (bandwidth_gbs * 1e9)
    return batch_size / seconds


def floor_images_per_s(roofline: dict, batch_size: int) -> tuple[float, str]:
    """(images/s, bound) at the slower of the memory floor and the compute floor for a batch."""
    bandwidth = roofline["bandwidth_gbs"] * 1e9
    if "kv_bytes_per_image_valid" in roofline:
        memory = batch_size / roofline_images_per_s(roofline, batch_size, roofline["bandwidth_gbs"])
    else:
        memory = roofline.get("weight_bytes_per_batch", 0.0) / bandwidth
    compute = batch_size * roofline.get("flops_per_image", 0.0) / (roofline.get("peak_tflops", math.inf) * 1e12)
    seconds = max(memory, compute)
    if seconds <= 0:
        return float("nan"), ""
    return batch_size / seconds, "compute" if compute > memory else "memory"
