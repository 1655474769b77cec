"""The contract between tokenizers and generators: `TokenSpec` and `Tokens`.

Every tokenizer emits `Tokens` described by a `TokenSpec`; every generator declares the specs it
supports. Tokens are always stored as a flat sequence in the tokenizer's canonical order (raster
order for a 2D grid, scale-by-scale then raster for a list of scales); the spec says how that
sequence maps back onto the layout.

Shapes (B = batch, L = `spec.seq_len`):
- discrete:              ids    B x L            int64, values in [0, vocab_size)
- discrete, dimension-wise: ids B x L x S        int64, S = spec.subtokens, each in [0, vocab_size)
- discrete, multi-level (RVQ depth): ids B x L x S as well, S = number of levels
- continuous:            values B x L x D        float, D = spec.channels
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import torch

Kind = Literal["discrete", "continuous"]
Layout = Literal["grid", "sequence", "scales"]


@dataclass(frozen=True)
class TokenSpec:
    """Describes a token sequence.

    Args:
        kind: ``"discrete"`` (integer ids) or ``"continuous"`` (real vectors).
        layout: ``"grid"`` (``grid = (h, w)``), ``"sequence"`` (1D, ``length``) or ``"scales"``
            (``scales = ((h1, w1), (h2, w2), ...)``, coarse to fine, as VAR uses).
        grid: ``(h, w)`` for the grid layout.
        length: sequence length for the 1D layout.
        scales: the list of per-scale grids for the multi-scale layout.
        vocab_size: number of ids per (sub-)token for discrete tokens.
        channels: vector size of a continuous token, or the latent channel count that a discrete
            token stands for (informational for discrete specs).
        subtokens: ids per position (1 for plain VQ; channel count for dimension-wise tokens,
            depth for residual quantizers).
        bits_per_token: information per position, for reporting (defaults to
            ``subtokens * log2(vocab_size)`` for discrete tokens).
    """

    kind: Kind
    layout: Layout
    grid: tuple[int, int] | None = None
    length: int | None = None
    scales: tuple[tuple[int, int], ...] | None = None
    vocab_size: int | None = None
    channels: int | None = None
    subtokens: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ("discrete", "continuous"):
            raise ValueError(f"TokenSpec.kind must be 'discrete' or 'continuous', got {self.kind!r}")
        if self.layout == "grid":
            if self.grid is None or len(self.grid) != 2 or min(self.grid) < 1:
                raise ValueError(f"grid layout needs grid=(h, w) with positive sizes, got {self.grid!r}")
            object.__setattr__(self, "grid", tuple(int(v) for v in self.grid))
        elif self.layout == "sequence":
            if self.length is None or self.length < 1:
                raise ValueError(f"sequence layout needs a positive length, got {self.length!r}")
        elif self.layout == "scales":
            if not self.scales:
                raise ValueError("scales layout needs a non-empty list of (h, w) scales")
            object.__setattr__(self, "scales", tuple(tuple(int(v) for v in s) for s in self.scales))
        else:
            raise ValueError(f"TokenSpec.layout must be 'grid', 'sequence' or 'scales', got {self.layout!r}")
        if self.kind == "discrete" and (self.vocab_size is None or self.vocab_size < 2):
            raise ValueError(f"discrete tokens need vocab_size >= 2, got {self.vocab_size!r}")
        if self.kind == "continuous" and (self.channels is None or self.channels < 1):
            raise ValueError(f"continuous tokens need channels >= 1, got {self.channels!r}")
        if self.subtokens < 1:
            raise ValueError(f"subtokens must be >= 1, got {self.subtokens}")

    @property
    def seq_len(self) -> int:
        """Number of positions in the flat sequence."""
        if self.layout == "grid":
            return self.grid[0] * self.grid[1]
        if self.layout == "sequence":
            return self.length
        return sum(h * w for h, w in self.scales)

    @property
    def is_discrete(self) -> bool:
        return self.kind == "discrete"

    @property
    def bits_per_image(self) -> float:
        """Bits needed to store one image's tokens (discrete); 32 bits per float otherwise."""
        import math

        if self.kind == "discrete":
            return self.seq_len * self.subtokens * math.log2(self.vocab_size)
        return self.seq_len * self.channels * 32.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def coerce(cls, spec: "TokenSpec | dict") -> "TokenSpec":
        """A `TokenSpec` from itself or its dict form (as configs hold it, lists included)."""
        return spec if isinstance(spec, TokenSpec) else cls.from_dict(spec)

    @classmethod
    def from_dict(cls, data: dict) -> "TokenSpec":
        data = dict(data)
        for key in ("grid",):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        if data.get("scales") is not None:
            data["scales"] = tuple(tuple(s) for s in data["scales"])
        return cls(**data)


@dataclass
class Tokens:
    """A batch of tokens and the spec that describes them.

    Exactly one of ``ids`` (discrete) or ``values`` (continuous) is set; see the module docstring
    for shapes.
    """

    spec: TokenSpec
    ids: torch.Tensor | None = None
    values: torch.Tensor | None = None
    extras: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.spec.kind == "discrete":
            if self.ids is None or self.values is not None:
                raise ValueError("discrete Tokens need ids and no values")
            expected = 2 if self.spec.subtokens == 1 else 3
            if self.ids.dim() != expected or self.ids.shape[1] != self.spec.seq_len:
                raise ValueError(
                    f"ids of shape {tuple(self.ids.shape)} do not match the spec "
                    f"(expected B x {self.spec.seq_len}" + (f" x {self.spec.subtokens})" if expected == 3 else ")")
                )
        else:
            if self.values is None or self.ids is not None:
                raise ValueError("continuous Tokens need values and no ids")
            if self.values.dim() != 3 or tuple(self.values.shape[1:]) != (self.spec.seq_len, self.spec.channels):
                raise ValueError(
                    f"values of shape {tuple(self.values.shape)} do not match the spec "
                    f"(expected B x {self.spec.seq_len} x {self.spec.channels})"
                )

    @property
    def data(self) -> torch.Tensor:
        """The underlying tensor (ids or values)."""
        return self.ids if self.ids is not None else self.values

    @property
    def batch_size(self) -> int:
        return self.data.shape[0]

    def to(self, device: torch.device | str) -> "Tokens":
        return Tokens(
            self.spec,
            None if self.ids is None else self.ids.to(device),
            None if self.values is None else self.values.to(device),
            dict(self.extras),
        )

    def __getitem__(self, index) -> "Tokens":
        return Tokens(
            self.spec,
            None if self.ids is None else self.ids[index],
            None if self.values is None else self.values[index],
            dict(self.extras),
        )
