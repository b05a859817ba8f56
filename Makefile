# wirelet: one entry point for setup, checks, tests, the demo and benchmarks.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help venv system-deps cluster-build cluster lint test test-fast demo bench clean

help:
	@echo "make test      - set up .venv, build the control plane if missing, lint, type-check, run all tests"
	@echo "make demo      - local control plane + 3 emulated devices + gateway (Ctrl-C to stop)"
	@echo "make cluster   - run only the local control plane in the foreground"
	@echo "make bench     - run benchmarks (QUICK=1 for small sizes)"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# umockdev (fake sysfs + uevents) for the udev discovery tests, and libusb-1.0 for the USB
# transport (its tests run libusb against umockdev's usbdevfs emulation). Installed only when
# missing and only where apt-get can run as root; otherwise those tests skip and say why.
UMOCKDEV_PKGS = umockdev gir1.2-umockdev-1.0 python3-gi libusb-1.0-0
UMOCKDEV_OK = test -x /usr/bin/umockdev-wrapper && /usr/bin/python3 -c "import gi, ctypes; gi.require_version('UMockdev', '1.0'); ctypes.CDLL('libusb-1.0.so.0')" 2>/dev/null
system-deps:
	@if $(UMOCKDEV_OK); then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(UMOCKDEV_PKGS); } \
			|| echo "system-deps: installing umockdev failed: the umockdev tests will skip"; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null && command -v apt-get >/dev/null; then \
		{ sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(UMOCKDEV_PKGS); } \
			|| echo "system-deps: installing umockdev failed: the umockdev tests will skip"; \
	else echo "system-deps: umockdev missing and no root/sudo: the umockdev tests will skip"; fi
	@# iproute2 (`ip`) makes the TEST-NET address the API server's node proxy accepts
	@# (hil/cluster/node_address.py); without it the node-proxy tests skip and say why.
	@if command -v ip >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2; } \
			|| echo "system-deps: installing iproute2 failed: the node-proxy tests will skip"; \
	else echo "system-deps: iproute2 missing and no root: the node-proxy tests will skip"; fi
	@$(MAKE) --no-print-directory ssh-deps

# openssh-server (and ssh-keygen) for the SSH executor's tests: each test starts its own sshd
# on a loopback port from a temp dir; the system's sshd is never started or configured.
SSH_PKGS = openssh-server openssh-client procps
SSH_OK = test -x /usr/sbin/sshd && command -v ssh-keygen >/dev/null && command -v pgrep >/dev/null
.PHONY: ssh-deps
ssh-deps:
	@if $(SSH_OK); then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SSH_PKGS); } \
			|| echo "system-deps: installing openssh-server failed: the SSH tests will skip"; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null && command -v apt-get >/dev/null; then \
		{ sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SSH_PKGS); } \
			|| echo "system-deps: installing openssh-server failed: the SSH tests will skip"; \
	else echo "system-deps: openssh-server missing and no root/sudo: the SSH tests will skip"; fi

cluster-build: $(STAMP)
	$(PY) -m hil.cluster build

cluster: cluster-build
	$(PY) -m hil.cluster up

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: lint cluster-build system-deps
	$(VENV)/bin/pytest

test-fast: $(STAMP) system-deps
	$(VENV)/bin/pytest -m "not integration"

demo: cluster-build
	$(VENV)/bin/wirelet demo

bench: cluster-build
	$(PY) -m bench $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
