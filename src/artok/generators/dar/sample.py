"""Sampling D-AR's GPT with previews (Gao, Shou et al., https://arxiv.org/abs/2505.23660).

The tokens are raster's (`artok.generators.raster.sample`): the same prefill, one-token decode and
draw (`next_token`), so for a seed `sample_dar` gives `sample_raster`'s tokens, and the raster
engine and recompute loop apply unchanged. What D-AR adds is that every prefix of its sequence is
an image: ``on_prefix(k, tokens)`` is called, during sampling, with the ``k`` tokens generated so
far (a `Tokens` of length ``k``) at each chosen prefix length, so a caller can decode a preview
(`artok.tokenizers.dar.DARTokenizer.decode` accepts a prefix) while the rest is still generated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import torch

from artok.generators.raster.sample import decode_one_token, guided_labels, next_token, prefill
from artok.nn.kv_cache import static_kv_cache
from artok.sampling.configs import SamplerConfig
from artok.tokens import Tokens


def _prefix(generator, ids: torch.Tensor, k: int) -> Tokens:
    return Tokens(replace(generator.spec, length=k), ids=ids[:, :k].clone())


def checked_lengths(generator, lengths: Sequence[int] | None) -> list[int]:
    """Sorted distinct preview lengths in ``[1, L]`` (default: the end of every token group)."""
    seq_len = generator.config.seq_len
    lengths = generator.group_ends() if lengths is None else sorted({int(k) for k in lengths})
    if any(not 1 <= k <= seq_len for k in lengths):
        raise ValueError(f"preview lengths must be in [1, {seq_len}], got {lengths}")
    return lengths


@torch.no_grad()
def sample_dar(generator, labels: torch.Tensor, config: SamplerConfig, rng: torch.Generator | None = None, *,
               preview_lengths: Sequence[int] | None = None,
               on_prefix: Callable[[int, Tokens], None] | None = None) -> Tokens:
    """Sample ``len(labels)`` sequences (KV cache, raster's draws); with ``on_prefix``, call it as
    ``on_prefix(k, tokens)`` once the first ``k`` tokens exist, for every ``k`` of
    ``preview_lengths`` (default: the ends of the token groups, `DARGenerator.group_ends`)."""
    seq_len = generator.config.seq_len
    lengths = set(checked_lengths(generator, preview_lengths)) if on_prefix is not None else set()
    rows = guided_labels(generator, labels, config)
    out = torch.empty(labels.shape[0], seq_len, dtype=torch.long, device=labels.device)
    with static_kv_cache(generator, rows.shape[0]):
        ids = next_token(prefill(generator, rows), 0, seq_len, config, rng)
        out[:, 0] = ids[: labels.shape[0]]
        for step in range(1, seq_len + 1):
            if step in lengths:
                on_prefix(step, _prefix(generator, out, step))
            if step == seq_len:
                break
            input_pos = torch.tensor([step], device=labels.device)
            ids = next_token(decode_one_token(generator, ids, input_pos), step, seq_len, config, rng)
            out[:, step] = ids[: labels.shape[0]]
    return Tokens(generator.spec, ids=out)


@torch.no_grad()
def sample_with_previews(generator, labels: torch.Tensor, config: SamplerConfig, rng: torch.Generator | None,
                         decode: Callable[[Tokens, int], torch.Tensor],
                         preview_lengths: Sequence[int] | None = None) -> tuple[Tokens, dict[int, torch.Tensor]]:
    """`sample_dar` with ``decode(prefix_tokens, k) -> images`` run on each prefix as it appears;
    returns the tokens and ``{k: images}`` (e.g. ``decode = lambda t, k: tokenizer.decode(t)``)."""
    previews: dict[int, torch.Tensor] = {}

    def keep(k: int, tokens: Tokens) -> None:
        previews[k] = decode(tokens, k)

    tokens = sample_dar(generator, labels, config, rng, preview_lengths=preview_lengths, on_prefix=keep)
    return tokens, previews
