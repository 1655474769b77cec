"""Adding a kind is one row: a toy kind (a few lines of model and sample function) registered in
`artok.zoo.KINDS` trains, saves, samples and evaluates through the command line with no other
edit anywhere."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from artok.cli.main import main
from artok.generators.base import Generator, GeneratorConfig, IncompatibleTokensError
from artok.hub import register_model
from artok.tokens import Tokens
from artok.zoo import KINDS, Kind, kind_of, register_kind, sample


@dataclass
class ToyConfig(GeneratorConfig):
    """Independent per-position categorical tokens given the class."""

    token_spec: dict
    num_classes: int
    dim: int = 16
    depth: int = 1
    num_heads: int = 1
    dropout: float = 0.0
    class_dropout: float = 0.1


@register_model("toy_test_kind")
class ToyGenerator(Generator):
    config_class = ToyConfig

    def __init__(self, config: ToyConfig) -> None:
        super().__init__()
        self.config = config
        self.table = nn.Parameter(torch.zeros(config.num_classes + 1, config.spec.seq_len, config.spec.vocab_size))

    @classmethod
    def check_spec(cls, spec) -> None:
        if spec.kind != "discrete":
            raise IncompatibleTokensError("the toy kind models discrete tokens")

    def logits(self, labels: torch.Tensor) -> torch.Tensor:
        return self.table[labels]

    def loss(self, tokens: Tokens, cond: torch.Tensor) -> dict:
        logits = self.logits(self.drop_labels(cond))
        return {"loss": F.cross_entropy(logits.flatten(0, 1), tokens.ids.flatten())}


def sample_toy(generator, labels, config, rng):
    probs = torch.softmax(generator.logits(labels) / config.temperature, dim=-1)
    ids = torch.multinomial(probs.flatten(0, 1), 1, generator=rng).view(labels.shape[0], -1)
    return Tokens(generator.spec, ids=ids)


@pytest.fixture
def toy_kind():
    register_kind(Kind("toy", ToyGenerator, ToyConfig, sampler="raster", sample=sample_toy, description="a test kind"))
    yield KINDS["toy"]
    del KINDS["toy"]


def test_a_registered_kind_trains_saves_samples_and_evaluates_from_the_cli(toy_kind, tmp_path, capsys):
    tokenizer, generator = tmp_path / "tok", tmp_path / "gen"
    assert main(["train-tokenizer", "--dataset", "digits", "--out", str(tokenizer), "--base-channels", "8",
                 "--steps", "2", "--no-progress"]) == 0
    assert main(["train-generator", "--tokenizer", str(tokenizer), "--generator", "toy", "--out", str(generator),
                 "--steps", "30", "--lr", "0.1", "--no-progress"]) == 0
    assert json.loads((generator / "config.json").read_text())["model_type"] == "toy_test_kind"
    assert main(["sample", "--generator", str(generator), "--labels", "0,1", "--per-label", "2",
                 "--out", str(tmp_path / "toy.png"), "--no-progress"]) == 0
    assert (tmp_path / "toy.png").stat().st_size > 0
    assert main(["eval", "--generator", str(generator), "--samples-per-class", "2", "--no-progress"]) == 0
    assert '"generator.class_accuracy"' in capsys.readouterr().out
    assert main(["options", "toy"]) == 0
    bench = tmp_path / "bench.json"
    assert main(["bench", "--checkpoint", str(generator), "--batch-sizes", "1,2", "--out", str(bench),
                 "--no-progress"]) == 0
    rows = json.loads(bench.read_text())["rows"]
    assert [row["batch_size"] for row in rows] == [1, 2] and all(row["images_per_s"] > 0 for row in rows)


def test_a_registered_kind_samples_through_the_table(toy_kind):
    from artok.tokens import TokenSpec

    spec = TokenSpec("discrete", "grid", grid=(2, 2), vocab_size=5)
    generator = ToyGenerator(ToyConfig(token_spec=spec.to_dict(), num_classes=3)).eval()
    assert kind_of(generator) is toy_kind
    a = sample(generator, torch.tensor([0, 2]), None, torch.Generator().manual_seed(1))
    b = sample(generator, torch.tensor([0, 2]), None, torch.Generator().manual_seed(1))
    assert torch.equal(a.ids, b.ids) and a.ids.shape == (2, 4)
