"""One training run of a tiny raster generator or VQ tokenizer, as torchrun starts it (or plain
python for one process); writes the loss curve and the final weights for the tests to compare.

    torchrun --nproc-per-node 2 tests/distributed/worker.py --what generator --mode ddp --batch 4 --out D
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared helpers

from artok_test_helpers import NATURAL, TOKENIZERS, options_for, structured_tokens, tiny_tokenizer  # noqa: E402

from artok.data.base import ImageDataset  # noqa: E402
from artok.distributed import ParallelConfig, distributed_run  # noqa: E402
from artok.training import TrainConfig, train_generator, train_tokenizer  # noqa: E402
from artok.zoo import build_generator  # noqa: E402


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--what", choices=("generator", "tokenizer"), default="generator")
    parser.add_argument("--mode", choices=("none", "ddp", "fsdp"), default="none")
    parser.add_argument("--kind", default="raster", help="generator kind (its natural tiny tokenizer)")
    parser.add_argument("--batch", type=int, default=8, help="per rank and micro-step")
    parser.add_argument("--accum", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--ema", type=float, default=None)
    parser.add_argument("--checkpoint-every", type=int, default=0)
    parser.add_argument("--kill-at", type=int, default=None, help="SIGKILL rank 0 while it writes the checkpoint of this step")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--ac", action="store_true")
    parser.add_argument("--out", required=True)
    return parser.parse_args(argv)


def main() -> None:
    """``worker.py ARGS`` runs one job; ``worker.py --plan FILE`` the jobs of a JSON list of argument
    lists, one after the other in the same process group (one torchrun start for several runs)."""
    if sys.argv[1:2] == ["--plan"]:
        jobs = [parse(argv) for argv in json.loads(Path(sys.argv[2]).read_text())]
    else:
        jobs = [parse(sys.argv[1:])]
    with distributed_run("cpu") as env:
        for args in jobs:
            run_job(args, env)


def run_job(args: argparse.Namespace, env) -> None:
    out = Path(args.out)
    torch.manual_seed(0)
    config = TrainConfig(steps=args.steps, batch_size=args.batch, lr=3e-3, warmup_steps=5, log_every=1, seed=3,
                         progress=False, grad_accum=args.accum, ema_decay=args.ema,
                         checkpoint_every=args.checkpoint_every, keep=2)
    parallel = ParallelConfig(mode=args.mode, compile=args.compile, activation_checkpointing=args.ac)
    if args.kill_at is not None:
        victim = 0  # the rank that writes the checkpoint files
        original = torch.save

        def save_then_maybe_die(obj, f, *a, **k):
            original(obj, f, *a, **k)
            step = obj.get("step") if isinstance(obj, dict) else None
            if step == args.kill_at and env.rank == victim:
                os.kill(os.getpid(), signal.SIGKILL)

        torch.save = save_then_maybe_die
    if args.what == "generator" and args.kind != "raster":
        tokenizer = TOKENIZERS[NATURAL[args.kind]]()
        labels = torch.arange(64) % 10
        tokens = structured_tokens(tokenizer.spec, labels)
        torch.manual_seed(1)
        model = build_generator(args.kind, tokenizer, 10, tokens=tokens, **options_for(args.kind))
        result = train_generator(model, tokens, labels, config, out_dir=out, resume=args.resume,
                                 parallel=parallel, env=env)
    elif args.what == "generator":
        tokenizer = tiny_tokenizer("vq", {"codebook_size": 16, "codebook_dim": 4})
        labels = torch.arange(64) % 10
        tokens = structured_tokens(tokenizer.spec, labels)
        torch.manual_seed(1)
        model = build_generator("raster", tokenizer, 10, dim=32, depth=2, num_heads=2, class_dropout=0.0)
        result = train_generator(model, tokens, labels, config, out_dir=out, resume=args.resume,
                                 parallel=parallel, env=env)
    else:
        generator = torch.Generator().manual_seed(5)
        images = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8, generator=generator)
        dataset = ImageDataset(images, torch.zeros(64, dtype=torch.long), ["x"], "synthetic", "train")
        torch.manual_seed(1)
        model = tiny_tokenizer("vq", {"codebook_size": 16, "codebook_dim": 4}).train()
        result = train_tokenizer(model, dataset, config, out_dir=out, resume=args.resume, parallel=parallel, env=env)
    if env.is_main:
        final = {name: tensor.detach().cpu() for name, tensor in result.final_model.state_dict().items()}
        torch.save(final, out / "final.pt")
        losses = [r["loss"] for r in result.history if "loss" in r]
        (out / "losses.json").write_text(json.dumps(losses))


if __name__ == "__main__":
    main()
