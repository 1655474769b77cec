"""The FID Inception-v3 network (TensorFlow's 2015-12-05 graph as PyTorch modules) and its features.

Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", arXiv:1512.00567;
used for FID by Heusel et al. (arXiv:1706.08500), for IS by Salimans et al. (arXiv:1606.03498),
for improved precision/recall by Kynkaanniemi et al. (arXiv:1904.06991) and for sFID by Nash et
al. (arXiv:2103.03841) -- all on the *2015-12-05* TensorFlow weights. The PyTorch conversion of
those weights is ``pt_inception-2015-12-05-6726825d.pth`` (pytorch-fid, torch-fidelity; the same
file under two names). artok never downloads it: give ``--inception-weights PATH`` or set
``$ARTOK_INCEPTION``.

Why artok carries its own copy of the network. The candidates, checked here (torch 2.13, CPU):
- torch-fidelity 0.4.0 (``FeatureExtractorInceptionV3`` takes ``feature_extractor_weights_path``,
  resizes like TensorFlow 1.x): its package ``__init__`` imports torchvision, which does not
  install with this torch, and its loader calls ``torch.load(weights_only=False)``.
- torchmetrics 1.9 FID/IS: builds on torch-fidelity's extractor (same import problem).
- pytorch-fid 0.3.0: imports torchvision, and resizes with PyTorch's half-pixel bilinear, not
  the TensorFlow graph's.
- clean-fid 0.1.35: loads a TorchScript file (another download), imports torchvision.
So the network below is written for artok from the published architecture, with the published
state-dict key names (the weights file loads unchanged, ``weights_only=True``); it follows
torch-fidelity's conventions, which reproduce the TensorFlow graph that the ADM evaluator and
the original FID code run. ``tests/evaluation/test_inception_parity.py`` proves the features,
the resize and the metrics equal torch-fidelity's on the same (random) weights file.

Conventions (the same for every artok metric, stated in each result):
1. images in [-1, 1] are rounded to uint8 first (``artok.data.base.to_uint8``: what a PNG of the
   sample holds); one-channel images are repeated to three;
2. resized to 299 x 299 with TensorFlow 1.x bilinear (``align_corners=False``,
   no half-pixel offset), as the TF graph and torch-fidelity do;
3. scaled by ``(x - 128) / 128``;
4. features: ``pool`` (2048, after the global average pool: FID, precision/recall), ``logits``
   (1008, the last layer *without* its bias: IS, as torch-fidelity's ``logits_unbiased`` and the
   ADM evaluator), ``spatial`` (the first 7 channels of ``mixed_6/conv`` -- the 1x1 branch of the
   fourth 17x17 block, ``Mixed_6d.branch1x1`` -- flattened height, width, channel as the ADM
   evaluator does: 17 * 17 * 7 = 2023, for sFID).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from artok.data.base import to_uint8

WEIGHTS_ENV = "ARTOK_INCEPTION"
WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + WEIGHTS_NAME
INPUT_SIZE = 299
SPATIAL_CHANNELS = 7


class ConvBlock(nn.Module):
    """Convolution without bias, BatchNorm (TensorFlow's eps 1e-3), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride: int = 1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _average_pool(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow's average pool divides by the number of *valid* inputs at the border.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class BlockA(nn.Module):
    """35 x 35 block (``Mixed_5b``..``Mixed_5d``): 1x1, 5x5, double 3x3 and pooled branches."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = ConvBlock(in_channels, 64, 1)
        self.branch5x5_1 = ConvBlock(in_channels, 48, 1)
        self.branch5x5_2 = ConvBlock(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBlock(in_channels, 64, 1)
        self.branch3x3dbl_2 = ConvBlock(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBlock(96, 96, 3, padding=1)
        self.branch_pool = ConvBlock(in_channels, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_average_pool(x)),
        ], dim=1)


class BlockB(nn.Module):
    """35 -> 17 reduction (``Mixed_6a``)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = ConvBlock(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBlock(in_channels, 64, 1)
        self.branch3x3dbl_2 = ConvBlock(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBlock(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, kernel_size=3, stride=2),
        ], dim=1)


class BlockC(nn.Module):
    """17 x 17 block with factorised 7x7 convolutions (``Mixed_6b``..``Mixed_6e``)."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c = channels_7x7
        self.branch1x1 = ConvBlock(in_channels, 192, 1)
        self.branch7x7_1 = ConvBlock(in_channels, c, 1)
        self.branch7x7_2 = ConvBlock(c, c, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBlock(c, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = ConvBlock(in_channels, c, 1)
        self.branch7x7dbl_2 = ConvBlock(c, c, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBlock(c, c, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBlock(c, c, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBlock(c, 192, (1, 7), padding=(0, 3))
        self.branch_pool = ConvBlock(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            double = layer(double)
        return torch.cat([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            double,
            self.branch_pool(_average_pool(x)),
        ], dim=1)


class BlockD(nn.Module):
    """17 -> 8 reduction (``Mixed_7a``)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = ConvBlock(in_channels, 192, 1)
        self.branch3x3_2 = ConvBlock(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBlock(in_channels, 192, 1)
        self.branch7x7x3_2 = ConvBlock(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBlock(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBlock(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seven = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), seven, F.max_pool2d(x, kernel_size=3, stride=2)], dim=1)


class BlockE(nn.Module):
    """8 x 8 block with split 1x3 / 3x1 outputs (``Mixed_7b``, ``Mixed_7c``). The TF graph pools
    the last block's pool branch with a *max* pool (``pool="max"``), the one before with an average."""

    def __init__(self, in_channels: int, pool: str) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = ConvBlock(in_channels, 320, 1)
        self.branch3x3_1 = ConvBlock(in_channels, 384, 1)
        self.branch3x3_2a = ConvBlock(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBlock(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBlock(in_channels, 448, 1)
        self.branch3x3dbl_2 = ConvBlock(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBlock(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBlock(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBlock(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.pool == "max" else _average_pool(x)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(single), self.branch3x3_2b(single),
            self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double),
            self.branch_pool(pooled),
        ], dim=1)


class FIDInceptionV3(nn.Module):
    """Inception-v3 as in the 2015-12-05 TF graph; ``forward`` takes `inception_input` images
    (``N x 3 x 299 x 299``, ``(x - 128) / 128``) and returns ``{"pool", "logits", "spatial"}``."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBlock(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBlock(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBlock(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBlock(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBlock(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = BlockA(192, 32), BlockA(256, 64), BlockA(288, 64)
        self.Mixed_6a = BlockB(288)
        self.Mixed_6b, self.Mixed_6c = BlockC(768, 128), BlockC(768, 160)
        self.Mixed_6d, self.Mixed_6e = BlockC(768, 160), BlockC(768, 192)
        self.Mixed_7a = BlockD(768)
        self.Mixed_7b, self.Mixed_7c = BlockE(1280, pool="avg"), BlockE(2048, pool="max")
        self.fc = nn.Linear(2048, 1008)
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), kernel_size=3, stride=2)
        x = self.Mixed_6a(self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x))))
        x = self.Mixed_6c(self.Mixed_6b(x))
        spatial = self.Mixed_6d.branch1x1(x)[:, :SPATIAL_CHANNELS]
        x = self.Mixed_7a(self.Mixed_6e(self.Mixed_6d(x)))
        pool = self.Mixed_7c(self.Mixed_7b(x)).mean(dim=(2, 3))
        return {
            "pool": pool,
            "logits": pool @ self.fc.weight.T,
            "spatial": spatial.permute(0, 2, 3, 1).flatten(1),
        }


def resize_like_tensorflow(images: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """Bilinear resize of float ``N x C x H x W`` to ``size x size`` as TensorFlow 1.x's
    ``resize_bilinear(align_corners=False)``: output pixel ``i`` samples input position
    ``i * H / size`` (no half-pixel offset, unlike ``F.interpolate``), clamped at the last row."""
    for dim in (2, 3):
        length = images.shape[dim]
        if length == size:
            continue
        position = torch.arange(size, dtype=torch.float64) * (length / size)
        lower = position.floor().long().clamp(max=length - 1)
        upper = (lower + 1).clamp(max=length - 1)
        weight = (position - lower).to(images.dtype).to(images.device)
        shape = [1, 1, 1, 1]
        shape[dim] = size
        weight = weight.view(shape)
        low, high = images.index_select(dim, lower.to(images.device)), images.index_select(dim, upper.to(images.device))
        images = low + (high - low) * weight
    return images


def inception_input(images: torch.Tensor) -> torch.Tensor:
    """``N x C x H x W`` images (float in [-1, 1], or uint8; C = 1 or 3) -> the network's input:
    uint8 round trip, grey to RGB, TF bilinear to 299, ``(x - 128) / 128``, float32."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected N x C x H x W images with C = 1 or 3, got shape {tuple(images.shape)}")
    if images.dtype != torch.uint8:
        if not images.is_floating_point():
            raise ValueError(f"expected float images in [-1, 1] or uint8, got {images.dtype}")
        images = to_uint8(images)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return (resize_like_tensorflow(images.float()) - 128) / 128


def weights_path(path: str | os.PathLike | None) -> Path:
    """The Inception weights file: ``path``, else ``$ARTOK_INCEPTION``; a one-line
    FileNotFoundError that says where to get it when neither names an existing file."""
    given = path or os.environ.get(WEIGHTS_ENV)
    if not given:
        raise FileNotFoundError(f"Inception metrics need the FID Inception weights {WEIGHTS_NAME}: download it once "
                                f"from {WEIGHTS_URL} and pass --inception-weights PATH (or set ${WEIGHTS_ENV})")
    file = Path(given)
    if not file.is_file():
        raise FileNotFoundError(f"Inception weights {given} do not exist; download {WEIGHTS_NAME} from {WEIGHTS_URL}")
    return file


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_state_dict(file: Path) -> dict:
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(file))
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch.load and safetensors raise many types
        raise ValueError(f"Inception weights {file} are not a readable state dict "
                         f"({' '.join(str(error).split())[:100]}); use {WEIGHTS_NAME}") from None
    if not isinstance(state, dict):
        raise ValueError(f"Inception weights {file} hold a {type(state).__name__}, not a state dict; use {WEIGHTS_NAME}")
    return state


def load_inception(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> FIDInceptionV3:
    """`FIDInceptionV3` with the weights at ``path`` (or ``$ARTOK_INCEPTION``), in eval mode.
    ``network.weights_sha256`` is the file's checksum (reported with every metric)."""
    file = weights_path(path)
    state = {key: value for key, value in _read_state_dict(file).items() if not key.endswith("num_batches_tracked")}
    network = FIDInceptionV3()
    expected = {key for key in network.state_dict() if not key.endswith("num_batches_tracked")}
    missing, unexpected = sorted(expected - state.keys()), sorted(state.keys() - expected)
    if missing or unexpected:
        raise ValueError(f"Inception weights {file} do not fit the FID Inception-v3 ({len(missing)} missing keys, e.g. "
                         f"{missing[:1]}, {len(unexpected)} unexpected, e.g. {unexpected[:1]}); use {WEIGHTS_NAME}")
    shapes = [key for key, value in network.state_dict().items() if key in state and state[key].shape != value.shape]
    if shapes:
        raise ValueError(f"Inception weights {file}: {shapes[0]} has shape {tuple(state[shapes[0]].shape)}, "
                         f"expected {tuple(network.state_dict()[shapes[0]].shape)}; use {WEIGHTS_NAME}")
    network.load_state_dict(state, strict=False)
    network.weights_sha256 = file_sha256(file)
    return network.to(device).eval()


def random_inception_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A seeded random state dict of the FID Inception's layout, for tests and parity checks (never
    for real metrics): He-normal convolutions, BatchNorm running statistics that keep activations
    of order one, and a scaled classifier so the logits (and so IS) are not degenerate."""
    generator = torch.Generator().manual_seed(seed)
    network = FIDInceptionV3()
    state = {}
    for key, value in network.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = value
        elif key.endswith("conv.weight"):
            fan_in = value[0].numel()
            state[key] = torch.randn(value.shape, generator=generator) * (2.0 / fan_in) ** 0.5
        elif key.endswith("bn.running_var"):
            state[key] = 0.5 + torch.rand(value.shape, generator=generator)
        elif key.endswith(("bn.running_mean", "bn.bias")):
            state[key] = 0.1 * torch.randn(value.shape, generator=generator)
        elif key.endswith("bn.weight"):
            state[key] = 0.8 + 0.4 * torch.rand(value.shape, generator=generator)
        elif key == "fc.weight":
            state[key] = torch.randn(value.shape, generator=generator) * (8.0 / value.shape[1]) ** 0.5
        else:
            state[key] = 0.1 * torch.randn(value.shape, generator=generator)
    return state
