"""The floor plan's rules, checked: no import circle in src/artok (``python
tests/architecture/import_graph.py`` prints them), hub.py and the models never import the kind
table or a model package they do not build on, and no source file over 500 lines."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location("import_graph", Path(__file__).with_name("import_graph.py"))
import_graph = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(import_graph)

GRAPH = import_graph.import_graph()
MODEL_PACKAGES = ("artok.generators", "artok.tokenizers", "artok.heads", "artok.quantizers")


def test_no_import_cycles():
    assert import_graph.cycles(GRAPH) == []


def test_hub_imports_no_model():
    imported = GRAPH["artok.hub"]
    assert not [name for name in imported if name.startswith(MODEL_PACKAGES) or name == "artok.zoo"], imported


def test_models_never_import_the_kind_table_or_the_cli():
    for module, imported in GRAPH.items():
        if module.startswith(MODEL_PACKAGES + ("artok.sampling", "artok.nn")):
            bad = sorted(name for name in imported if name in ("artok.zoo", "artok.pipeline") or name.startswith("artok.cli"))
            assert not bad, f"{module} imports {bad}"


def test_shared_sampling_code_never_imports_a_kind():
    """sampling/ holds what several kinds share; each kind's own samplers live in its folder."""
    for module, imported in GRAPH.items():
        if module.startswith("artok.sampling"):
            bad = sorted(name for name in imported if name.startswith("artok.generators"))
            assert not bad, f"{module} imports {bad}"


def test_no_source_file_over_500_lines():
    long = {str(path.relative_to(import_graph.PACKAGE)): count for path in import_graph.PACKAGE.rglob("*.py")
            if (count := len(path.read_text().splitlines())) > 500}
    assert not long, f"split these files: {long}"
