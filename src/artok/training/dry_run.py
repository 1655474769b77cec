"""``--dry-run``: what a published training shape costs per GPU before a GPU is rented.

For a named preset (`TRAIN_PRESETS`: LlamaGen's VQ-16 tokenizer and GPT-B/L/XL, VAR-d16..d30,
MAR-B/L, TiTok-L-32) the model is built on the meta device (no memory, no compute) and we report:

- parameters;
- bytes per GPU of weights (fp32 master), gradients (fp32), AdamW state (2 x fp32) and EMA
  (fp32, when the recipe keeps one): replicated under DDP, divided by the world size under FSDP2
  plus the largest block gathered whole (bf16) for its forward/backward;
- activation bytes per GPU: the tensors autograd saves for backward, counted by
  ``torch.autograd.graph.saved_tensors_hooks`` during a forward of the loss on meta tensors at
  two batch sizes (so saved weights cancel out), per sample, times the per-GPU batch; halved for
  bf16 autocast (the saved tensors of matmuls/attention are bf16 there; norms keep some fp32, so
  this is an estimate), and, with activation checkpointing, only each block's input plus one
  block's activations (recomputed in the backward).

Then (unless ``steps=0``) 2 optimisation steps run on synthetic data on the available device at
a batch of 1, to show the shape trains there. Estimates leave out the CUDA context, allocator
fragmentation and communication buffers (plan ~10-20% headroom).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import torch

from artok.tokens import Tokens


@dataclass(frozen=True)
class TrainPreset:
    name: str
    role: str  # "generator" or "tokenizer"
    description: str
    global_batch: int  # the published recipe's global batch
    ema: bool


TRAIN_PRESETS = {preset.name: preset for preset in (
    TrainPreset("llamagen-vq16", "tokenizer", "LlamaGen VQ-16 tokenizer (72M, 256 px, codebook 16384 x 8)", 128, False),
    TrainPreset("titok-l-32", "tokenizer", "TiTok-L-32 (ViT-L encoder/decoder, 32 tokens, VQ 4096 x 12, 256 px)", 256, False),
    TrainPreset("gpt-b", "generator", "LlamaGen GPT-B (111M)", 256, False),
    TrainPreset("gpt-l", "generator", "LlamaGen GPT-L (343M)", 256, False),
    TrainPreset("gpt-xl", "generator", "LlamaGen GPT-XL (775M)", 256, False),
    TrainPreset("var-d16", "generator", "VAR-d16 (310M)", 768, False),
    TrainPreset("var-d20", "generator", "VAR-d20 (600M)", 768, False),
    TrainPreset("var-d24", "generator", "VAR-d24 (1.0B)", 1024, False),
    TrainPreset("var-d30", "generator", "VAR-d30 (2.0B)", 1024, False),
    TrainPreset("mar-b", "generator", "MAR-B (208M)", 2048, True),
    TrainPreset("mar-l", "generator", "MAR-L (479M)", 2048, True),
)}


def get_train_preset(name: str) -> TrainPreset:
    if name not in TRAIN_PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(TRAIN_PRESETS)}")
    return TRAIN_PRESETS[name]


def build(preset: TrainPreset, device: str | torch.device = "meta") -> torch.nn.Module:
    """The preset's model with random weights on ``device`` (``meta``: shapes only)."""
    with torch.device(device):
        if preset.role == "generator":
            from artok.presets import _build, get_preset

            model = _build(get_preset(preset.name))
        elif preset.name == "llamagen-vq16":
            from artok.tokenizers.autoencoder import AutoencoderTokenizer, llamagen_vq16_config

            model = AutoencoderTokenizer(llamagen_vq16_config())
        else:
            from artok.tokenizers import ViT1DTokenizer, ViT1DTokenizerConfig

            model = ViT1DTokenizer(ViT1DTokenizerConfig(
                in_channels=3, image_size=256, patch_size=16, dim=1024, encoder_depth=24, decoder_depth=24,
                num_heads=16, hidden_dim=None, num_latent_tokens=32, latent_dim=12, quantizer="vq",
                quantizer_options={"codebook_size": 4096, "codebook_dim": 12}))
    return model.train()


def synthetic_loss(model: torch.nn.Module, batch: int, device) -> torch.Tensor:
    """The training loss of ``model`` on random data of the right shape."""
    if hasattr(model, "loss"):
        spec = model.spec
        labels = torch.zeros(batch, dtype=torch.long, device=device)
        if spec.kind == "discrete":
            tokens = Tokens(spec, ids=torch.zeros(batch, spec.seq_len, dtype=torch.long, device=device))
        else:
            tokens = Tokens(spec, values=torch.randn(batch, spec.seq_len, spec.channels, device=device))
        return model.loss(tokens, labels)["loss"]
    from artok.training.tokenizer_trainer import tokenizer_loss

    config = model.config
    size = getattr(config, "image_size", 256)
    images = torch.rand(batch, getattr(config, "in_channels", 3), size, size, device=device) * 2 - 1
    return tokenizer_loss(model, images)["loss"]


def saved_bytes(model: torch.nn.Module, batch: int, device: str = "meta") -> int:
    """Bytes autograd saves for the backward of one loss at ``batch`` (on meta: no compute)."""
    total, seen = 0, set()

    def pack(tensor):
        nonlocal total
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
        return tensor

    from contextlib import nullcontext
    from unittest import mock

    # autocast has no meta device type; the regions models keep in fp32 change nothing on meta
    no_autocast = mock.patch("torch.autocast", lambda *args, **kwargs: nullcontext()) if device == "meta" else nullcontext()
    with no_autocast, torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        synthetic_loss(model, batch, device)
    return total


@functools.lru_cache(maxsize=None)
def activation_bytes_per_sample(preset: TrainPreset) -> tuple[float, str]:
    """Saved-for-backward bytes per sample (fp32), on meta when the loss runs there, else measured
    by a real forward on CPU (models whose loss reads a value, e.g. MAR's mask count)."""
    try:
        model = build(preset, "meta")
        return (saved_bytes(model, 2) - saved_bytes(model, 1)) / 1, "meta"
    except (RuntimeError, NotImplementedError):
        torch.manual_seed(0)
        model = build(preset, "cpu")
        return (saved_bytes(model, 2, "cpu") - saved_bytes(model, 1, "cpu")) / 1, "cpu forward"


def _blocks(model):
    from artok.distributed.parallel import blocks

    return [block for _, _, block in blocks(model)]


def estimate(preset: TrainPreset, world_size: int = 8, per_gpu_batch: int | None = None, *,
             parallel: str = "ddp", activation_checkpointing: bool = False) -> dict:
    """Memory per GPU of ``preset`` trained on ``world_size`` GPUs (see the module docstring)."""
    model = build(preset, "meta")
    params = sum(p.numel() for p in model.parameters())
    batch = per_gpu_batch or max(1, preset.global_batch // world_size)
    state_bytes = params * (4 + 4 + 8 + (4 if preset.ema else 0))
    blocks = _blocks(model)
    largest = max((sum(p.numel() for p in b.parameters()) for b in blocks), default=params)
    if parallel == "fsdp":
        state_bytes = state_bytes / world_size + largest * (2 + 4) * 2  # gathered bf16 block + its grads, prefetch x2
    per_sample, note = activation_bytes_per_sample(preset)
    activations = per_sample * batch / 2  # bf16 autocast
    if activation_checkpointing and blocks:
        activations = activations / len(blocks) + len(blocks) * _block_input_bytes(model, batch)
    gib = 2**30
    return {"preset": preset.name, "description": preset.description, "parameters": params,
            "world_size": world_size, "parallel": parallel, "per_gpu_batch": batch,
            "global_batch": batch * world_size, "activation_checkpointing": activation_checkpointing,
            "weights_grads_optimizer_ema_gib": state_bytes / gib,
            "activations_gib": activations / gib, "total_gib": (state_bytes + activations) / gib,
            "activations_measured_by": note}


def _block_input_bytes(model, batch: int) -> int:
    spec = getattr(model, "spec", None)
    width = getattr(model.config, "dim", None) or 1024
    length = spec.seq_len if spec is not None else 256
    return batch * length * width * 2


def trial_steps(preset: TrainPreset, device: str = "cpu", steps: int = 2) -> dict:
    """``steps`` AdamW steps at batch 1 on synthetic data on ``device``: seconds per step and loss."""
    model = build(preset, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    losses, seconds = [], []
    for _ in range(steps):
        started = time.perf_counter()
        autocast = torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16,
                                  enabled=torch.device(device).type == "cuda")
        with autocast:
            loss = synthetic_loss(model, 1, device)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
        seconds.append(time.perf_counter() - started)
    return {"device": str(device), "steps": steps, "losses": losses, "seconds_per_step": seconds}
