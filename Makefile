# Two-command quick start: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install system-deps kube-apiserver run test test-fast lint proto bench bench-scale clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	@# xds-protos ships an older copy of the opentelemetry/proto modules; whichever package pip
	@# installs last wins, so reinstall opentelemetry-proto to make its (newer) files win.
	$(PY) -m pip install --quiet --force-reinstall --no-deps "$$(grep -o 'opentelemetry-proto==[0-9.]*' pyproject.toml)"
	@touch $(STAMP)

install: $(STAMP)

## Control plane (gRPC :10246, REST :10247) on the embedded store + a demo app it governs.
run: $(STAMP)
	$(PY) scripts/run_demo.py

## Regenerate src/opensergo/proto from proto/ (a test fails when they differ).
proto: $(STAMP)
	$(PY) scripts/gen_proto.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests scripts examples benchmarks interop
	$(VENV)/bin/ruff format --check src tests scripts examples benchmarks interop
	$(VENV)/bin/mypy

## Debian packages the tests run for real (etcd, ...); installs only what is missing.
system-deps:
	scripts/system-deps.sh

## A real kube-apiserver for the Kubernetes store tests: built from Go modules the first time
## (about 5 minutes on 2 cores, progress shown), then cached in ~/.cache/opensergo.
kube-apiserver:
	@scripts/build-kube-apiserver.sh >/dev/null

## Every test layer, after lint and type checks.
test: lint system-deps kube-apiserver
	$(PY) -m pytest -q

## The unit layer only (seconds).
test-fast: $(STAMP)
	$(PY) -m pytest -q -m unit

## Our figures beside peer libraries', same data, same run (guards, routing, rule fan-out).
bench: $(STAMP)
	$(PY) benchmarks/run.py
	$(PY) benchmarks/routing.py
	$(PY) benchmarks/ack_latency.py 100 50
	$(PY) benchmarks/cluster.py
	$(PY) benchmarks/database.py

## One control-plane replica with 1,000 / 5,000 / 10,000 subscriber streams.
bench-scale: $(STAMP)
	$(PY) benchmarks/scale.py 1000 5000 10000

clean:
	rm -rf $(VENV) .opensergo .pytest_cache .mypy_cache .ruff_cache
