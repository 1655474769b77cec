"""Loading a converted state dict into the artok model its shapes describe, exactly: the one check
every converter shares."""

from __future__ import annotations

import torch


def load_exact(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str,
               derived: tuple[str, ...] = ("quantizer.usage",), what: str = "model") -> torch.nn.Module:
    """``model`` holding ``state`` (artok names) in fp32, in eval mode: every weight must be there
    with its shape and a floating-point dtype, nothing else may be (``derived`` buffers are artok's
    own and keep their initial values when absent). A misfit is a one-line ValueError naming
    ``source``."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state and key not in derived]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        raise ValueError(f"{source} does not fit the {what} its shapes describe: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise ValueError(f"{source}: {key} has shape {list(value.shape)}, but the configuration read from the "
                             f"other weights needs {list(expected[key].shape)}")
        if not value.is_floating_point():
            raise ValueError(f"{source}: {key} is {value.dtype}, not a floating-point weight")
    model.load_state_dict({key: value.float() for key, value in state.items()}, strict=False)
    return model.eval()
