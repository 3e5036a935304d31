# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO_WORKDIR ?= workdirs/demo
PYTEST_ARGS ?=

.PHONY: venv demo test test-fast lint parity bench clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

venv: $(VENV)/.installed

# Train on a generated synthetic SIPaKMeD, then explain a few test images of the best checkpoint
# with integrated gradients and with the network's own channel attention (same images, same scores).
demo: venv
	$(PY) main.py --config=configs/rca.py:demo --workdir=$(DEMO_WORKDIR)
	$(PY) tools/attribute.py --workdir=$(DEMO_WORKDIR) --method=ig --steps=48 \
	  --baseline=uniform --num_baselines=3 --num_images=6 --out=$(DEMO_WORKDIR)/attributions
	$(PY) tools/attribute.py --workdir=$(DEMO_WORKDIR) --method=attention --num_images=6 \
	  --out=$(DEMO_WORKDIR)/attributions_attention

test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: venv
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .

parity: venv
	$(PY) -m pip install -q -r requirements-parity.txt
	$(PY) -m pytest tests/models/test_torchvision_parity.py

bench: venv
	$(PY) bench/train_step.py --model=resnet50
	$(PY) bench/attribution.py --model=resnet50
	$(PY) bench/input_pipeline.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
