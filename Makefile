# sipfleet: the two commands a newcomer needs are `make demo` and `make test`.
# Both set up everything they use on a fresh machine (apt packages, a venv,
# the Kubernetes binaries, containerd, CoreDNS and crictl built once into
# ~/.cache/sipfleet).

VENV  ?= .venv
PY    := $(VENV)/bin/python
STATE ?= .state/dev

.PHONY: setup system-deps venv kube-binaries images test-tools lint test test-unit test-integration test-e2e demo crds bench clean

setup: system-deps venv kube-binaries images test-tools

system-deps:
	@bash scripts/install-system-deps.sh

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[test]'
	@touch $@

# The SIP core compiled with mypyc, cached by source hash outside the repo (pure Python
# runs when there is no compiler or the sources changed since: scripts/build_mypyc.py).
venv: $(VENV)/.installed
	@$(PY) scripts/build_mypyc.py

kube-binaries:
	@bash devcluster/build-kube-binaries.sh

# The node and operator images without Docker (mmdebstrap; minutes once, cached by content).
images: venv system-deps
	@$(VENV)/bin/sipfleet dev images

# kubeconform, actionlint, Prometheus Operator CRDs, mermaid: used by the chart and docs tests;
# JsSIP (package-lock.json pinned) for the WebSocket member tests.
test-tools:
	@bash charts/install-tools.sh
	@npm ci --prefix tests/integration/jssip --no-audit --no-fund --silent

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m sipfleet.operator.crdgen --check
	bash charts/sync-crds.sh --check

# After changing the operator's models: regenerate crds/, the chart's copy and the reference.
crds: venv
	$(PY) -m sipfleet.operator.crdgen
	bash charts/sync-crds.sh
	$(PY) docs/gen_crd_reference.py

test: setup lint
	$(VENV)/bin/pytest -m "unit or integration or e2e"

test-unit: venv
	$(VENV)/bin/pytest -m unit

test-integration: venv system-deps
	$(VENV)/bin/pytest -m integration

test-e2e: setup
	$(VENV)/bin/pytest -m e2e

# The demo needs no chart test tools (test-tools).
demo: system-deps venv kube-binaries
	$(VENV)/bin/sipfleet demo --state-dir $(STATE)

clean:
	-$(VENV)/bin/sipfleet dev down --state-dir $(STATE)
	rm -rf $(VENV) .state
