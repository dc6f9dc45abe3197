# Two-command quick start: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

# Every extra: the venv runs the control plane on each store, the SDK's OTLP export and the tests.
EXTRAS := controlplane,etcd,kubernetes,otel,database,sidecar,dev,bench

.PHONY: install lock system-deps kube-apiserver interop-warm run test test-fast fuzz lint proto bench bench-scale clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing Python dependencies into $(VENV) (the versions in constraints.txt; first time: a few minutes)"
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[$(EXTRAS)]'
	@# xds-protos ships an older copy of the opentelemetry/proto modules; whichever package pip
	@# installs last wins, so reinstall opentelemetry-proto to make its (newer) files win.
	$(PY) -m pip install --quiet --force-reinstall --no-deps "$$(grep -i '^opentelemetry-proto==' constraints.txt)"
	@touch $(STAMP)

install: $(STAMP)

## Update constraints.txt: resolve pyproject.toml's ranges afresh (newest versions) in a scratch
## venv and freeze it. `make lock LOCK_ARGS='-c constraints.txt'` keeps the current pins and only
## resolves what is new. Then `make install` (the stamp sees the change) and `make test`.
LOCK_VENV := .lock-venv
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install --quiet $(LOCK_ARGS) -e '.[$(EXTRAS)]'
	{ echo "# The exact versions CI tests (make install uses them). Regenerate with: make lock"; \
	  $(LOCK_VENV)/bin/python -m pip freeze --exclude-editable | grep -v '^#'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf $(LOCK_VENV)

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

## Debian packages the tests run for real (etcd, Chromium, ...); installs only what is missing.
system-deps:
	scripts/system-deps.sh

## A real kube-apiserver for the Kubernetes store tests: built from Go modules the first time
## (about 5 minutes on 2 cores, progress shown), then cached in ~/.cache/opensergo.
kube-apiserver:
	@scripts/build-kube-apiserver.sh >/dev/null

## The interop programs' dependencies (the official Java SDK from Maven Central, Go modules),
## fetched once (online, progress shown); the interop tests then build offline. Instant when warm.
interop-warm: $(STAMP)
	$(PY) interop/build.py warm

## A real helm for the chart tests (`helm lint`, `helm template`): built from Go modules the first
## time (a few minutes on 2 cores, progress shown), then cached in ~/.cache/opensergo.
.PHONY: helm
helm:
	@scripts/build-helm.sh >/dev/null

## Every test layer, after lint and type checks; installs and warms what it needs first.
test: lint system-deps kube-apiserver helm interop-warm
	$(PY) -m pytest -q

## The unit layer only (seconds).
test-fast: $(STAMP)
	$(PY) -m pytest -q -m unit

## Hypothesis fuzzing (random seeds, over 10^5 cases, about an hour on 2 busy cores) of the YAML/JSON
## reader, every kind's model, and the REST API and gRPC services of a real control plane; totals
## per target at the end. `make test` runs a seeded slice of the same tests (a few thousand cases).
fuzz: $(STAMP)
	OPENSERGO_FUZZ_PROFILE=deep $(PY) -m pytest -q -p no:cacheprovider tests/fuzz

## Our figures beside peer libraries', same data, same run (guards, routing, rule fan-out), and
## what `pip install opensergo` costs an app (install size, import time, start-up).
bench: $(STAMP)
	$(PY) benchmarks/footprint.py
	$(PY) benchmarks/run.py
	$(PY) benchmarks/hotparam.py
	$(PY) benchmarks/routing.py
	$(PY) benchmarks/ack_latency.py 100 50
	$(PY) benchmarks/cluster.py
	$(PY) benchmarks/database.py
	$(PY) benchmarks/cache.py
	$(PY) benchmarks/sidecar.py --envoys 10,100
	$(PY) benchmarks/observability.py 20000

## One control-plane replica driven by a Go load generator (benchmarks/scale_load, built on first
## use): registrations/s and heartbeats/s (30 s each, SQLite and a 3-member etcd), token leases,
## rule fan-out to 1k/5k/10k/20k streams, and the dashboard with 10,000 streams and instances; each
## figure beside the generator's own CPU. OPENSERGO_BENCH_QUICK=1 for a short run (5 s, fewer
## streams); SCALE_ARGS passes options to benchmarks/scale.py (see its --help).
bench-scale: $(STAMP)
	$(PY) benchmarks/scale.py $(SCALE_ARGS)
	$(PY) benchmarks/dashboard_load.py

clean:
	rm -rf $(VENV) $(LOCK_VENV) .opensergo .pytest_cache .mypy_cache .ruff_cache
