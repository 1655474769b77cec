"""The README's examples run: every python block in order (one namespace, step counts shrunk so
the test stays fast), and every ``artok`` command it names exists."""

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_python_examples_run_in_order():
    blocks = _blocks()
    assert len(blocks) >= 2, "README has lost its python examples"
    namespace: dict = {}
    for block in blocks:
        code = re.sub(r"steps=\d+", "steps=3", block).replace("top_k=2000", "top_k=16")
        exec(compile(code, str(README), "exec"), namespace)
    images = namespace["images"]
    assert images.shape == (10, 1, 16, 16) and torch.all(images.abs() <= 1)
    assert namespace["tokens"].ids.shape == (10, 16) and namespace["out"].stats.mean_accepted >= 1


def test_readme_commands_exist():
    from artok.cli.main import build_parser

    commands = set(re.findall(r"`artok ([a-z][a-z-]+)", README.read_text()))
    known = set(build_parser().subcommands)
    missing = sorted(commands - known)
    assert not missing, f"README names commands that do not exist: {missing}"


@pytest.mark.parametrize("link", re.findall(r"\]\(([^)#]+)\)", README.read_text()))
def test_readme_links_point_inside_the_repository(link):
    if link.startswith("http"):
        return
    assert (README.parent / link).exists(), link
