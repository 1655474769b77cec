"""LPIPS-style perceptual loss (Zhang et al., "The Unreasonable Effectiveness of Deep Features as
a Perceptual Metric", https://arxiv.org/abs/1801.03924) on a VGG16 backbone
(Simonyan & Zisserman, https://arxiv.org/abs/1409.1556).

Both images are shifted and scaled as LPIPS does, run through VGG16's convolutional layers, and
at five taps (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3) the features are unit-normalised over
channels; the squared differences are weighted per channel, averaged over space and summed over
the taps. The channel weights are LPIPS's learned linear layers when their file is given, and all
ones otherwise (the paper's "baseline" variant).

artok never downloads weights: the perceptual loss exists only when the user supplies a path to
VGG16 weights (torchvision's ``vgg16`` state dict, keys ``features.N.weight``, or LPIPS's
``net.sliceK.N.weight`` naming; ``.safetensors`` or a ``torch.save`` file). Without one,
`load_perceptual_loss` returns None and says why (`PERCEPTUAL_OFF_MESSAGE`).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from artok.hub import read_weights

#: Said (as a warning) when a perceptual loss or LPIPS is asked for without weights.
PERCEPTUAL_OFF_MESSAGE = (
    "perceptual loss / LPIPS is off: no backbone weights were given. artok downloads nothing; pass a "
    "path to VGG16 weights (torchvision vgg16 state dict, .pth or .safetensors) to turn it on."
)

# torchvision's VGG16 ``features``: numbers are 3x3 conv widths (each followed by ReLU), "M" max-pools.
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
#: Indices in ``features`` of the ReLUs LPIPS reads (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3).
TAPS = (3, 8, 15, 22, 29)
TAP_CHANNELS = (64, 128, 256, 512, 512)
# LPIPS's input normalisation for images in [-1, 1].
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
#: Images with a shorter side are upsampled (bilinear) to this, so relu5_3 still has >= 2 x 2 cells.
MIN_SIDE = 32


def _vgg16_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for item in _VGG16:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU()]
            channels = item
    return nn.Sequential(*layers)


class PerceptualLoss(nn.Module):
    """LPIPS-style distance; frozen, always in eval mode. Build it with `load_perceptual_loss`.

    ``forward(x, y)``: images ``B x C x H x W`` in [-1, 1] (C = 1 is repeated to 3) -> scalar mean
    distance; `distance` gives the ``B`` per-image values.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = _vgg16_features()
        # One non-negative weight per channel and tap (LPIPS's 1x1 "lin" layers); ones = baseline.
        self.channel_weights = nn.ParameterList(nn.Parameter(torch.ones(c), requires_grad=False) for c in TAP_CHANNELS)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "PerceptualLoss":
        return super().train(False)  # frozen: never in training mode

    def _taps(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = images.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if min(x.shape[-2:]) < MIN_SIDE:
            factor = MIN_SIDE / min(x.shape[-2:])
            size = (round(x.shape[-2] * factor), round(x.shape[-1] * factor))
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        x = (x - self.shift) / self.scale
        outputs = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in TAPS:
                outputs.append(x)
                if index == TAPS[-1]:
                    break
        return outputs

    def distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-image distances ``B`` (fp32) between ``x`` and ``y`` (``B x C x H x W`` in [-1, 1])."""
        if x.shape != y.shape or x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected two B x C x H x W batches (C = 1 or 3) of the same shape, got {tuple(x.shape)}, {tuple(y.shape)}")
        with torch.autocast(device_type=x.device.type, enabled=False):
            total = x.new_zeros(x.shape[0], dtype=torch.float32)
            for fx, fy, weight in zip(self._taps(x), self._taps(y), self.channel_weights):
                diff = (F.normalize(fx, dim=1, eps=1e-10) - F.normalize(fy, dim=1, eps=1e-10)).pow(2)
                total = total + (diff * weight.view(1, -1, 1, 1)).sum(1).mean(dim=(1, 2))
        return total

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.distance(x, y).mean()


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    return read_weights(path, "perceptual weights")


def _backbone_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map torchvision (``...features.N.weight``) or LPIPS (``...sliceK.N.weight``) keys to ``features.N.*``."""
    mapped = {}
    for key, value in state.items():
        match = re.search(r"(?:features|slice\d+)\.(\d+)\.(weight|bias)$", key)
        if match:
            mapped[f"features.{match.group(1)}.{match.group(2)}"] = value
    return mapped


def load_perceptual_loss(
    weights_path: str | Path | None,
    lpips_weights_path: str | Path | None = None,
    device: torch.device | str = "cpu",
    *,
    warn: bool = True,
) -> PerceptualLoss | None:
    """A `PerceptualLoss` with the VGG16 weights at ``weights_path`` (and, optionally, LPIPS's
    linear-layer weights, keys ``lin{k}.model.1.weight``), or None when no path is given (with
    a warning carrying `PERCEPTUAL_OFF_MESSAGE` unless ``warn=False``). Files that do not hold
    every VGG16 convolution raise ValueError."""
    if weights_path is None:
        if warn:
            warnings.warn(PERCEPTUAL_OFF_MESSAGE, UserWarning, stacklevel=2)
        return None
    model = PerceptualLoss()
    backbone = _backbone_state(_read_state(Path(weights_path)))
    expected = {f"features.{k}": v.shape for k, v in model.features.state_dict().items()}
    missing = sorted(set(expected) - set(backbone), key=lambda k: (int(k.split(".")[1]), k))
    if missing:
        raise ValueError(f"{weights_path} is not a VGG16 state dict: missing {missing[:3]}")
    wrong = [k for k in expected if tuple(backbone[k].shape) != tuple(expected[k])]
    if wrong:
        raise ValueError(f"{weights_path}: {wrong[0]} has shape {tuple(backbone[wrong[0]].shape)}, expected {tuple(expected[wrong[0]])}")
    model.features.load_state_dict({k.removeprefix("features."): backbone[k].float() for k in expected})
    if lpips_weights_path is not None:
        lin = _read_state(Path(lpips_weights_path))
        for tap, weight in enumerate(model.channel_weights):
            key = next((k for k in lin if re.search(rf"lin{tap}\.model\.1\.weight$", k)), None)
            if key is None or lin[key].numel() != weight.numel():
                raise ValueError(f"{lpips_weights_path} has no lin{tap}.model.1.weight of {weight.numel()} channels")
            weight.data.copy_(lin[key].reshape(-1).float())
    return model.to(device)
