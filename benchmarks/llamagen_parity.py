"""Check `artok.convert.llamagen` against LlamaGen's own model code (read from a local clone of
https://github.com/FoundationVision/LlamaGen; nothing of it is copied into artok).

For a randomly initialised LlamaGen class-conditional GPT (its output layer re-initialised, since
LlamaGen zero-initialises it), the converted artok `RasterGenerator` must give
1. the same logits, teacher-forced, at every position of full-length sequences;
2. the same tokens as LlamaGen's own KV-cached ``generate()`` under greedy decoding (top-k 1) with
   classifier-free guidance, i.e. the same cached decode path, prefill and CFG arithmetic;
3. the same tokens from artok's fast engine (`SamplingEngine`).

    git clone https://github.com/FoundationVision/LlamaGen /tmp/llamagen
    python benchmarks/llamagen_parity.py --llamagen-repo /tmp/llamagen [--model GPT-B] [--grid 16]

Writes ``runs/bench/llamagen_parity.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from artok.convert.llamagen import convert_state_dict
from artok.generators.raster.engine import SamplingEngine
from artok.generators.raster.sample import sample_raster
from artok.sampling.configs import SamplerConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llamagen-repo", required=True, help="a local clone of FoundationVision/LlamaGen")
    parser.add_argument("--model", default="GPT-B", help="a name of LlamaGen's GPT_models (class-conditional)")
    parser.add_argument("--grid", type=int, default=16, help="token grid side (16 for 256 px, 24 for 384 px)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--cfg-scale", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/bench/llamagen_parity.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(args.llamagen_repo).resolve()))
    from autoregressive.models.generate import generate  # noqa: E402  (LlamaGen's code, from the clone)
    from autoregressive.models.gpt import GPT_models  # noqa: E402

    torch.manual_seed(0)
    theirs = GPT_models[args.model](vocab_size=16384, block_size=args.grid**2, num_classes=1000, cls_token_num=1,
                                    model_type="c2i").eval()
    torch.nn.init.normal_(theirs.output.weight, std=0.02)  # LlamaGen zero-initialises its output layer
    ours = convert_state_dict(theirs.state_dict(), grid=(args.grid, args.grid))
    length = args.grid**2
    labels = torch.randint(1000, (args.batch,))
    ids = torch.randint(16384, (args.batch, length))
    result = {"model": args.model, "grid": args.grid, "params": sum(p.numel() for p in ours.parameters())}

    with torch.no_grad():
        their_logits, _ = theirs(ids, labels)  # eval: logits at the class position and every token
        our_logits = ours(ids[:, :-1], labels)
    their_logits = their_logits[:, :length]
    difference = (their_logits - our_logits).abs().max().item()
    result["teacher_forced_max_abs_logit_difference"] = difference
    result["teacher_forced_logit_scale"] = their_logits.abs().max().item()
    result["teacher_forced_argmax_agreement"] = (their_logits.argmax(-1) == our_logits.argmax(-1)).float().mean().item()
    print(f"teacher-forced logits: max |difference| {difference:.2e} (logits up to {result['teacher_forced_logit_scale']:.1f}), "
          f"argmax agreement {result['teacher_forced_argmax_agreement']:.4f}", flush=True)

    start = time.perf_counter()
    their_tokens = generate(theirs, labels, length, cfg_scale=args.cfg_scale, temperature=1.0, top_k=1, top_p=1.0)
    result["llamagen_generate_seconds"] = time.perf_counter() - start
    config = SamplerConfig(cfg_scale=args.cfg_scale, top_k=1)
    start = time.perf_counter()
    our_tokens = sample_raster(ours, labels, config, torch.Generator().manual_seed(0)).ids
    result["artok_sample_raster_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    engine_tokens = SamplingEngine(ours, args.batch).sample(labels, config, torch.Generator().manual_seed(0)).ids
    result["artok_engine_seconds"] = time.perf_counter() - start
    result["greedy_cfg_tokens_equal_plain"] = (their_tokens.long() == our_tokens).float().mean().item()
    result["greedy_cfg_tokens_equal_engine"] = (their_tokens.long() == engine_tokens).float().mean().item()
    print(f"greedy decoding with CFG {args.cfg_scale}: artok plain loop matches LlamaGen's generate() on "
          f"{result['greedy_cfg_tokens_equal_plain']:.4f} of tokens, the engine on {result['greedy_cfg_tokens_equal_engine']:.4f}; "
          f"CPU seconds: LlamaGen {result['llamagen_generate_seconds']:.1f}, artok plain {result['artok_sample_raster_seconds']:.1f}, "
          f"engine {result['artok_engine_seconds']:.1f}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
