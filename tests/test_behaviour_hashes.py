"""The behaviour fingerprint (``benchmarks/behaviour_hashes.py``) still matches the stored one.

``tests/fixtures/behaviour_hashes.json`` holds the exact outputs (sha256 of tensors, loss reprs) of
every tokenizer kind and every generator kind x sampler on CPU for fixed seeds, recorded before the
code was restructured. A failure lists each case whose output changed. If files moved, add the new
module paths to the script's ``IMPORT_CANDIDATES``; re-record the fixture only for an intended
behaviour change (``benchmarks/behaviour_hashes.py --out tests/fixtures/behaviour_hashes.json``).
The whole set runs in a few seconds on one thread, so every case is checked in the default run.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "behaviour_hashes.py"
FIXTURE = ROOT / "tests" / "fixtures" / "behaviour_hashes.json"


def load_script():
    """The benchmark script as a module (benchmarks/ is not a package)."""
    name = "behaviour_hashes_script"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script():
    return load_script()


@pytest.fixture(scope="module")
def stored() -> dict[str, str]:
    return json.loads(FIXTURE.read_text())


def test_every_import_candidate_table_entry_resolves(script):
    for name in script.IMPORT_CANDIDATES:
        assert script.resolve(name) is not None, name


def test_a_moved_name_resolves_through_a_later_candidate(script, monkeypatch):
    """After a move the old path fails to import; the next candidate in the table is used."""
    candidates = {**script.IMPORT_CANDIDATES, "sample": ["artok.moved_away:sample", *script.IMPORT_CANDIDATES["sample"]]}
    monkeypatch.setattr(script, "IMPORT_CANDIDATES", candidates)
    monkeypatch.setattr(script, "_resolved", {})
    assert callable(script.resolve("sample"))
    monkeypatch.setattr(script, "IMPORT_CANDIDATES", {"sample": ["artok.moved_away:sample"]})
    monkeypatch.setattr(script, "_resolved", {})
    with pytest.raises(ImportError, match="IMPORT_CANDIDATES"):
        script.resolve("sample")


def test_fixture_covers_every_case(script, stored):
    assert sorted(stored) == list(script.all_cases())
    assert len(stored) >= 30
    assert not [name for name, value in stored.items() if value.startswith("error: ")]


def test_every_case_matches_the_fixture(script, stored):
    lines = script.differences(script.compute(), stored)
    assert not lines, "behaviour changed:\n" + "\n".join(lines)


def test_check_mode_reports_a_changed_case(script, stored, tmp_path, capsys):
    """``--check`` exits 0 on a match and 1 naming the case on a difference (one fast case)."""
    prefix = "tokenizer/cnn-vq/"
    assert script.main(["--check", str(FIXTURE), "--only", prefix]) == 0
    altered = {**stored, f"{prefix}encode": "0" * 64}
    changed = tmp_path / "altered.json"
    changed.write_text(json.dumps(altered))
    assert script.main(["--check", str(changed), "--only", prefix]) == 1
    assert f"CHANGED  {prefix}encode" in capsys.readouterr().out
