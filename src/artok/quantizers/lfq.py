"""Binary quantizers with an implicit ``2^D`` codebook:

- lookup-free quantization (LFQ, MAGVIT-v2, https://arxiv.org/abs/2310.05737): each of ``D``
  channels becomes ``-s`` or ``+s`` by its sign (``s = codebook_scale``, 1 by default);
- binary spherical quantization (BSQ, https://arxiv.org/abs/2406.07548): features are first
  l2-normalised onto the unit sphere, then each channel becomes ``sign / sqrt(D)``, so every code
  is itself a unit vector.

Both use a straight-through gradient, a commitment loss and the entropy regulariser of MAGVIT-v2,

    entropy_loss = entropy_weight * scale(step) * (per_sample_weight * E_x[H(q(c|x))]
                                                   - codebook_weight * H(E_x[q(c|x)]))

with the soft assignment ``q(c|x) = softmax_c(-inverse_temperature * ||x - c||^2)`` over all
``2^D`` codes (entropies in nats). Minimising it makes each assignment confident (low per-sample
entropy) while the batch as a whole spreads over the codebook (high codebook entropy).

How the entropies are computed (the BSQ paper, section 3.3, does the same):

- ``q(c|x)`` factorises over channels because ``||x - c||^2 = const - 2 x.c`` is a sum over
  channels: ``q(bit_d = 1 | x) = sigmoid(4 * inverse_temperature * s * x_d)`` (a sigmoid of the
  scaled difference of the squared distances to ``-s`` and ``+s``). The **per-sample entropy**
  is therefore the sum of per-channel binary entropies, which is **exact** at any ``D``.
- The batch average ``E_x[q(c|x)]`` is a mixture and does not factorise. The **codebook
  entropy** is **approximated** by splitting the channels into groups of
  ``entropy_group_size``, averaging each group's exact ``2^g``-way distribution over the batch,
  and summing the groups' entropies. ``g = 1`` uses the mean per-channel probabilities; ``g = D``
  is the exact entropy (only for small ``D``). By subadditivity of entropy the approximation is
  an upper bound of the exact value, with equality when the averaged groups are independent
  (e.g. a batch of one sample).

`exact_entropies` computes both terms by brute force over all ``2^D`` codes; the tests use it to
check the factorised path.

Ids pack the bits little-endian: ``bit_d = 1`` when channel ``d`` is positive and
``id = sum_d bit_d * 2^d`` (`bits_to_ids` / `ids_to_bits`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from artok.quantizers.base import (
    Quantizer,
    QuantizerOutput,
    channels_first,
    channels_last,
    id_histogram,
    linear_fp32,
    usage_metrics,
)

_MAX_GROUP_SIZE = 16


@dataclass
class LFQConfig:
    """Configuration of `LookupFreeQuantizer` (and, as `BSQConfig`, of `BinarySphericalQuantizer`).

    Args:
        dim: channel count of the encoder features.
        codebook_dim: number of bits ``D`` (codebook of ``2^D`` codes); when it differs from
            ``dim`` a linear projection maps ``dim -> D`` before and back after quantization
            (None: ``D = dim``, no projection).
        entropy_weight: overall weight of the entropy regulariser (``zeta`` in BSQ).
        per_sample_weight: weight of the per-sample entropy term (``gamma_0`` in BSQ).
        codebook_weight: weight of the codebook entropy term (``gamma`` in BSQ, ``diversity``).
        commitment_weight: weight of ``||x - sg(code)||^2``.
        inverse_temperature: sharpness of the soft assignment used by the entropy terms.
        entropy_group_size: channels per group for the codebook-entropy approximation
            (1: fully factorised; ``codebook_dim``: exact); must divide ``codebook_dim`` and be
            at most 16.
        entropy_anneal_steps: steps over which the entropy weight is annealed linearly from
            ``entropy_anneal_factor * entropy_weight`` to ``entropy_weight`` (0: no annealing);
            the step is set with ``set_step``.
        entropy_anneal_factor: the multiplier at step 0 (e.g. 3 starts with a stronger push).
        codebook_scale: magnitude ``s`` of the LFQ codes (``+-s``); BSQ always uses ``1/sqrt(D)``.
    """

    dim: int
    codebook_dim: int | None = None
    entropy_weight: float = 0.1
    per_sample_weight: float = 1.0
    codebook_weight: float = 1.0
    commitment_weight: float = 0.25
    inverse_temperature: float = 100.0
    entropy_group_size: int = 1
    entropy_anneal_steps: int = 0
    entropy_anneal_factor: float = 1.0
    codebook_scale: float = 1.0

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self.dim < 1:
            raise ValueError(f"{name}.dim must be positive, got {self.dim}")
        bits = self.codebook_dim or self.dim
        if self.codebook_dim is not None and self.codebook_dim < 1:
            raise ValueError(f"{name}.codebook_dim must be positive or None, got {self.codebook_dim}")
        if bits > 62:
            raise ValueError(f"{name}: {bits} bits do not fit int64 ids (at most 62)")
        for field_name in ("entropy_weight", "per_sample_weight", "codebook_weight", "commitment_weight"):
            if getattr(self, field_name) < 0:
                raise ValueError(f"{name}.{field_name} must be >= 0, got {getattr(self, field_name)}")
        if self.inverse_temperature <= 0:
            raise ValueError(f"{name}.inverse_temperature must be positive, got {self.inverse_temperature}")
        if not 1 <= self.entropy_group_size <= _MAX_GROUP_SIZE or bits % self.entropy_group_size:
            raise ValueError(
                f"{name}.entropy_group_size must divide the {bits} bits and be in [1, {_MAX_GROUP_SIZE}], "
                f"got {self.entropy_group_size}"
            )
        if self.entropy_anneal_steps < 0 or self.entropy_anneal_factor < 0:
            raise ValueError(
                f"{name}: entropy_anneal_steps and entropy_anneal_factor must be >= 0, got "
                f"{self.entropy_anneal_steps}, {self.entropy_anneal_factor}"
            )
        if self.codebook_scale <= 0:
            raise ValueError(f"{name}.codebook_scale must be positive, got {self.codebook_scale}")

    @property
    def bits(self) -> int:
        return self.codebook_dim or self.dim


@dataclass
class BSQConfig(LFQConfig):
    """Configuration of `BinarySphericalQuantizer`; the fields of `LFQConfig` with BSQ defaults
    (``inverse_temperature = 1``, as in the BSQ paper; ``codebook_scale`` is ignored)."""

    inverse_temperature: float = 1.0


class LookupFreeQuantizer(Quantizer):
    """LFQ: ``z`` ``B x dim x *spatial`` -> ``quantized`` same shape, ``ids`` ``B x *spatial``."""

    spherical: bool = False

    def __init__(self, config: LFQConfig) -> None:
        super().__init__()
        self.config = config
        bits = config.bits
        self.in_proj = nn.Linear(config.dim, bits) if bits != config.dim else nn.Identity()
        self.out_proj = nn.Linear(bits, config.dim) if bits != config.dim else nn.Identity()
        # Training step for the entropy-weight annealing; saved so a resumed run continues the schedule.
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def bits(self) -> int:
        return self.config.bits

    @property
    def codebook_size(self) -> int:
        return 2**self.config.bits

    @property
    def code_scale(self) -> float:
        """Magnitude of every code channel."""
        return 1.0 / math.sqrt(self.bits) if self.spherical else self.config.codebook_scale

    def set_step(self, step: int) -> None:
        """Set the training step that drives the entropy-weight annealing."""
        self.step.fill_(int(step))

    def entropy_scale(self) -> float:
        """Current annealing multiplier of ``entropy_weight`` (linear, reaching 1 at ``entropy_anneal_steps``)."""
        steps = self.config.entropy_anneal_steps
        if steps == 0:
            return 1.0
        progress = min(float(self.step) / steps, 1.0)
        return self.config.entropy_anneal_factor + (1.0 - self.config.entropy_anneal_factor) * progress

    def _prepare(self, features: torch.Tensor) -> torch.Tensor:
        """Projected fp32 features ``... x D`` -> the vectors that are quantized."""
        return F.normalize(features, dim=-1) if self.spherical else features

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        input_dtype = z.dtype
        with torch.autocast(device_type=z.device.type, enabled=False):
            features = self._prepare(linear_fp32(self.in_proj, channels_last(z).float()))
            scale = self.code_scale
            codes = torch.where(features > 0, scale, -scale)
            ids = bits_to_ids(features > 0)
            quantized = codes + (features - features.detach())

            commitment = F.mse_loss(features, codes)
            flat = features.reshape(-1, self.bits)
            per_sample, codebook = factorized_entropies(
                flat, scale, self.config.inverse_temperature, self.config.entropy_group_size
            )
            entropy_scale = self.entropy_scale()
            entropy_loss = self.config.per_sample_weight * per_sample - self.config.codebook_weight * codebook
            loss = (
                self.config.entropy_weight * entropy_scale * entropy_loss
                + self.config.commitment_weight * commitment
            )
            quantized = linear_fp32(self.out_proj, quantized)
            metrics = usage_metrics(id_histogram(ids, self.codebook_size, self.training)) if self.bits <= 20 else {}
            metrics.update(
                commitment=commitment.detach(),
                per_sample_entropy=per_sample.detach(),
                codebook_entropy=codebook.detach(),
                entropy_scale=torch.tensor(entropy_scale),
            )
        return QuantizerOutput(
            quantized=channels_first(quantized).to(input_dtype), ids=ids, loss=loss, metrics=metrics
        )

    def ids_to_lookup_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids ``...`` -> codes ``... x D`` (``+-code_scale``) before the output projection."""
        scale = self.code_scale
        return ids_to_bits(ids, self.bits).float() * (2 * scale) - scale

    def ids_to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        return channels_first(linear_fp32(self.out_proj, self.ids_to_lookup_codes(ids)))


class BinarySphericalQuantizer(LookupFreeQuantizer):
    """BSQ: LFQ on the unit sphere (features l2-normalised, codes ``sign / sqrt(D)``)."""

    spherical = True


def bits_to_ids(bits: torch.Tensor) -> torch.Tensor:
    """Bits ``... x D`` (bool or 0/1) -> ids ``...`` int64, ``id = sum_d bit_d 2^d``."""
    weights = 2 ** torch.arange(bits.shape[-1], device=bits.device, dtype=torch.int64)
    return (bits.long() * weights).sum(dim=-1)


def ids_to_bits(ids: torch.Tensor, num_bits: int) -> torch.Tensor:
    """Ids ``...`` -> bits ``... x num_bits`` int64 in {0, 1}; inverse of `bits_to_ids`."""
    shifts = torch.arange(num_bits, device=ids.device, dtype=torch.int64)
    return (ids.long().unsqueeze(-1) >> shifts) & 1


def _entropy(probs: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return -(probs * probs.clamp_min(1e-12).log()).sum(dim=dim)


def bit_probabilities(x: torch.Tensor, code_scale: float, inverse_temperature: float) -> torch.Tensor:
    """``q(bit_d = 1 | x)`` for each channel of ``x`` (``N x D``) under the soft assignment
    ``softmax_c(-inverse_temperature * ||x - c||^2)`` with codes ``c in {-s, +s}^D``:
    ``sigmoid(inverse_temperature * (||x_d + s||^2 - ||x_d - s||^2)) = sigmoid(4 t s x_d)``."""
    return torch.sigmoid(4.0 * inverse_temperature * code_scale * x)


def factorized_entropies(
    x: torch.Tensor, code_scale: float, inverse_temperature: float, group_size: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-sample entropy, codebook entropy) in nats for ``x`` ``N x D``.

    The per-sample entropy (mean over the ``N`` samples) is exact: a sum of per-channel binary
    entropies. The codebook entropy is the sum over channel groups of size ``group_size`` of the
    entropy of the batch-averaged ``2^group_size``-way group distribution: exact when
    ``group_size == D``, otherwise an upper bound (see the module docstring).
    """
    num_bits = x.shape[-1]
    if num_bits % group_size or group_size > _MAX_GROUP_SIZE:
        raise ValueError(f"group_size {group_size} must divide {num_bits} and be <= {_MAX_GROUP_SIZE}")
    p_one = bit_probabilities(x, code_scale, inverse_temperature)
    bit_probs = torch.stack([1 - p_one, p_one], dim=-1)  # N x D x 2
    per_sample = _entropy(bit_probs).sum(-1).mean()
    if group_size == 1:
        codebook = _entropy(bit_probs.mean(0)).sum()
        return per_sample, codebook
    # Exact 2^g-way distribution within each group: the product of its channels' bit probabilities.
    groups = x.reshape(x.shape[0], num_bits // group_size, group_size)
    group_codes = ids_to_bits(torch.arange(2**group_size, device=x.device), group_size).to(x.dtype) * 2 - 1
    logits = 2.0 * inverse_temperature * code_scale * torch.einsum("ngd,kd->ngk", groups, group_codes)
    group_probs = logits.softmax(dim=-1)  # N x G x 2^g
    codebook = _entropy(group_probs.mean(0)).sum()
    return per_sample, codebook


def exact_entropies(
    x: torch.Tensor, code_scale: float, inverse_temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Brute-force (per-sample entropy, codebook entropy) over all ``2^D`` codes (small ``D`` only).

    ``q(c|x) = softmax_c(-inverse_temperature * ||x - c||^2)`` with every ``c in {-s, +s}^D``.
    """
    num_bits = x.shape[-1]
    if num_bits > _MAX_GROUP_SIZE:
        raise ValueError(f"exact entropies enumerate 2^D codes; D = {num_bits} is too large")
    codes = (ids_to_bits(torch.arange(2**num_bits, device=x.device), num_bits).to(x.dtype) * 2 - 1) * code_scale
    distance = (x.unsqueeze(1) - codes.unsqueeze(0)).pow(2).sum(-1)  # N x 2^D
    probs = (-inverse_temperature * distance).softmax(dim=-1)
    return _entropy(probs).mean(), _entropy(probs.mean(0))
