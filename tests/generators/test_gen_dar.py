"""The d-ar kind: a raster GPT over D-AR's 1D token sequence (built from a dar tokenizer with its
groups, refusing grids), raster's tokens for a seed, previews of the prefixes reported during
sampling at the group ends, the loss falling, and the command line (train-tokenizer --arch dar,
train-generator --generator d-ar, sample, bench)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from artok_test_helpers import TOKENIZERS, fast_sampler, structured_tokens, tiny_dar_tokenizer

from artok.cli.main import main
from artok.generators import IncompatibleTokensError
from artok.generators.dar import DARConfig, DARGenerator
from artok.generators.dar.sample import sample_dar, sample_with_previews
from artok.generators.raster.sample import sample_raster
from artok.hub import from_pretrained
from artok.zoo import build_generator, kind_of, sample

SMALL = {"dim": 32, "depth": 2, "num_heads": 2}


def _generator(tokenizer=None, **options) -> DARGenerator:
    torch.manual_seed(0)
    return build_generator("d-ar", tokenizer or tiny_dar_tokenizer(), num_classes=3, **{**SMALL, **options}).eval()


def test_the_row_builds_a_sequence_gpt_with_the_tokenizers_groups():
    generator = _generator(tiny_dar_tokenizer(num_groups=2))
    assert type(generator) is DARGenerator and kind_of(generator).name == "d-ar"
    assert generator.config.num_groups == 2 and generator.group_ends() == [4, 8]
    assert not generator.config.rope_2d  # 1D rotary positions over the sequence
    assert _generator(TOKENIZERS["dar"](), num_groups=8).group_ends() == list(range(1, 9))
    with pytest.raises(IncompatibleTokensError, match="Use a dar"):
        build_generator("d-ar", TOKENIZERS["vq"](), num_classes=3, **SMALL)  # a grid is plain raster
    with pytest.raises(ValueError, match="num_groups must divide"):
        _generator(num_groups=3)
    with pytest.raises(ValueError, match="categorical head only"):
        DARConfig(token_spec=generator.config.token_spec, head="bitwise")


@pytest.mark.parametrize("cfg_scale", [1.0, 2.0])
def test_tokens_are_raster_tokens_for_a_seed(cfg_scale):
    generator = _generator()
    config = replace(fast_sampler(generator), cfg_scale=cfg_scale)
    labels = torch.tensor([0, 2, 1])
    raster = sample_raster(generator, labels, config, torch.Generator().manual_seed(4))
    seen = []
    dar = sample_dar(generator, labels, config, torch.Generator().manual_seed(4),
                     on_prefix=lambda k, tokens: seen.append((k, tokens)))
    assert torch.equal(dar.ids, raster.ids)
    assert [k for k, _ in seen] == [2, 4, 6, 8]  # the ends of the 4 groups
    for k, tokens in seen:  # each prefix, as generated so far
        assert tokens.spec.length == k and torch.equal(tokens.ids, dar.ids[:, :k])


def test_chosen_preview_lengths_and_errors():
    generator = _generator()
    config, labels = fast_sampler(generator), torch.tensor([1])
    seen = []
    sample_dar(generator, labels, config, torch.Generator().manual_seed(0), preview_lengths=[5, 1, 5],
               on_prefix=lambda k, tokens: seen.append(k))
    assert seen == [1, 5]
    with pytest.raises(ValueError, match=r"preview lengths must be in \[1, 8\]"):
        sample_dar(generator, labels, config, None, preview_lengths=[0], on_prefix=print)


def test_previews_decode_every_prefix_and_the_last_is_the_image():
    torch.manual_seed(0)
    tokenizer = tiny_dar_tokenizer()
    with torch.no_grad():  # larger weights, so that previews differ clearly
        for parameter in tokenizer.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    generator = _generator(tokenizer)
    config, labels = fast_sampler(generator, cfg_scale=1.5), torch.tensor([0, 1])
    tokens, previews = sample_with_previews(generator, labels, config, torch.Generator().manual_seed(1),
                                            decode=lambda prefix, k: tokenizer.decode(prefix))
    assert sorted(previews) == [2, 4, 6, 8] and all(p.shape == (2, 1, 8, 8) for p in previews.values())
    assert torch.equal(previews[8], tokenizer.decode(tokens))
    assert torch.equal(previews[4], tokenizer.decode(tokens, num_tokens=4))
    assert not torch.allclose(previews[2], previews[8])


def test_loss_falls(fit):
    generator = _generator()
    labels = torch.arange(3).repeat(4)
    tokens = structured_tokens(generator.spec, labels)
    losses = fit(generator, tokens, labels, steps=30)
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5])
    assert torch.equal(sample(generator, labels[:2], fast_sampler(generator), torch.Generator().manual_seed(2)).ids,
                       sample(generator, labels[:2], fast_sampler(generator), torch.Generator().manual_seed(2),
                              engine=True).ids)


def test_command_line_trains_samples_and_benchmarks_d_ar(tmp_path):
    tokenizer, generator = tmp_path / "tok", tmp_path / "gen"
    assert main(["train-tokenizer", "--arch", "dar", "--dataset", "digits", "--out", str(tokenizer), "--steps", "2",
                 "--num-tokens", "8", "--dim", "32", "--no-progress"]) == 0
    assert main(["train-generator", "--tokenizer", str(tokenizer), "--generator", "d-ar", "--out", str(generator),
                 "--steps", "4", "--dim", "32", "--depth", "1", "--heads", "2", "--no-progress"]) == 0
    config = json.loads((generator / "config.json").read_text())
    assert config["model_type"] == "d_ar" and config["config"]["num_groups"] == 4
    assert type(from_pretrained(generator)) is DARGenerator
    assert main(["sample", "--generator", str(generator), "--labels", "0,1", "--per-label", "1",
                 "--out", str(tmp_path / "d-ar.png"), "--no-progress"]) == 0
    assert (tmp_path / "d-ar.png").is_file()
    bench = tmp_path / "bench.json"
    assert main(["bench", "--checkpoint", str(generator), "--batch-sizes", "1", "--out", str(bench),
                 "--no-progress"]) == 0
    assert json.loads(bench.read_text())["rows"][0]["images_per_s"] > 0
    assert main(["train-generator", "--tokenizer", str(tokenizer), "--generator", "d-ar", "--out", str(tmp_path / "x"),
                 "--generator-options", '{"num_groups": 3}', "--no-progress"]) == 2


def test_previews_benchmark_runs_end_to_end(tmp_path):
    """``benchmarks/dar_previews.py`` at a few steps: PSNR per prefix, the grid and the JSON."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "dar_previews.py"
    spec = importlib.util.spec_from_file_location("dar_previews", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--out", str(tmp_path), "--steps", "2", "--gen-steps", "2", "--eval-images", "8",
                        "--gen-images", "32", "--dim", "32", "--gen-dim", "32", "--gen-depth", "1",
                        "--decode-steps", "4"]) == 0
    report = json.loads((tmp_path / "dar_previews.json").read_text())
    assert list(report["reconstruction"])[:4] == ["4/16", "8/16", "12/16", "16/16"]
    assert report["sampling"]["preview_lengths"] == [4, 8, 12, 16] and (tmp_path / "previews.png").is_file()
