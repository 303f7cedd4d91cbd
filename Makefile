# Two commands set up everything on a fresh machine:
#   make demo   create .venv, install, train + evaluate on the embedded demo dataset
#   make test   create .venv, install dev extras, run the test suite
#   make test-fast   the tests not marked slow (minutes; no system packages installed)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev
DEMO_DATA ?= data/demo
DEMO_OUT  ?= outputs/demo
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl
export HF_HUB_OFFLINE ?= 1
export WANDB_SILENT ?= true
# torch's OpenMP workers sleep instead of spinning between calls (matters on 2-core machines)
export OMP_WAIT_POLICY ?= PASSIVE

RL_OUT ?= outputs/bench-rl

.PHONY: demo test test-fast bench bench-rl proto sysdeps clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

sysdeps:
	bash scripts/sysdeps.sh --with-browser

demo: $(STAMP)
	rm -rf $(DEMO_OUT)/train
	$(VENV)/bin/hilreward inspect dataset.root=$(DEMO_DATA) output_dir=$(DEMO_OUT)/inspect
	$(VENV)/bin/hilreward train dataset.root=$(DEMO_DATA) model=scratch output_dir=$(DEMO_OUT)/train
	$(VENV)/bin/hilreward eval checkpoint=$(DEMO_OUT)/train/checkpoints/best dataset.root=$(DEMO_DATA) \
		heldout=true output_dir=$(DEMO_OUT)/eval

test: $(STAMP) sysdeps
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q

# The quick tier while working: every test not marked slow, and the layer contract (no apt, no sysdeps).
test-fast: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(PY) bench/run_all.py

# RL on the reward (hours on a 2-core CPU; a killed run resumes): SAC with each arm's reward, then the report
bench-rl: $(STAMP)
	nice -n 10 $(PY) bench/bench_rl.py run --out $(RL_OUT)
	$(PY) bench/bench_rl.py report --out $(RL_OUT) --json bench/results/rl-$$(date +%F).json --doc

proto: $(STAMP)
	$(PY) -m grpc_tools.protoc -I src --python_out=src --pyi_out=src --grpc_python_out=src \
		src/hilreward/serving/protos/hilreward.proto

clean:
	rm -rf $(VENV) outputs .pytest_cache
