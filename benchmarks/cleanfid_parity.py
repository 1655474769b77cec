"""artok's folder FID against clean-fid's own pipeline (file reading, batching, ``np.cov``
statistics, scipy ``sqrtm`` Frechet distance) on the same two PNG folders and the same Inception
weights, where the conventions match; and how far clean-fid's own resize convention moves the number.

clean-fid (https://github.com/GaParmar/clean-fid) downloads its TorchScript Inception at run time
and imports torchvision, neither of which is possible here. So:
- its feature extractor is replaced through its own ``custom_feat_extractor`` argument by artok's
  Inception network (one seeded random weights file of the published layout, or ``--weights``);
- its only torchvision use on this path, ``transforms.ToTensor`` (HWC uint8 -> CHW float / 255),
  is supplied by a four-line stand-in (plus empty base classes its unused PyTorch Inception
  subclasses at import) when torchvision cannot be imported (stated in the JSON),
  and ``requests`` (its downloader's) by an empty module when it is not installed.

Rows (``--n`` Fashion-MNIST test images vs ``--n`` noisy train images, written as 28 x 28 PNGs):
1. ``matched``: clean-fid with ``custom_fn_resize`` = identity and the extractor running artok's
   ``inception_input`` (uint8, grey -> RGB, TF1 bilinear to 299) - the same convention as artok, so
   the two FIDs must agree to float64 rounding of the statistics;
2. ``frechet_only``: clean-fid's ``frechet_distance`` on artok's own mu / sigma;
3. ``cleanfid_resize``: clean-fid's ``mode="clean"`` (PIL bicubic on float to 299, no TF1 resize),
   artok's network fed those pixels directly: the number a clean-fid user would get, which differs
   by convention, not by error.

Install clean-fid without its dependencies (``pip install --no-deps clean-fid``) or unpack the wheel
and pass ``--cleanfid PATH`` (the folder holding ``cleanfid/``).

    python benchmarks/cleanfid_parity.py [--cleanfid PATH] [--n 200] [--out benchmarks/cleanfid_parity.json]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from artok.data import load_dataset
from artok.data.base import to_uint8
from artok.evaluation.frechet import feature_statistics, frechet_distance_from_statistics
from artok.evaluation.inception import inception_input, load_inception, random_inception_state_dict
from artok.evaluation.inception_metrics import inception_features
from artok.hub import atomic_write_text
from artok.provenance import run_metadata


def load_cleanfid(path: Path | None):
    """clean-fid's ``fid`` module; a ToTensor stand-in where torchvision cannot be imported."""
    if path is not None:
        sys.path.insert(0, str(path))
    stand_in = False
    try:
        import torchvision  # noqa: F401
    except Exception:  # this torch has no matching torchvision
        stand_in = True
        vision = types.ModuleType("torchvision")
        transforms = types.ModuleType("torchvision.transforms")

        class ToTensor:  # torchvision's semantics for HWC arrays: uint8 -> [0, 1], others unscaled
            def __call__(self, array):
                tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
                return tensor.float() / 255 if tensor.dtype == torch.uint8 else tensor

        # its own PyTorch Inception (never built here: the extractor is artok's) subclasses these at import
        models, inception = types.ModuleType("torchvision.models"), types.ModuleType("torchvision.models.inception")
        for name in ("InceptionA", "InceptionC", "InceptionE"):
            setattr(inception, name, type(name, (torch.nn.Module,), {}))
        models.inception = inception
        transforms.ToTensor, vision.transforms, vision.models, vision.__version__ = ToTensor, transforms, models, "0.0"
        sys.modules.update({"torchvision": vision, "torchvision.transforms": transforms, "torchvision.models": models,
                            "torchvision.models.inception": inception})
    if importlib.util.find_spec("requests") is None:  # used by its downloader only, never called here
        sys.modules["requests"] = types.ModuleType("requests")
    return importlib.import_module("cleanfid.fid"), stand_in


def write_folders(root: Path, n: int, seed: int) -> tuple[Path, Path]:
    """``n`` Fashion-MNIST test images and ``n`` train images + Gaussian noise (std 0.3), as PNGs."""
    test, train = load_dataset("fashion-mnist", "test").images[:n], load_dataset("fashion-mnist", "train").images[:n]
    noise = 0.3 * torch.randn(train.shape, generator=torch.Generator().manual_seed(seed))
    sets = {"real": test, "generated": to_uint8(train.float() / 127.5 - 1 + noise)}
    for name, images in sets.items():
        (root / name).mkdir(parents=True)
        for index, image in enumerate(images):
            Image.fromarray(image[0].numpy()).save(root / name / f"{index:05d}.png")
    return root / "real", root / "generated"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cleanfid", type=Path, help="folder holding the cleanfid package (default: installed)")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--weights", type=Path, help="a real FID Inception weights file (default: seeded random)")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/cleanfid_parity.json"))
    args = parser.parse_args()
    fid, stand_in = load_cleanfid(args.cleanfid)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        weights = args.weights or scratch / "random_inception.pth"
        if args.weights is None:
            torch.save(random_inception_state_dict(0), weights)
        network = load_inception(weights)
        real_dir, fake_dir = write_folders(scratch / "images", args.n, seed=0)

        stats = {}  # artok: its folder loader, its features, its statistics and Frechet distance
        for name, folder in (("real", real_dir), ("generated", fake_dir)):
            stats[name] = feature_statistics(inception_features(network, load_dataset(f"folder:{folder}", "all"), args.batch).pool)
        artok_fid = frechet_distance_from_statistics(stats["generated"], stats["real"])

        def matched(batch):  # clean-fid hands 0..255 float CHW at the PNG's size
            with torch.no_grad():
                return network(inception_input(batch.round().clamp(0, 255).to(torch.uint8)))["pool"]

        def resized(batch):  # clean-fid's own 299 x 299 PIL-bicubic pixels, normalised as the network expects
            with torch.no_grad():
                return network((batch.float() - 128) / 128)["pool"]

        common = {"num_workers": 0, "batch_size": args.batch, "device": torch.device("cpu"), "verbose": False}
        theirs_matched = fid.compute_fid(str(fake_dir), str(real_dir), mode="clean", custom_feat_extractor=matched,
                                         custom_fn_resize=lambda image: image, **common)
        theirs_frechet = fid.frechet_distance(stats["generated"].mean, stats["generated"].covariance,
                                              stats["real"].mean, stats["real"].covariance)
        theirs_resize = fid.compute_fid(str(fake_dir), str(real_dir), mode="clean", custom_feat_extractor=resized,
                                        **common)
    import cleanfid

    result = {
        "images": f"{args.n} fashion-mnist test vs {args.n} train + N(0, 0.3) noise, 28 x 28 grey PNG",
        "weights": str(args.weights) if args.weights else "seeded random (random_inception_state_dict(0))",
        "cleanfid_version": getattr(cleanfid, "__version__", "unknown"), "torchvision_stand_in": stand_in,
        "artok_fid": artok_fid,
        "matched": {"cleanfid_fid": float(theirs_matched), "relative_difference": abs(theirs_matched - artok_fid) / artok_fid},
        "frechet_only": {"cleanfid_fid": float(theirs_frechet),
                         "relative_difference": abs(theirs_frechet - artok_fid) / artok_fid},
        "cleanfid_resize": {"cleanfid_fid": float(theirs_resize), "ratio_to_artok": float(theirs_resize) / artok_fid,
                            "note": "clean-fid's PIL-bicubic resize instead of TF1 bilinear: a convention, not an error"},
        "seconds": time.perf_counter() - began, **run_metadata(seed=0),
    }
    atomic_write_text(args.out, json.dumps(result, indent=2, default=str))
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
