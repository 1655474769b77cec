"""A small CNN reference classifier for evaluating generated images of a labelled dataset.

Its penultimate features stand in for Inception features in a Frechet distance (FID, Heusel et
al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium",
arXiv:1706.08500) on small datasets where Inception is neither available offline nor meaningful
(16 x 16 digits), and its argmax measures whether class-conditional samples show the class they
were asked for (the "classification accuracy score" idea of Ravuri & Vinyals, arXiv:1905.10887,
applied the other way round: a classifier trained on real data judges generated data).

The classifier is trained once per dataset and image size by the library's training loop and
cached under ``$ARTOK_CACHE/classifiers/`` (default ``~/.cache/artok/classifiers/``) as an
`artok.hub` model folder (``model.safetensors`` plus ``config.json``), so every evaluation of that
dataset uses the same reference network.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from artok.data.base import ImageDataset
from artok.hub import from_pretrained, load_config, register_model, save_pretrained
from artok.training.config import TrainConfig, batch_indices
from artok.training.loop import train as run_training

#: Bump when the architecture, the default training recipe or the folder format changes: old cache
#: entries are then ignored (they stay on disk under their old key) instead of being misread.
#: v2: trained by the library's loop, saved as an `artok.hub` model folder.
CLASSIFIER_VERSION = "v2"


@dataclass
class ReferenceClassifierConfig:
    """Configuration of `ReferenceClassifier`.

    Args:
        in_channels: image channels (1 for digits and MNIST, 3 for colour).
        image_size: ``(height, width)`` of the inputs, or one int for square images; at least 4.
        num_classes: number of classes (at least 2).
        width: channels of the first stage; later stages use 2x and 4x.
        feature_dim: size of the penultimate features that `ReferenceClassifier.features` returns.
        pooled_size: side of the average-pooled grid that feeds the feature layer.
    """

    in_channels: int = 1
    image_size: tuple[int, int] = (16, 16)
    num_classes: int = 10
    width: int = 32
    feature_dim: int = 128
    pooled_size: int = 4

    def __post_init__(self) -> None:
        size = self.image_size
        self.image_size = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
        if len(self.image_size) != 2 or min(self.image_size) < 4:
            raise ValueError(f"image_size must be (height, width) with both sides >= 4, got {size!r}")
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be positive, got {self.in_channels}")
        if self.num_classes < 2:
            raise ValueError(f"a classifier needs num_classes >= 2, got {self.num_classes}")
        if min(self.width, self.feature_dim, self.pooled_size) < 1:
            raise ValueError(
                f"width, feature_dim and pooled_size must be positive, got {self.width}, {self.feature_dim}, "
                f"{self.pooled_size}"
            )


def _conv_block(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


@register_model("reference_classifier")
class ReferenceClassifier(nn.Module):
    """Three conv stages (``width``, ``2 width``, ``4 width`` channels; two 2x max-pools), average
    pooling to a ``pooled_size`` grid, a ``feature_dim`` ReLU layer (the features) and a linear
    head (the logits).

    Shapes: images ``B x in_channels x H x W`` in [-1, 1] -> features ``B x feature_dim``
    -> logits ``B x num_classes``.
    """

    config_class = ReferenceClassifierConfig
    model_role = "classifier"

    def __init__(self, config: ReferenceClassifierConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.backbone = nn.Sequential(
            *_conv_block(config.in_channels, w),
            nn.MaxPool2d(2),
            *_conv_block(w, 2 * w),
            *_conv_block(2 * w, 2 * w),
            nn.MaxPool2d(2),
            *_conv_block(2 * w, 4 * w),
            # A coarse grid rather than global pooling keeps where things are (a sleeve, a stroke),
            # which small-image classes depend on.
            nn.AdaptiveAvgPool2d(config.pooled_size),
            nn.Flatten(),
            nn.Linear(4 * w * config.pooled_size**2, config.feature_dim),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Linear(config.feature_dim, config.num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``B x feature_dim`` (the Frechet-distance embedding)."""
        expected = (self.config.in_channels, *self.config.image_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"this classifier takes B x {expected[0]} x {expected[1]} x {expected[2]} images, "
                f"got {tuple(images.shape)}"
            )
        return self.backbone(images)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``B x num_classes`` from features ``B x feature_dim``."""
        return self.head(features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``B x num_classes`` for images ``B x C x H x W`` in [-1, 1]."""
        return self.classify(self.features(images))


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by its own random integer offset in ``[-max_shift, max_shift]`` on both
    axes, filling the uncovered border by replicating the edge (background) pixels.

    ``generator`` must live on the images' device.
    """
    if max_shift == 0:
        return images
    batch, _, height, width = images.shape
    padded = F.pad(images, (max_shift,) * 4, mode="replicate")
    offset_y = torch.randint(0, 2 * max_shift + 1, (batch, 1), generator=generator, device=images.device)
    offset_x = torch.randint(0, 2 * max_shift + 1, (batch, 1), generator=generator, device=images.device)
    rows = offset_y + torch.arange(height, device=images.device)  # B x H
    cols = offset_x + torch.arange(width, device=images.device)  # B x W
    batch_index = torch.arange(batch, device=images.device)[:, None, None]
    # Advanced indexing puts the indexed dims first: B x H x W x C.
    shifted = padded.permute(0, 2, 3, 1)[batch_index, rows[:, :, None], cols[:, None, :]]
    return shifted.permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def classifier_accuracy(
    classifier: ReferenceClassifier,
    dataset: ImageDataset,
    *,
    batch_size: int = 512,
    device: torch.device | str | None = None,
) -> float:
    """Top-1 accuracy of ``classifier`` on ``dataset`` (fraction in [0, 1])."""
    device = next(classifier.parameters()).device if device is None else torch.device(device)
    was_training = classifier.training
    classifier.eval()
    correct = 0
    for start in range(0, len(dataset), batch_size):
        index = torch.arange(start, min(start + batch_size, len(dataset)))
        images, labels = dataset.batch(index, device)
        correct += int((classifier(images).argmax(dim=1) == labels).sum())
    classifier.train(was_training)
    return correct / len(dataset)


def default_steps(num_images: int, batch_size: int) -> int:
    """Two epochs, but at least 300 steps (small sets such as digits need more passes)."""
    return max(300, math.ceil(2 * num_images / batch_size))


def train_reference_classifier(
    train: ImageDataset,
    *,
    steps: int | None = None,
    batch_size: int = 128,
    learning_rate: float = 3e-3,
    weight_decay: float = 0.05,
    max_shift: int = 1,
    width: int = 16,
    feature_dim: int = 128,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> ReferenceClassifier:
    """Train a `ReferenceClassifier` on ``train`` from scratch.

    Runs the library's training loop (`artok.training.loop.train`): AdamW (biases and norm gains not
    decayed) with a short linear warm-up and cosine decay to zero, no gradient clipping, batches an
    epoch-wise permutation that is a function of ``(seed, step)``; each batch is augmented with
    random translations of up to ``max_shift`` pixels drawn from ``(seed, step)``. Deterministic for
    a given ``seed`` on a given device and thread count.

    The defaults reach about 99% test accuracy on 16 x 16 digits (300 steps, seconds on 2 CPU
    cores) and about 91% on Fashion-MNIST (2 epochs, about a minute).

    Args:
        train: labelled training images.
        steps: optimizer steps; ``None`` means `default_steps` (2 epochs, at least 300 steps).
        batch_size, learning_rate, weight_decay: AdamW settings (the learning rate is the peak).
        max_shift: largest random translation in pixels (0 turns augmentation off).
        width, feature_dim: the `ReferenceClassifierConfig` fields of the same names.
        seed: seeds initialisation, batch order and augmentation.
        device: where to train.
        progress: show a tqdm bar.

    Returns:
        The trained classifier in eval mode, on ``device``.
    """
    steps = default_steps(len(train), batch_size) if steps is None else steps
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got {steps} and {batch_size}")
    if train.num_classes < 2:
        raise ValueError(
            f"dataset {train.name!r} has {train.num_classes} class(es): a reference classifier needs labels"
        )
    config = ReferenceClassifierConfig(
        in_channels=train.channels,
        image_size=train.image_size,
        num_classes=train.num_classes,
        width=width,
        feature_dim=feature_dim,
    )
    # Seeded initialisation without touching the caller's global RNG state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ReferenceClassifier(config)

    def loss_fn(view: nn.Module, step: int, micro: int = 0) -> dict:
        index = batch_indices(len(train), batch_size, step, seed)  # epoch-wise, a function of (seed, step)
        images, labels = train.batch(index, device)
        shift = torch.Generator(device=device).manual_seed(seed * 1_000_003 + step + 1)
        images = random_shift(images, max_shift, shift)
        return {"loss": F.cross_entropy(view(images), labels), "batch_size": len(index)}

    recipe = TrainConfig(
        steps=steps, batch_size=batch_size, lr=learning_rate, weight_decay=weight_decay, betas=(0.9, 0.999),
        warmup_steps=max(1, steps // 20), min_lr_ratio=0.0, grad_clip=0.0, seed=seed, device=str(device),
        amp="off", progress=progress, log_every=25,
    )
    return run_training(model, loss_fn, recipe, description=f"reference classifier ({train.name})").model.eval()


# ---------------------------------------------------------------------------------------------
# Cache


def default_cache_dir() -> Path:
    """``$ARTOK_CACHE/classifiers`` if ``ARTOK_CACHE`` is set, else
    ``$XDG_CACHE_HOME/artok/classifiers``, else ``~/.cache/artok/classifiers``."""
    if os.environ.get("ARTOK_CACHE"):
        return Path(os.environ["ARTOK_CACHE"]).expanduser() / "classifiers"
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "artok" / "classifiers"
    return Path.home() / ".cache" / "artok" / "classifiers"


def classifier_cache_key(dataset_name: str, channels: int, image_size: tuple[int, int], train_kwargs: dict) -> str:
    """Directory name of a cache entry: readable dataset name, image shape and version, plus a
    short hash of the exact name and any non-default training settings (so ``folder:`` paths
    that sanitise to the same string, or custom recipes, never collide with the defaults)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", dataset_name).strip("_")[:40] or "dataset"
    identity = json.dumps({"name": dataset_name, "train": train_kwargs}, sort_keys=True)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:10]
    height, width = image_size
    return f"{slug}-{channels}x{height}x{width}-{CLASSIFIER_VERSION}-{digest}"


def save_reference_classifier(classifier: ReferenceClassifier, directory: str | Path, metadata: dict | None = None) -> Path:
    """`artok.hub.save_pretrained` with ``metadata`` (and the classifier version) as the folder's
    ``extra``: ``model.safetensors`` then ``config.json``, each atomically, so the presence of
    ``config.json`` marks a complete entry."""
    return save_pretrained(classifier, directory, extra={"version": CLASSIFIER_VERSION, **(metadata or {})})


def load_reference_classifier(directory: str | Path, device: torch.device | str = "cpu") -> ReferenceClassifier:
    """`artok.hub.from_pretrained` of a classifier folder (no code is executed), refusing another
    classifier version in one line."""
    model = from_pretrained(directory, device, role="classifier")
    version = model.extra.get("version")
    if version != CLASSIFIER_VERSION:
        raise ValueError(f"{directory} holds a version {version!r} classifier, this artok reads {CLASSIFIER_VERSION!r}")
    return model


def read_classifier_record(directory: str | Path) -> dict:
    """The record of a cache entry: its ``extra`` (version, test accuracy, training settings, ...)
    and the model config under ``"model"``."""
    payload = load_config(directory)
    return {**payload.get("extra", {}), "model": payload["config"]}


#: The `train_reference_classifier` arguments `get_reference_classifier` passes on.
_TRAIN_SETTINGS = frozenset(
    {"steps", "batch_size", "learning_rate", "weight_decay", "max_shift", "width", "feature_dim", "seed"}
)


def get_reference_classifier(
    dataset_name: str,
    *,
    image_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    cache_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
    retrain: bool = False,
    progress: bool = True,
    **train_kwargs: Any,
) -> ReferenceClassifier:
    """The reference classifier of a dataset: loaded from the cache, or trained once and cached.

    Trains on ``load_dataset(dataset_name, "train", image_size=..., channels=...)`` with
    `train_reference_classifier` (``train_kwargs`` are passed on, e.g. ``steps``), measures its
    accuracy on the ``"test"`` split, and stores weights and config (with ``test_accuracy`` and
    the training settings) under ``cache_dir / classifier_cache_key(...)``. ``cache_dir``
    defaults to `default_cache_dir`. ``retrain=True`` ignores and overwrites an existing entry.
    """
    from artok.data import (
        load_dataset,  # deferred: the data package imports heavier loaders
    )

    if not set(train_kwargs) <= _TRAIN_SETTINGS:
        unknown = sorted(set(train_kwargs) - _TRAIN_SETTINGS)
        raise TypeError(f"unknown training argument(s) {unknown}; expected some of {sorted(_TRAIN_SETTINGS)}")
    train = load_dataset(dataset_name, "train", image_size=image_size, channels=channels)
    key = classifier_cache_key(dataset_name, train.channels, train.image_size, train_kwargs)
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    directory = directory / key
    if not retrain and (directory / "config.json").is_file():
        return load_reference_classifier(directory, device)

    start = time.perf_counter()
    classifier = train_reference_classifier(train, device=device, progress=progress, **train_kwargs)
    seconds = time.perf_counter() - start
    test = load_dataset(dataset_name, "test", image_size=image_size, channels=channels)
    metadata = {
        "dataset": dataset_name,
        "train_size": len(train),
        "test_size": len(test),
        "test_accuracy": classifier_accuracy(classifier, test),
        "train_seconds": round(seconds, 2),
        "train_settings": train_kwargs,
        "class_names": list(train.class_names),
    }
    save_reference_classifier(classifier, directory, metadata)
    return classifier
