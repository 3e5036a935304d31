# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO_WORKDIR ?= workdirs/demo
STUDY_WORKDIR ?= workdirs/study_demo
# Tests run in parallel processes (pytest-xdist), one module per process at a time so that a
# module's fixtures (a trained tiny model) are built once; PYTEST_ARGS= runs them in one process.
PYTEST_ARGS ?= -n auto --maxprocesses=4 --dist=loadscope

.PHONY: venv demo study-demo test test-fast lint parity bench clean

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

# The paper's study (tools/study.py) end to end, small: the four architectures (tiny variants)
# x full/cropped/masked x 2 of 3 folds on a synthetic SIPaKMeD at 32 px, each run explained
# with IG (16 steps x 2 baselines, 16 test images), then study.json/.md/.html.
study-demo: venv
	$(PY) tools/study.py --workdir=$(STUDY_WORKDIR) --config=configs/default.py:demo \
	  --models=resnet50_tiny,attention92_tiny,densenet121_tiny,densenet121_rca_tiny \
	  --variants=full,cropped,masked --folds=3 --run_folds=0,1 \
	  --config.data.synthetic_images_per_class=12 --config.data.image_size=32 \
	  --config.data.num_workers=0 --config.num_epochs=4 \
	  --config.optim.schedule=constant --config.optim.warmup_epochs=0 \
	  --ig_steps=16 --ig_baselines=2 --explain_images=16

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
