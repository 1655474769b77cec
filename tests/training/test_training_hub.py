"""save_pretrained / from_pretrained round trips."""

import json

import pytest
import torch

from artok.generators.raster.sample import sample_raster
from artok.hub import from_pretrained, save_pretrained
from artok.sampling.configs import SamplerConfig


def test_generator_round_trip(tiny_generator, tmp_path):
    save_pretrained(tiny_generator, tmp_path / "g", extra={"sampling": SamplerConfig(cfg_scale=2.0).to_dict()})
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["config.json", "model.safetensors"]
    loaded = from_pretrained(tmp_path / "g")
    assert type(loaded) is type(tiny_generator) and loaded.config == tiny_generator.config
    assert loaded.extra["sampling"]["cfg_scale"] == 2.0
    labels = torch.tensor([0, 1, 2])
    a = sample_raster(tiny_generator, labels, SamplerConfig(), torch.Generator().manual_seed(0)).ids
    b = sample_raster(loaded, labels, SamplerConfig(), torch.Generator().manual_seed(0)).ids
    assert torch.equal(a, b)


def test_tokenizer_round_trip(tiny_tokenizer, tmp_path):
    tiny_tokenizer.eval()
    save_pretrained(tiny_tokenizer, tmp_path / "t")
    loaded = from_pretrained(tmp_path / "t")
    images = torch.rand(2, 1, 8, 8) * 2 - 1
    assert torch.equal(tiny_tokenizer.encode(images).ids, loaded.encode(images).ids)
    for key, value in tiny_tokenizer.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


def test_bad_directories(tmp_path, tiny_generator):
    with pytest.raises(FileNotFoundError, match="not an artok model directory"):
        from_pretrained(tmp_path)
    save_pretrained(tiny_generator, tmp_path / "g")
    config = json.loads((tmp_path / "g" / "config.json").read_text())
    config["model_type"] = "os.system"
    (tmp_path / "g" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="unknown model_type"):
        from_pretrained(tmp_path / "g")
