"""EMA weights kept beside sharded (FSDP2) parameters.

`AveragedModel` deep-copies the model, which cannot be done to a model whose parameters are
sharded DTensors. `ShardedEMA` keeps one detached copy per parameter and buffer (a DTensor stays a
DTensor with the same placements: each rank averages its own shard), follows `AveragedModel`'s
rule exactly (the first update copies, later ones apply `ema_multi_avg_fn`: float tensors lerp,
integer buffers are copied) and has the same state-dict names (``module.<name>``, ``n_averaged``),
so a checkpoint written with one resumes with the other.
"""

from __future__ import annotations

import torch
from torch import nn

from artok.training.config import ema_multi_avg_fn


def _local(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


class ShardedEMA:
    def __init__(self, model: nn.Module, decay: float) -> None:
        named = list(model.named_parameters()) + list(model.named_buffers())
        self.names = [name for name, _ in named]
        self.tensors = [tensor.detach().clone() for _, tensor in named]
        self.n_averaged = torch.tensor(0, dtype=torch.long)
        self._update = ema_multi_avg_fn(decay)

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        current = [_local(t.detach()) for t in list(model.parameters()) + list(model.buffers())]
        # Each rank averages its own shard: the foreach ops run on the local tensors of DTensors.
        groups: dict[tuple, tuple[list, list]] = {}
        for averaged, now in zip(map(_local, self.tensors), current):
            key = (averaged.dtype, averaged.is_floating_point())
            pair = groups.setdefault(key, ([], []))
            pair[0].append(averaged)
            pair[1].append(now)
        for averaged, now in groups.values():
            if int(self.n_averaged) == 0:
                torch._foreach_copy_(averaged, now)
            else:
                self._update(averaged, now, self.n_averaged)
        self.n_averaged += 1

    def parameters(self):
        return iter(self.tensors)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"n_averaged": self.n_averaged, **{f"module.{n}": t for n, t in zip(self.names, self.tensors)}}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, tensor in zip(self.names, self.tensors):
                tensor.copy_(state[f"module.{name}"])
        self.n_averaged = torch.as_tensor(state["n_averaged"]).clone().long()

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights gathered whole on CPU, under the model's own names (a collective)."""
        return {name: (t.full_tensor() if hasattr(t, "full_tensor") else t).detach().cpu()
                for name, t in zip(self.names, self.tensors)}
