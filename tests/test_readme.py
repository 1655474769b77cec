"""The README's library example runs (with its step counts shrunk so the test stays fast)."""

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    code = re.sub(r"steps=\d+", "steps=3", blocks[0])
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    images = namespace["images"]
    assert images.shape == (10, 1, 16, 16)
    assert torch.all(images.abs() <= 1)


def test_readme_fast_sampling_example_runs():
    """The "Fast sampling" example, with tiny random models standing in for a trained generator and draft."""
    from artok.presets import get_preset

    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    code = blocks[1].replace("top_k=2000", "top_k=16")
    torch.manual_seed(0)
    namespace = {"torch": torch, "generator": get_preset("tiny").build(), "draft": get_preset("tiny").build(),
                 "labels": torch.arange(3)}
    exec(compile(code, str(README), "exec"), namespace)
    assert namespace["tokens"].ids.shape == (3, 16) and namespace["out"].stats.mean_accepted >= 1
