# Two commands for a newcomer: `make demo` and `make test`. Both create .venv when missing and
# install everything (the core plus the `stack`, `plot` and `dev` extras) at the versions in
# constraints.txt. A GPU worker needs only the core: pip install -c constraints.txt reelflow
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast screenshots constraints bench bench-gpu bench-gpu-device up down

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# torch first, pinned to the CPU build, so nothing pulls CUDA wheels.
	$(BIN)/python -m pip install --quiet -c constraints.txt "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[stack,plot,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/reelflow up
	$(BIN)/reelflow render examples/su7-winter-spring.yaml --auto-approve --profile previz --out out

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The unit tests alone (no servers: tests/support/levels.py enforces it), slowest listed.
test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -m unit --durations=15 $(PYTEST_ARGS)

# Refresh docs/ui-*.png on purpose (the UI test writes them under its tmp folder otherwise).
screenshots: $(STAMP)
	REELFLOW_SCREENSHOTS=docs $(BIN)/python -m pytest -q tests/test_ui_browser.py

# Re-pin constraints.txt from this .venv (after a change to pyproject.toml's dependencies).
constraints: $(STAMP)
	{ sed -n '1,/^[^#]/{/^#/p}' constraints.txt; \
	  $(BIN)/python -m pip freeze --exclude-editable | sed 's/+cpu$$//'; } > constraints.tmp
	mv constraints.tmp constraints.txt

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

# The GPU section alone (on a CUDA machine; elsewhere it says "no CUDA" and exits 0).
bench-gpu: $(STAMP)
	$(BIN)/python -m bench --only gpu $(BENCH_ARGS)

# The same on a lent GPU machine in one call (its own CUDA torch; report and log under $OUT).
bench-gpu-device:
	bash bench/gpu_device.sh

up: $(STAMP)
	$(BIN)/reelflow up

down: $(STAMP)
	$(BIN)/reelflow down
