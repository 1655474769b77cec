"""Train a generator on tokens: images are encoded once with the (frozen) tokenizer, then the
generator trains on the token tensors (no re-encoding every epoch)."""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from artok.data.base import ImageDataset
from artok.generators.base import Generator
from artok.tokenizers.base import Tokenizer
from artok.tokens import Tokens
from artok.distributed.env import SINGLE
from artok.training.loop import TrainConfig, TrainResult, train


@torch.no_grad()
def encode_dataset(
    tokenizer: Tokenizer, dataset: ImageDataset, batch_size: int = 256, device: str = "cpu", progress: bool = True
) -> Tokens:
    """Encode every image of ``dataset`` into one `Tokens` batch (on CPU)."""
    tokenizer.to(device).eval()
    chunks = []
    for start in tqdm(range(0, len(dataset), batch_size), desc="encode", disable=not progress, leave=False):
        images, _ = dataset.batch(torch.arange(start, min(start + batch_size, len(dataset))), device)
        chunks.append(tokenizer.encode(images).to("cpu"))
    spec = chunks[0].spec
    if spec.kind == "discrete":
        return Tokens(spec, ids=torch.cat([c.ids for c in chunks]))
    return Tokens(spec, values=torch.cat([c.values for c in chunks]))


def train_generator(
    generator: Generator,
    tokens: Tokens,
    labels: torch.Tensor,
    config: TrainConfig,
    *,
    out_dir: str | Path | None = None,
    resume: bool = False,
    eval_fn=None,
    parallel=None,
    env=None,
) -> TrainResult:
    """Train ``generator`` on pre-computed ``tokens`` with class ``labels``; under torchrun with
    ``parallel`` (`artok.distributed.ParallelConfig`) and ``env``, each rank reads its slice of
    every global batch (``config.batch_size`` per rank and micro-step)."""
    if not isinstance(tokens, Tokens):  # a sharded token cache (artok.data.token_shards.TokenShards)
        return _train_from_cache(generator, tokens, config, out_dir, resume, eval_fn, parallel, env)
    generator.check_spec(tokens.spec)
    if labels.shape[0] != tokens.batch_size:
        raise ValueError(f"{tokens.batch_size} token sequences but {labels.shape[0]} labels")
    torch.manual_seed(config.seed)

    env = env or SINGLE
    shard = env.shard(config.grad_accum)
    device = env.device if env.distributed else config.device
    micro_batches: dict[int, list[torch.Tensor]] = {}

    def loss_fn(model, step, micro):
        if micro == 0:
            getattr(generator, "set_step", lambda _: None)(step)  # step-scheduled models (RAR's order annealing)
            micro_batches.clear()
            micro_batches[step] = shard.indices(tokens.batch_size, config.batch_size, step, config.seed)
        index = micro_batches[step][micro]
        batch = tokens[index].to(device)
        return {**model.loss(batch, labels[index].to(device)), "batch_size": index.shape[0]}

    return train(generator, loss_fn, config, out_dir=out_dir, resume=resume, eval_fn=eval_fn, description="generator",
                 parallel=parallel, env=env, extra_meta={"num_items": tokens.batch_size})


def _train_from_cache(generator, cache, config, out_dir, resume, eval_fn, parallel, env) -> TrainResult:
    """Train on a memory-mapped `TokenShards` cache: each rank reads its slice of every global batch."""
    from artok.data.token_shards import TokenBatches

    generator.check_spec(cache.spec)
    env = env or SINGLE
    device = env.device if env.distributed else config.device
    source = TokenBatches(cache, config.batch_size, env.shard(config.grad_accum), seed=config.seed, device=device)
    torch.manual_seed(config.seed)

    held: list = []

    def loss_fn(model, step, micro):
        if micro == 0:
            getattr(generator, "set_step", lambda _: None)(step)
            held[:] = source.micro_batches(step)
        batch, labels = held[micro]
        return {**model.loss(batch, labels), "batch_size": labels.shape[0]}

    return train(generator, loss_fn, config, out_dir=out_dir, resume=resume, eval_fn=eval_fn, description="generator",
                 parallel=parallel, env=env, extra_meta={"num_items": len(cache)})
