"""A converted MAR generator and a converted MAR KL-16 autoencoder (state dicts with the published key
names, made here: no peer code) go from checkpoint files to a PNG in two `artok convert` calls and one
`artok sample` (the converted model's own sampling numerics are checked in test_convert_mar.py)."""

import argparse

import numpy as np
import torch
from PIL import Image
from test_convert_kl import ldm_state
from test_convert_kl import tokenizer as kl_tokenizer  # noqa: F401 - the fixture
from test_convert_mar import generator as mar_generator  # noqa: F401 - the fixture
from test_convert_mar import mar_named

from artok.cli.main import main


def test_mar_checkpoint_and_kl16_to_png(mar_generator, kl_tokenizer, tmp_path, capsys):  # noqa: F811
    torch.save({"model": ldm_state(kl_tokenizer)}, tmp_path / "kl16.ckpt")
    torch.save({"model": mar_named(mar_generator), "model_ema": mar_named(mar_generator),
                "args": argparse.Namespace(model="mar_tiny")}, tmp_path / "checkpoint-last.pth")
    assert main(["convert", "mar-vae", str(tmp_path / "kl16.ckpt"), str(tmp_path / "vae"), "--image-size", "16"]) == 0
    assert main(["convert", "mar", str(tmp_path / "checkpoint-last.pth"), str(tmp_path / "mar"), "--num-heads", "2"]) == 0
    capsys.readouterr()
    png = tmp_path / "grid.png"
    assert main(["sample", "--generator", str(tmp_path / "mar"), "--tokenizer", str(tmp_path / "vae"), "--labels", "0,3",
                 "--per-label", "2", "--iterations", "3", "--sampling-steps", "4", "--cfg-scale", "2.0", "--out", str(png),
                 "--no-progress"]) == 0
    image = np.asarray(Image.open(png))
    assert image.ndim == 3 and image.shape[-1] == 3 and image.shape[0] >= 2 * 16 and image.std() > 0
