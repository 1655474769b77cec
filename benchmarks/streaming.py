"""Streaming loader vs tokenizer step: images/s of each, and the peak memory of loader + workers.

    python benchmarks/streaming.py --folder /tmp/photos2k --image-size 256 --workers 2 --steps 40 --out a.json

Phases (each reports its own peak memory, sampled every 20 ms over the main process and every
DataLoader worker, from /proc):
    scan:   listing the folder (`artok.data.scan`), and the bytes its compact table takes.
    loader: `StreamingBatches` alone for ``--steps`` steps of ``--batch-size`` images (after 2 warm-up
            steps): decode + ADM crop + flip in ``--workers`` processes, float conversion in the main one.
    model:  one training step (forward, backward, Adam) of a small `CNNTokenizer` (VQ, 16x16 tokens
            at 256 px) on a fixed batch, ``--model-steps`` times.
    train:  ``--train-steps`` steps of loader + model together (the loss must fall).
Memory: ``rss`` counts shared pages once per process (so forked workers look bigger than they
are); ``pss`` splits shared pages among the processes sharing them: their sum is the real total.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

import torch

from artok.data.scan import scan_folder
from artok.data.step_batches import StreamingBatches
from artok.data.stream import open_stream
from artok.distributed.sharding import Shard
from artok.tokenizers import CNNTokenizer, CNNTokenizerConfig


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            pass
    return found + [grandchild for child in found for grandchild in _children(child)]


def _kib(pid: int, path: str, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemorySampler:
    """Peak RSS / PSS (MiB) of this process and of all its descendants, sampled in a thread."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval, self._stop, self.peaks = interval, threading.Event(), {}

    def _sample(self) -> None:
        main = os.getpid()
        workers = _children(main)
        rss = {pid: _kib(pid, "status", "VmRSS:") for pid in [main, *workers]}
        pss = {pid: _kib(pid, "smaps_rollup", "Pss:") for pid in [main, *workers]}
        now = {"main_rss_mib": rss[main], "main_pss_mib": pss[main], "workers": len(workers),
               "total_rss_mib": sum(rss.values()), "total_pss_mib": sum(pss.values()),
               "max_worker_pss_mib": max((pss[pid] for pid in workers), default=0)}
        for key, value in now.items():
            self.peaks[key] = max(self.peaks.get(key, 0), value)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.peaks = {key: round(value / 1024, 1) if key.endswith("mib") else value for key, value in self.peaks.items()}


def small_tokenizer(image_size: int, base_channels: int) -> CNNTokenizer:
    config = CNNTokenizerConfig(in_channels=3, image_size=image_size, base_channels=base_channels, channel_multipliers=(1, 1, 2, 2, 4),
                                latent_dim=16, quantizer="vq", quantizer_options={"codebook_size": 1024, "codebook_dim": 8})
    return CNNTokenizer(config)


def _step(tokenizer, optimizer, images) -> float:
    output = tokenizer(images)
    loss = torch.nn.functional.mse_loss(output.reconstruction, images) + output.quantizer.loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def _loader_phase(dataset, args) -> dict:
    with MemorySampler() as memory, StreamingBatches(dataset, args.batch_size, Shard(), seed=0, workers=args.workers) as source:
        for step in range(2):
            source.batch(step)
        start = time.perf_counter()
        images = sum(source.batch(step)[0].shape[0] for step in range(2, 2 + args.steps))
        seconds = time.perf_counter() - start
    return {"images": images, "seconds": round(seconds, 3), "images_per_s": round(images / seconds, 1),
            "skipped": source.skipped, "memory": memory.peaks}


def _model_phase(dataset, args) -> dict:
    tokenizer = small_tokenizer(args.image_size, args.base_channels)
    optimizer = torch.optim.Adam(tokenizer.parameters(), lr=1e-3)
    with StreamingBatches(dataset, args.batch_size, Shard(), seed=1, workers=0) as source:
        images, _ = source.batch(0)
    with MemorySampler() as memory:
        _step(tokenizer, optimizer, images)
        start = time.perf_counter()
        for _ in range(args.model_steps):
            _step(tokenizer, optimizer, images)
        seconds = time.perf_counter() - start
    count = images.shape[0] * args.model_steps
    return {"images": count, "seconds": round(seconds, 3), "images_per_s": round(count / seconds, 1),
            "parameters": sum(p.numel() for p in tokenizer.parameters()), "memory": memory.peaks}


def _train_phase(dataset, args) -> dict:
    tokenizer = small_tokenizer(args.image_size, args.base_channels)
    optimizer = torch.optim.Adam(tokenizer.parameters(), lr=2e-3)
    losses = []
    with MemorySampler() as memory, StreamingBatches(dataset, args.batch_size, Shard(), seed=2, workers=args.workers) as source:
        start = time.perf_counter()
        for step in range(args.train_steps):
            losses.append(_step(tokenizer, optimizer, source.batch(step)[0]))
        seconds = time.perf_counter() - start
    tenth = max(1, len(losses) // 10)
    return {"steps": args.train_steps, "seconds": round(seconds, 1), "images_per_s": round(args.train_steps * args.batch_size / seconds, 1),
            "loss_first_tenth": round(sum(losses[:tenth]) / tenth, 4), "loss_last_tenth": round(sum(losses[-tenth:]) / tenth, 4),
            "skipped": source.skipped, "memory": memory.peaks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", required=True)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=40, help="loader steps timed")
    parser.add_argument("--model-steps", type=int, default=5)
    parser.add_argument("--train-steps", type=int, default=0)
    parser.add_argument("--base-channels", type=int, default=8, help="tokenizer width (default: 8)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the main process (default: 1)")
    parser.add_argument("--out", required=True, help="JSON file written")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with MemorySampler() as memory:
        start = time.perf_counter()
        files, _, _ = scan_folder(args.folder)
        scan = {"files": len(files), "seconds": round(time.perf_counter() - start, 3), "table_bytes": files.nbytes}
        del files  # open_stream lists the folder again
    scan["memory"] = memory.peaks
    dataset = open_stream(f"folder:{args.folder}", "all", image_size=args.image_size, flip=True)
    report = {"folder": args.folder, "image_size": args.image_size, "workers": args.workers, "batch_size": args.batch_size,
              "threads": args.threads, "cpus": os.cpu_count(), "load_average": os.getloadavg()[0], "scan": scan,
              "loader": _loader_phase(dataset, args)}
    if args.model_steps:
        report["model"] = _model_phase(dataset, args)
    if args.train_steps:
        report["train"] = _train_phase(dataset, args)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
