"""artok's LPIPS (`artok.losses.perceptual`) against the ``lpips`` package's own code, same weights.

The ``lpips`` package (PyPI ``lpips``) ships LPIPS's learned linear layers (``weights/v0.1/vgg.pth``)
but takes its VGG16 backbone from torchvision, which does not import beside this torch. So this
script (never the library) puts a stand-in ``torchvision.models.vgg16`` in ``sys.modules`` that
returns a VGG16 ``features`` stack with seeded random weights; the same weights are written in
torchvision's key format for artok. Both sides then get LPIPS's real linear layers.

    pip download lpips --no-deps -d /tmp/lp && unzip /tmp/lp/lpips-*.whl -d /tmp/lp/x
    python benchmarks/parity_lpips.py --lpips /tmp/lp/x --out runs/bench/parity_lpips.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import types
from pathlib import Path

import torch

from artok.losses.perceptual import _vgg16_features, load_perceptual_loss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lpips", required=True, help="folder that holds the lpips package (unpacked wheel)")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--out", default="runs/bench/parity_lpips.json")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    features = _vgg16_features()
    for module in features:
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight)
            torch.nn.init.normal_(module.bias, std=0.05)
    stand_in = types.ModuleType("torchvision")
    stand_in.models = types.SimpleNamespace(vgg16=lambda **_: types.SimpleNamespace(features=features))
    sys.modules["torchvision"] = stand_in
    sys.path.insert(0, args.lpips)
    import lpips  # noqa: E402 - the peer package, with the stand-in backbone

    peer = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False).eval()
    linear = Path(lpips.__file__).parent / "weights" / "v0.1" / "vgg.pth"
    with tempfile.TemporaryDirectory() as folder:
        backbone = Path(folder) / "vgg16.pth"
        torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, backbone)
        ours = load_perceptual_loss(backbone, linear)
    x = torch.rand(args.images, 3, args.size, args.size) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    with torch.no_grad():
        theirs = peer(x, y).flatten()
        mine = ours.distance(x, y).flatten()
    result = {"images": args.images, "size": args.size, "lpips": [float(v) for v in theirs],
              "artok": [float(v) for v in mine], "max_abs_difference": float((theirs - mine).abs().max()),
              "max_relative_difference": float(((theirs - mine).abs() / theirs.abs()).max()),
              "linear_weights": str(linear)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k not in ("lpips", "artok")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
