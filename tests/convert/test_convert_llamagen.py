"""LlamaGen checkpoints -> artok raster generators.

The state dicts here are made in the test with LlamaGen's parameter names and shapes (no LlamaGen
code): an artok generator's weights renamed the LlamaGen way must convert back to the same model.
Numerical parity with LlamaGen's own model code is checked by ``benchmarks/llamagen_parity.py``
(needs a clone of LlamaGen: teacher-forced logits within 2e-6, greedy CFG decoding token-identical)."""

import dataclasses

import pytest
import torch

from artok.cli.main import main
from artok.convert.llamagen import convert_state_dict, load_llamagen
from artok.generators import RasterConfig, RasterGenerator
from artok.generators.raster.sample import sample_raster
from artok.hub import from_pretrained
from artok.sampling.configs import SamplerConfig
from artok.tokens import TokenSpec


def _llamagen_named(generator: RasterGenerator) -> dict:
    """The generator's weights under LlamaGen's names (the inverse of the converter's mapping)."""
    state, out = generator.state_dict(), {}
    out["tok_embeddings.weight"] = state["token_embedding.weight"]
    out["cls_embedding.embedding_table.weight"] = state["class_embedding.weight"]
    out["norm.weight"] = state["norm.weight"]
    out["output.weight"] = state["head.proj.weight"]
    for i in range(generator.config.depth):
        gate, up = state[f"blocks.{i}.ffn.gate_up.weight"].chunk(2)
        out[f"layers.{i}.attention.wqkv.weight"] = state[f"blocks.{i}.attention.qkv.weight"]
        out[f"layers.{i}.attention.wo.weight"] = state[f"blocks.{i}.attention.proj.weight"]
        out[f"layers.{i}.feed_forward.w1.weight"] = gate
        out[f"layers.{i}.feed_forward.w3.weight"] = up
        out[f"layers.{i}.feed_forward.w2.weight"] = state[f"blocks.{i}.ffn.down.weight"]
        out[f"layers.{i}.attention_norm.weight"] = state[f"blocks.{i}.attention_norm.weight"]
        out[f"layers.{i}.ffn_norm.weight"] = state[f"blocks.{i}.ffn_norm.weight"]
    return out


@pytest.fixture
def llamagen_like():
    """A small generator in LlamaGen's configuration (zero class rotation, eps 1e-5, width 768 is not
    needed: heads are given)."""
    torch.manual_seed(0)
    spec = TokenSpec("discrete", "grid", grid=(4, 4), vocab_size=64)
    config = RasterConfig(token_spec=spec.to_dict(), num_classes=5, dim=64, depth=2, num_heads=2, hidden_dim=96,
                          rope_prefix="zero", norm_eps=1e-5, class_dropout=0.0)
    return RasterGenerator(config).eval()


def test_round_trip_through_llamagen_names(llamagen_like, tmp_path):
    state = _llamagen_named(llamagen_like)
    path = tmp_path / "c2i_tiny.pt"
    torch.save({"model": state, "steps": 10}, path)  # LlamaGen keeps the weights under "model"
    converted = load_llamagen(path, grid=(4, 4), num_heads=2)
    assert converted.config.rope_prefix == "zero" and converted.config.norm_eps == 1e-5
    assert converted.config.hidden_dim == 96 and converted.config.num_classes == 5
    for key, value in llamagen_like.state_dict().items():
        assert torch.equal(converted.state_dict()[key], value), key
    config = SamplerConfig(cfg_scale=3.0, top_k=8)
    a = sample_raster(llamagen_like, torch.tensor([0, 4]), config, torch.Generator().manual_seed(0)).ids
    b = sample_raster(converted, torch.tensor([0, 4]), config, torch.Generator().manual_seed(0)).ids
    assert torch.equal(a, b)


def test_zero_class_rotation_zeroes_the_class_query_and_key(llamagen_like):
    """LlamaGen's table is zero at the class position: the class key contributes a zero score, so the
    model differs from the identity-rotation one (the converter must set it)."""
    assert torch.equal(llamagen_like.rope[0], torch.zeros_like(llamagen_like.rope[0]))
    identity = RasterGenerator(dataclasses.replace(llamagen_like.config, rope_prefix="identity"))
    identity.load_state_dict(llamagen_like.state_dict())
    ids, labels = torch.randint(64, (2, 15)), torch.tensor([1, 2])
    assert not torch.allclose(identity.eval()(ids, labels), llamagen_like(ids, labels))


def test_cli_convert_writes_an_artok_folder(llamagen_like, tmp_path, capsys):
    path = tmp_path / "c2i.pt"
    torch.save(_llamagen_named(llamagen_like), path)
    assert main(["convert", "llamagen", str(path), str(tmp_path / "out"), "--grid", "4", "--num-heads", "2"]) == 0
    assert "2 layers, width 64, 2 heads" in capsys.readouterr().out
    loaded = from_pretrained(tmp_path / "out")
    assert loaded.config == convert_state_dict(_llamagen_named(llamagen_like), (4, 4), 2).config


def test_bad_checkpoints_are_refused_with_the_reason(llamagen_like, tmp_path, capsys):
    state = _llamagen_named(llamagen_like)
    with pytest.raises(ValueError, match="pass num_heads"):  # width 64 is not a LlamaGen size
        convert_state_dict(state, (4, 4))
    gqa = dict(state, **{"layers.0.attention.wqkv.weight": torch.zeros(128, 64)})
    with pytest.raises(ValueError, match="grouped-query"):
        convert_state_dict(gqa, (4, 4), 2)
    with pytest.raises(ValueError, match="text-conditional"):
        convert_state_dict(dict(state, **{"cls_embedding.cap_proj.fc1.weight": torch.zeros(1)}), (4, 4), 2)
    with pytest.raises(ValueError, match="do not fit"):  # wrong grid: fine, but a missing layer is not
        convert_state_dict({k: v for k, v in state.items() if k != "layers.1.ffn_norm.weight"}, (4, 4), 2)
    (tmp_path / "code.pt").write_bytes(b"not a checkpoint")
    assert main(["convert", "llamagen", str(tmp_path / "code.pt"), str(tmp_path / "o")]) == 2
    assert "not a weights-only PyTorch file" in capsys.readouterr().err
    torch.save({"something": torch.zeros(1)}, tmp_path / "other.pt")
    assert main(["convert", "llamagen", str(tmp_path / "other.pt"), str(tmp_path / "o")]) == 2
    assert "does not hold a LlamaGen GPT state dict" in capsys.readouterr().err
    assert main(["convert", "llamagen", str(tmp_path / "missing.pt"), str(tmp_path / "o")]) == 2
