# gpuops.nvidia: every set-up step lives here, so a fresh Debian/Ubuntu machine with
# Python >= 3.11 needs only these two commands:
#
#   make test   venv + pinned deps, real containerd builds, ansible-lint, ansible-test sanity + units,
#               then molecule and the integration tests side by side (logs in .build/test-logs)
#   make demo   venv + deps, then ansible-playbook playbooks/demo.yml with this collection
#
# Also: make unit | integration | lint | sanity | molecule | venv | deps | collection | fetch | clean | distclean
#   make molecule  podman + systemd scenarios (MOLECULE_SCENARIOS='default k3s_layout')
#   make sanity  ansible-test sanity on a copy of the checkout (SANITY_ARGS='--test pylint')
#   make unit    ansible-test units on that copy (UNITS_ARGS='tests/unit/plugins/filter -v'); fails if none passed
#   make bench   what a run costs, as ratios (bench/README.md; podman nodes, ~15 min; BENCH_ARGS='--only module')
# Knobs: PYTHON=python3.12  PYTEST_ARGS='-k foo -x' (integration)  DEMO_ARGS='-v'  GPUOPS_CACHE=/path

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.ONESHELL:
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
VENV ?= .venv
VPY := $(CURDIR)/$(VENV)/bin/python
REQUIREMENTS := requirements.txt requirements-test.txt
STAMP := $(VENV)/.deps-stamp
BUILD := $(CURDIR)/.build
PYTEST_ARGS ?=
UNITS_ARGS ?=
DEMO_ARGS ?=
BENCH_ARGS ?=

# The venv's tools (ansible-playbook, ansible-galaxy...) come first for everything we run;
# $(PYTHON) for creating the venv is looked up on the original PATH.
ORIG_PATH := $(PATH)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Where scripts/fetch-containerd.sh keeps the real containerd builds (its own default).
export GPUOPS_CACHE ?= $(HOME)/.cache/gpuops-nvidia
# Ansible run by hand/by the tests/by the demo: this checkout as gpuops.nvidia.
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH := $(BUILD)
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help test unit integration lint sanity molecule demo venv deps collection fetch clean distclean
MOLECULE_SCENARIOS ?= smoke default containerd2 k0s_bootstrap k3s_layout microk8s_layout crio_layout driver fleet

help:
	@sed -n '1,/^$$/p' Makefile | sed 's/^# \{0,1\}//'

# --------------------------------------------------------------------------- set-up
# A working venv (re-made if broken, e.g. its Python vanished).  Debian/Ubuntu ship `venv`
# without ensurepip unless python3-venv is installed: install it when root, else explain.
venv:
	@if [ -x "$(VPY)" ] && "$(VPY)" -m pip --version >/dev/null 2>&1; then exit 0; fi
	export PATH="$(ORIG_PATH)"
	if ! command -v "$(PYTHON)" >/dev/null 2>&1; then
	  echo "error: $(PYTHON) not found; install Python >= 3.11 (apt-get install python3 python3-venv)" >&2; exit 1
	fi
	if ! "$(PYTHON)" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
	  echo "error: Python >= 3.11 is required, $(PYTHON) is $$("$(PYTHON)" -V 2>&1); use make PYTHON=python3.11 ..." >&2; exit 1
	fi
	if ! "$(PYTHON)" -c 'import venv, ensurepip' >/dev/null 2>&1; then
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	    echo "== installing python3-venv (the venv module lacks ensurepip)"
	    export DEBIAN_FRONTEND=noninteractive
	    apt-get -o DPkg::Lock::Timeout=600 update -qq
	    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends python3-venv >/dev/null
	  else
	    echo "error: $(PYTHON) cannot create virtual environments (ensurepip missing)." >&2
	    echo "       Run as root: apt-get update && apt-get install -y python3-venv   then retry." >&2
	    exit 1
	  fi
	fi
	echo "== creating $(VENV) with $$("$(PYTHON)" -V 2>&1)"
	rm -rf "$(VENV)"
	"$(PYTHON)" -m venv "$(VENV)"
	"$(VPY)" -m pip --version >/dev/null || { echo "error: pip missing in the new $(VENV)" >&2; exit 1; }

# Install requirements-test.txt (which includes requirements.txt) only when the files changed:
# the stamp holds a hash of both files and of the venv's Python version.
deps: venv
	@want=$$(cat $(REQUIREMENTS) <("$(VPY)" -V 2>&1) | sha256sum | cut -d' ' -f1)
	if [ -f "$(STAMP)" ] && [ "$$(cat "$(STAMP)")" = "$$want" ]; then exit 0; fi
	echo "== installing Python dependencies into $(VENV)"
	if ! "$(VPY)" -m pip install --disable-pip-version-check -r requirements-test.txt >"$(VENV)/pip-install.log" 2>&1; then
	  grep -v "^WARNING: Location" "$(VENV)/pip-install.log" | tail -n 40 >&2
	  echo "error: pip install -r requirements-test.txt failed (full log: $(VENV)/pip-install.log)" >&2; exit 1
	fi
	echo "$$want" > "$(STAMP)"

# .build/ansible_collections/gpuops/nvidia -> this checkout (relative symlink, idempotent).
collection:
	@"$(PYTHON)" tests/ansible_run.py --collection-path >/dev/null

# Real containerd builds (Debian 1.6 / 1.7 / 2.x, runc) and the busybox test image, cached.
fetch:
	@echo "== fetching containerd builds into $(GPUOPS_CACHE) (cached)"
	bash scripts/fetch-containerd.sh >/dev/null
	if [ -f scripts/fetch-busybox.sh ]; then bash scripts/fetch-busybox.sh >/dev/null; fi
	bash scripts/fetch-docker.sh >/dev/null

# --------------------------------------------------------------------------- checks
# pytest exit codes: 0 ok, 1 failures, 2 interrupted, 3 internal error, 4 usage error,
# 5 NO TESTS COLLECTED: every non-zero code fails the target (5 included, explicitly).
define run_pytest
rc=0; "$(VPY)" -m pytest $(1) $(PYTEST_ARGS) || rc=$$?
if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests in $(1) (exit 5): treated as a failure" >&2; fi
endef

# lint, sanity and units one after the other; then molecule (podman) and the integration tests (real
# daemons on this host) at the same time: both mostly wait.  Their output is live, each line prefixed
# with [molecule] / [integration], and kept in $(TEST_LOGS)/<name>.log.  Every step runs whatever
# failed before; every failure is reported at the end and makes the target fail.
TEST_LOGS := $(BUILD)/test-logs
test: deps collection fetch
	@failed=()
	$(MAKE) lint-only || failed+=("ansible-lint (exit $$?)")
	$(MAKE) sanity || failed+=("ansible-test sanity (exit $$?)")
	$(MAKE) unit-only || failed+=("ansible-test units (exit $$?)")
	mkdir -p "$(TEST_LOGS)"
	echo "== molecule and pytest tests/integration in parallel (logs: $(TEST_LOGS))"
	( $(MAKE) molecule 2>&1 | tee "$(TEST_LOGS)/molecule.log" | sed -u 's/^/[molecule] /' ) &
	molecule_pid=$$!
	integration_rc=0
	( $(MAKE) integration-only 2>&1 | tee "$(TEST_LOGS)/integration.log" | sed -u 's/^/[integration] /' ) || integration_rc=$$?
	molecule_rc=0; wait $$molecule_pid || molecule_rc=$$?
	if [ $$integration_rc -ne 0 ]; then failed+=("pytest tests/integration (exit $$integration_rc, log $(TEST_LOGS)/integration.log)"); fi
	if [ $$molecule_rc -ne 0 ]; then failed+=("molecule (exit $$molecule_rc, log $(TEST_LOGS)/molecule.log)"); fi
	if [ $${#failed[@]} -eq 0 ]; then echo "== make test: all passed"; exit 0; fi
	for f in "$${failed[@]}"; do echo "error: $$f failed" >&2; done
	exit 1

# Molecule scenarios on podman with real systemd (images and the stand-in repo built and cached)
molecule: deps collection
	@echo "== molecule ($(MOLECULE_SCENARIOS))"
	scripts/run-molecule.sh $(MOLECULE_SCENARIOS)

# ansible-test sanity (validate-modules, pylint, pep8, shellcheck, import/compile on every Python here)
sanity: deps
	@echo "== ansible-test sanity"
	SANITY_TRACKED_ONLY=$${SANITY_TRACKED_ONLY:-$${CI:+1}} scripts/sanity.sh $(SANITY_ARGS)

# ansible-test units on the sanity copy (scripts/units.sh): exit 1 as well when not one test passed.
unit: deps
	@$(MAKE) unit-only

.PHONY: unit-only integration-only
unit-only:
	@echo "== ansible-test units"
	SANITY_TRACKED_ONLY=$${SANITY_TRACKED_ONLY:-$${CI:+1}} scripts/units.sh $(UNITS_ARGS)

integration: deps collection fetch
	@$(MAKE) integration-only

integration-only:
	@$(call run_pytest,tests/integration)
	exit $$rc

lint: deps collection
	@$(MAKE) lint-only

.PHONY: lint-only
lint-only:
	@echo "== ansible-lint (profile production, see .ansible-lint)"
	"$(CURDIR)/$(VENV)/bin/ansible-lint"

# --------------------------------------------------------------------------- bench
# What a run costs (bench/README.md): the module vs tomlkit vs `config dump`, a no-change site.yml vs a
# one-task baseline on 1/4/8 podman nodes, socket downtime per restart path. Prints a table, writes
# bench/results.json; exit 1 when a correctness check failed (e.g. a restart on a no-change run).
.PHONY: bench
bench: deps collection fetch
	@bench/run $(BENCH_ARGS)

# --------------------------------------------------------------------------- demo
# The demo runs without containerd builds too; when the (cached) fetch works, a real daemon reports.
demo: deps collection
	@bash scripts/fetch-containerd.sh >/dev/null || echo "== no containerd builds (fetch failed): the demo skips the daemon report"
	bindirs="{"
	for pair in 1.x:trixie 2.x:sid; do
	  d="$(GPUOPS_CACHE)/containerd/$${pair#*:}/usr/bin"
	  if [ -x "$$d/containerd" ]; then bindirs="$$bindirs\"$${pair%%:*}\": \"$$d\", "; fi
	done
	bindirs="$${bindirs%, }}"
	ANSIBLE_PYTHON_INTERPRETER="$(VPY)" "$(CURDIR)/$(VENV)/bin/ansible-playbook" playbooks/demo.yml \
	  -e "{\"demo_bindirs\": $$bindirs}" $(DEMO_ARGS)

# --------------------------------------------------------------------------- cleaning
clean:
	rm -rf .build .pytest_cache .hypothesis tests/output
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf "$(VENV)"
