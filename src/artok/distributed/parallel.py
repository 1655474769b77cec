"""``parallelize(model, config, env)``: activation checkpointing, ``torch.compile`` and DDP or
FSDP2 applied from outside to an unchanged single-device model, in torchtitan's order.

1. activation checkpointing per block (optional): each block is replaced in its ``ModuleList`` by
   torch's ``checkpoint_wrapper`` (state-dict names unchanged);
2. ``torch.compile`` per block (optional, ``block.compile()``: names unchanged);
3. DDP, or FSDP2: ``fully_shard`` on every block, then on the root; on CUDA with bf16 parameters
   and fp32 gradient reduction (``MixedPrecisionPolicy``).

Models are trained through methods other than ``forward`` (``generator.loss(tokens, labels)``),
while DDP's and FSDP2's hooks run on ``forward``. So the model is wrapped in `Objective`, a module
whose ``forward(method, *args)`` calls ``model.<method>(*args)``, and parallelism is applied to that
wrapper. The trainer receives a `Routed` view: ``view.loss(...)`` or ``view(images)`` run through the
wrapper (and so through DDP/FSDP), any other attribute (``view.quantizer``, ``view.config``) is the
model's own. The model object stays the one the caller built: its parameters are sharded in place
under FSDP2 and shared with the DDP wrapper, never copied.

Blocks are the elements of the model's ``nn.ModuleList``s whose class name ends in ``Block``
(transformer blocks of every generator, ViT tokenizer blocks, residual CNN blocks).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from artok.distributed.env import SINGLE, DistributedEnv

PARALLEL_MODES = ("none", "ddp", "fsdp")


@dataclass(frozen=True)
class ParallelConfig:
    """How a model is spread over the processes of a torchrun job.

    Args:
        mode: ``"none"`` (one process; also what a one-process torchrun gets with ``ddp``),
            ``"ddp"`` (replicated weights, all-reduced gradients) or ``"fsdp"`` (FSDP2: parameters,
            gradients and optimizer state sharded per block).
        compile: ``torch.compile`` each block.
        activation_checkpointing: recompute each block's activations in the backward pass.
        mixed_precision: FSDP2 on CUDA: ``"bf16"`` parameters with fp32 reduction (``"auto"``:
            on CUDA only), ``"off"``: fp32 throughout.
    """

    mode: str = "none"
    compile: bool = False
    activation_checkpointing: bool = False
    mixed_precision: str = "auto"

    def __post_init__(self) -> None:
        if self.mode not in PARALLEL_MODES:
            raise ValueError(f"parallel mode must be one of {', '.join(PARALLEL_MODES)}, got {self.mode!r}")
        if self.mixed_precision not in ("auto", "bf16", "off"):
            raise ValueError(f"mixed_precision must be auto, bf16 or off, got {self.mixed_precision!r}")

    @property
    def sharded(self) -> bool:
        return self.mode == "fsdp"


class Objective(nn.Module):
    """``forward(method, *args, **kwargs)`` = ``model.<method>(*args, **kwargs)`` (``"__call__"``:
    the model's own forward), so that DDP/FSDP hooks see every training computation."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, method: str, *args, **kwargs):
        if method == "__call__":
            return self.model(*args, **kwargs)
        return getattr(self.model, method)(*args, **kwargs)


class Routed:
    """The model as the training code sees it: calls of ``routed`` methods go through the
    (DDP/FSDP-wrapped) `Objective`, every other attribute is the model's."""

    def __init__(self, wrapped: nn.Module, model: nn.Module, routed: tuple[str, ...]) -> None:
        self.__dict__.update(_wrapped=wrapped, _model=model, _routed=routed)

    def __call__(self, *args, **kwargs):
        return self._wrapped("__call__", *args, **kwargs)

    def __getattr__(self, name: str):
        if name in self._routed:
            return lambda *args, **kwargs: self._wrapped(name, *args, **kwargs)
        return getattr(self._model, name)


def blocks(model: nn.Module) -> list[tuple[nn.ModuleList, int, nn.Module]]:
    """``(module list, index, block)`` for every block of ``model`` (outermost first, no nesting)."""
    found, inside = [], set()
    for module in model.modules():
        if not isinstance(module, nn.ModuleList) or id(module) in inside:
            continue
        for index, child in enumerate(module):
            if type(child).__name__.endswith("Block") and any(True for _ in child.parameters()):
                found.append((module, index, child))
                inside.update(id(m) for m in child.modules())
    return found


def _mixed_precision(config: ParallelConfig, env: DistributedEnv):
    from torch.distributed.fsdp import MixedPrecisionPolicy

    on_cuda = torch.device(env.device).type == "cuda"
    if config.mixed_precision == "bf16" or (config.mixed_precision == "auto" and on_cuda):
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    return MixedPrecisionPolicy()


@dataclass
class Parallelized:
    """What `parallelize` returns: the model (sharded in place under FSDP2), the wrapper the
    gradients flow through, and the mode."""

    model: nn.Module
    wrapped: nn.Module
    config: ParallelConfig
    env: DistributedEnv

    def view(self, routed: tuple[str, ...] = ("loss",)) -> Routed:
        return Routed(self.wrapped, self.model, routed)

    @property
    def sharded(self) -> bool:
        return self.config.sharded and self.env.distributed

    @contextlib.contextmanager
    def gradient_sync(self, enabled: bool):
        """No gradient all-reduce / reduce-scatter inside unless ``enabled`` (the last micro-step)."""
        if enabled or not self.env.distributed:
            yield
            return
        if self.config.mode == "ddp":
            with self.wrapped.no_sync():
                yield
            return
        self.wrapped.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            self.wrapped.set_requires_gradient_sync(True)


def parallelize(model: nn.Module, config: ParallelConfig | None = None, env: DistributedEnv = SINGLE) -> Parallelized:
    """Apply ``config`` to ``model`` (already on ``env.device``); see the module docstring."""
    config = config or ParallelConfig()
    if config.activation_checkpointing or config.compile:
        from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

        for module_list, index, block in blocks(model):
            if config.activation_checkpointing:
                block = checkpoint_wrapper(block)
            if config.compile:
                block.compile()
            module_list[index] = block
    wrapped: nn.Module = Objective(model)
    if env.distributed and config.mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [torch.device(env.device).index] if torch.device(env.device).type == "cuda" else None
        # Some kinds leave parameters out of some losses (a frozen discriminator, a head unused by
        # a unit size): find_unused_parameters keeps DDP correct for all of them.
        wrapped = DistributedDataParallel(wrapped, device_ids=device_ids, find_unused_parameters=True)
    elif env.distributed and config.mode == "fsdp":
        from torch.distributed.fsdp import fully_shard

        import warnings

        # FSDP2 warns when a wrapped forward returns views (the Objective returns the loss dict's
        # tensors); artok's training code never writes into them in place.
        warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
        policy = _mixed_precision(config, env)
        for _, _, block in blocks(model):
            fully_shard(block, mp_policy=policy)
        fully_shard(wrapped, mp_policy=policy)
    return Parallelized(model, wrapped, config, env)


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor of ``model`` gathered whole on CPU (a collective under FSDP2: call it on all
    ranks); the plain ``state_dict`` otherwise."""
    state = {}
    for name, tensor in model.state_dict().items():
        if hasattr(tensor, "full_tensor"):
            tensor = tensor.full_tensor()
        state[name] = tensor.detach().cpu()
    return state
