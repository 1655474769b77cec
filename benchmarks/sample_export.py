"""``artok sample --num-images``: a 1-process and a 2-process (torchrun, gloo, CPU) export of the same
plan are identical image for image (digest of every shard); a SIGKILLed export resumes without
duplicates and ends equal to a clean one; images/s of each run.

    python benchmarks/sample_export.py [--generator DIR] [--num-images 2000] [--out benchmarks/sample_export.json]

Without ``--generator`` a tiny untrained raster generator on an 8 x 8 VQ tokenizer is built (the
point is the export machinery, not the images).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _tiny_pair(root: Path) -> Path:
    import torch

    from artok.generators import RasterConfig, RasterGenerator
    from artok.hub import save_pretrained
    from artok.tokenizers import CNNTokenizer, CNNTokenizerConfig

    torch.manual_seed(0)
    tokenizer = CNNTokenizer(CNNTokenizerConfig(image_size=8, base_channels=8, channel_multipliers=(1, 2), latent_dim=8,
                                                quantizer="vq", quantizer_options={"codebook_size": 16, "codebook_dim": 4}))
    save_pretrained(tokenizer.eval(), root / "tok")
    generator = RasterGenerator(RasterConfig(token_spec=tokenizer.spec.to_dict(), num_classes=10, dim=32, depth=1, num_heads=2))
    save_pretrained(generator.eval(), root / "gen", extra={"tokenizer": "../tok"})
    return root / "gen"


def _run(command: list[str]) -> tuple[dict, float]:
    started = time.perf_counter()
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise SystemExit(result.stderr[-2000:])
    return json.loads(result.stdout[result.stdout.index("{"):]), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generator", type=Path)
    parser.add_argument("--num-images", type=int, default=2000)
    parser.add_argument("--shard-size", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/sample_export.json"))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="artok-export-"))
    generator = args.generator or _tiny_pair(root)

    def arguments(out: Path) -> list[str]:
        return ["sample", "--generator", str(generator), "--num-images", str(args.num_images), "--shard-size",
                str(args.shard_size), "--batch-size", str(args.batch_size), "--out", str(out), "--seed", "3", "--no-progress"]

    one, one_seconds = _run([sys.executable, "-m", "artok", *arguments(root / "one")])
    two, two_seconds = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             "-m", "artok", *arguments(root / "two")])
    killed = root / "killed"
    process = subprocess.Popen([sys.executable, "-m", "artok", *arguments(killed)], env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    shards = args.num_images // args.shard_size
    while len(list((killed / "shards").glob("shard-*.npz"))) < max(1, shards // 3) and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished_before = len(list((killed / "shards").glob("shard-*.npz")))
    resumed, resumed_seconds = _run([sys.executable, "-m", "artok", *arguments(killed)])
    result = {
        "num_images": args.num_images, "shard_size": args.shard_size, "batch_size": args.batch_size,
        "one_process": {"digest": one["digest"], "images_per_second": one["images_per_second"], "wall_s": one_seconds},
        "two_processes": {"digest": two["digest"], "images_per_second_rank0": two["images_per_second"], "wall_s": two_seconds},
        "identical": one["digest"] == two["digest"],
        "resume": {"shards_finished_before_kill": finished_before, "skipped_shards": resumed["skipped_shards"],
                   "sampled_images": resumed["sampled_images"], "digest_equal": resumed["digest"] == one["digest"]},
        "wall_s_resumed": resumed_seconds,
    }
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
