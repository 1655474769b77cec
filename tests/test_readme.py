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
