"""Build a folder of real photographs at various sizes for the streaming benchmarks (never commit it).

Every image is a random crop (30-100% of the short side, aspect 3:4 to 4:3), maybe mirrored, of one
of scikit-image's bundled photographs (`artok.data.photos.PHOTO_NAMES`), resized so its short side
is 160-512 px and saved as JPEG (quality 80-95) in one class folder per source photograph. A few
broken files are added (``--corrupt``): a truncated JPEG, an empty file, text named ``.jpg`` and
random bytes named ``.png``, which a streaming loader must skip and count.

    python benchmarks/make_photo_folder.py --out /tmp/photos2k --count 2000
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from artok.data.photos import PHOTO_NAMES, _read


def _sources() -> dict[str, Image.Image]:
    photos = {}
    for name in PHOTO_NAMES:
        array = _read(name)
        if array is not None:
            photos[name] = Image.fromarray(np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array)
    return photos


def _variant(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    width, height = photo.size
    side = min(width, height) * rng.uniform(0.3, 1.0)
    aspect = rng.uniform(0.75, 4 / 3)
    crop_w, crop_h = min(width, int(side * aspect ** 0.5)), min(height, int(side / aspect ** 0.5))
    left, top = int(rng.integers(0, width - crop_w + 1)), int(rng.integers(0, height - crop_h + 1))
    image = photo.crop((left, top, left + crop_w, top + crop_h))
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    short = int(rng.integers(160, 513))
    scale = short / min(image.size)
    return image.resize((max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale))), Image.BICUBIC)


def _corrupt(folder: Path, sample: Path, count: int) -> list[str]:
    makers = [
        ("truncated.jpg", lambda: sample.read_bytes()[: sample.stat().st_size // 3]),
        ("empty.jpg", lambda: b""),
        ("text.jpg", lambda: b"this is not an image\n"),
        ("noise.png", lambda: os.urandom(4096)),
    ]
    written = []
    for index in range(count):
        name, make = makers[index % len(makers)]
        path = folder / f"broken{index:02d}_{name}"
        path.write_bytes(make())
        written.append(path.name)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder to create (must not exist)")
    parser.add_argument("--count", type=int, default=2000, help="number of photographs (default: 2000)")
    parser.add_argument("--corrupt", type=int, default=4, help="broken files added (default: 4)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=False)
    rng = np.random.default_rng(args.seed)
    photos = _sources()
    names = sorted(photos)
    sizes = []
    for index in range(args.count):
        name = names[index % len(names)]
        (out / name).mkdir(exist_ok=True)
        image = _variant(photos[name], rng)
        image.save(out / name / f"{name}_{index:06d}.jpg", quality=int(rng.integers(80, 96)))
        sizes.append(image.size)
    first = out / names[0] / f"{names[0]}_{0:06d}.jpg"
    broken = _corrupt(out / names[0], first, args.corrupt)
    sides = np.array(sizes)
    print(json.dumps({"out": str(out), "photos": args.count, "classes": len(names), "broken": broken,
                      "width": [int(sides[:, 0].min()), int(sides[:, 0].max())],
                      "height": [int(sides[:, 1].min()), int(sides[:, 1].max())]}))


if __name__ == "__main__":
    main()
