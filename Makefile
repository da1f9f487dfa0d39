# The README's two commands: `make run` (dev server + service) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: install run test test-fast coverage-fast test-schemathesis test-couchdb test-cluster history test-browser lint k8s-check image-test constraints dist-check devcouch-stop clean

install: $(VENV)/.installed node_modules/.installed

# constraints.txt pins the versions the suite last passed with (`make constraints` renews it).
$(VENV)/.installed: pyproject.toml setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,lint,otel]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts
	touch $@

## Run the service on 127.0.0.1:$(PORT) against the dev CouchDB (pouchdb-server).
run: install
	scripts/dev.sh

## Run the whole test suite (against $$COUCHDB_URL when set, else a private dev server).
## pytest's exit 5 (no test collected) counts as a failure.
test: install
	@$(BIN)/python -m pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: no test was collected" >&2; exit 1; fi; exit $$status

## Black-box tests of the served spec: schemathesis (every check, stateful phase) against a
## private dev server and a sidecar with the sample models; fails on any server error or
## non-conformance. Bounded: under 4 minutes (SCHEMATHESIS_MAX_TIME seconds of generation).
test-schemathesis: install
	scripts/schemathesis.sh $(SCHEMATHESIS_ARGS)

## Every test that talks to CouchDB (tests/server) against a real Apache CouchDB 3.5.2 single
## node from the shared script, started here and stopped afterwards (also on failure); with the
## kill test (marker kill). The server-free tier ran in `make test` already.
test-couchdb: install
	scripts/with-couchdb 1 $(MAKE) --no-print-directory test PYTEST_ARGS="-m couchdb"

## Every test that talks to CouchDB (tests/server), on a 3-node CouchDB 3.5.2 cluster: the
## cluster tests and both history schedules with them. Those that start their own single
## node (kill, own_node) run in test-couchdb. CLUSTER_TESTS=cluster: the cluster tests and
## the history schedules only.
CLUSTER_TESTS ?= couchdb and not kill and not own_node
test-cluster: install
	scripts/with-couchdb 3 $(MAKE) --no-print-directory test PYTEST_ARGS="-m '$(CLUSTER_TESTS)'"

## The recorded-history test on a 3-node cluster started for it, for longer and repeatedly:
## HISTORY_ARGS="--schedule=faults --seconds=60 --runs=5" (python -m history --help).
history: install
	scripts/with-couchdb 3 sh -c 'cd tests && exec ../$(BIN)/python -m history $(HISTORY_ARGS)'

## /_docs in headless Chromium (Debian's package, installed when missing: needs root), driven
## by playwright-core: the browser test, deselected in a plain `make test`.
test-browser: install
	@command -v chromium >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
	CHROMIUM=$$(command -v chromium) $(BIN)/python -m pytest -m browser -q $(PYTEST_ARGS)

## The Kubernetes manifests against the API schemas kubernetes-validate bundles (offline),
## strictly (an unknown field fails), for the oldest version with native sidecars and a new one.
K8S_VERSIONS ?= 1.29.0 1.37.0
k8s-check: install
	@for version in $(K8S_VERSIONS); do \
	  $(BIN)/kubernetes-validate --strict --quiet -k $$version deploy/kubernetes/*.yaml || exit 1; \
	  echo "k8s-check: deploy/kubernetes/*.yaml valid for Kubernetes $$version"; \
	done

## Build the container image with podman and smoke-test it with docker/compose.yaml's settings
## against CouchDB 3.5.2 (needs root; installs podman, runc and debootstrap when missing).
image-test: install
	scripts/image-test.sh

## ruff (lint + format), mypy and the import contracts (pyproject.toml): zero findings.
lint: install
	$(BIN)/ruff check data_service tests scripts bench
	$(BIN)/ruff format --check data_service tests scripts bench
	$(BIN)/mypy
	$(BIN)/lint-imports

## The server-free tests only (tests/unit: pure modules, fake transports, the in-memory
## CouchDB; conftest marks tests/server couchdb): seconds.
test-fast: install
	$(BIN)/python -m pytest -m "not couchdb" -q

## The fast tier under coverage.py: the lines of the store and the reconciler it covers,
## per module (docs/testing.md: coverage).
coverage-fast: install
	$(BIN)/python -m coverage run -m pytest -m "not couchdb" -q
	$(BIN)/python -m coverage report

## Pin the installed versions (after changing dependencies and seeing the suite pass).
constraints: install
	$(BIN)/pip freeze --exclude-editable | grep -v '^data-service' > constraints.txt

## Build the wheel the Dockerfile installs and check what it carries.
dist-check: install
	rm -rf build dist
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir dist .
	$(BIN)/python scripts/check_wheel.py dist/*.whl

devcouch-stop:
	$(PYTHON) scripts/devcouch.py stop

clean: devcouch-stop
	rm -rf $(VENV) node_modules build dist .devcouch *.egg-info
