# Two commands a newcomer runs first: `make demo` and `make test`.
# Each creates/reuses .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.artok-installed

.PHONY: demo test venv clean bench app

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# Install the CPU build of torch first (a plain `torch` requirement would pull a CUDA build).
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	# torch-fidelity: the reference of tests/evaluation/test_inception_parity.py; --no-deps because its
	# torchvision requirement does not install with this torch (the modules the test loads do not use it).
	$(PY) -m pip install -q --no-deps torch-fidelity==0.4.0
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/artok demo

app: $(STAMP)
	$(VENV)/bin/artok app --generator runs/demo/generator

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf $(VENV) runs
