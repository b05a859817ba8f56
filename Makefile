# wirelet: one entry point for setup, checks, tests, the demo and benchmarks.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help venv system-deps cluster-build cluster lint test test-fast demo bench soak clean

help:
	@echo "make test      - set up .venv, build the control plane if missing, lint, type-check, run all tests"
	@echo "make demo      - local control plane + 3 emulated devices + gateway (Ctrl-C to stop)"
	@echo "make cluster   - run only the local control plane in the foreground"
	@echo "make bench     - run benchmarks (QUICK=1 for small sizes)"
	@echo "make soak      - devices + pods under chaos, invariants checked (DURATION=600 DEVICES=8)"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# System packages from Debian, installed only when missing and only where apt-get can run as root
# (or through passwordless sudo); otherwise the tests that need them skip and say why.
# umockdev (fake sysfs + uevents) for the udev discovery tests, and libusb-1.0 for the USB
# transport (its tests run libusb against umockdev's usbdevfs emulation).
# QEMU + toolchains + the Arduino AVR core: real firmware on emulated boards (tests/qemu).
# iproute2 (`ip`) makes the TEST-NET address the API server's node proxy accepts
# (hil/cluster/node_address.py).
UMOCKDEV_PKGS = umockdev gir1.2-umockdev-1.0 python3-gi libusb-1.0-0
UMOCKDEV_OK = test -x /usr/bin/umockdev-wrapper && /usr/bin/python3 -c "import gi, ctypes; gi.require_version('UMockdev', '1.0'); ctypes.CDLL('libusb-1.0.so.0')" 2>/dev/null
QEMU_PKGS = qemu-system-arm qemu-system-misc gcc-arm-none-eabi libnewlib-arm-none-eabi \
	gcc-avr avr-libc arduino-core-avr arduino-mk avrdude
QEMU_OK = command -v qemu-system-arm && command -v qemu-system-avr && command -v arm-none-eabi-gcc \
	&& command -v avr-gcc && test -f /usr/share/arduino/Arduino.mk \
	&& test -d /usr/share/arduino/hardware/arduino/avr/cores/arduino
system-deps:
	@if [ "$$(id -u)" = 0 ]; then SUDO=; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	else SUDO=none; fi; \
	if ! command -v apt-get >/dev/null; then SUDO=none; fi; \
	updated=; \
	apt_install() { \
		[ -n "$$updated" ] || { $$SUDO apt-get update -qq && updated=1; } && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$$@"; }; \
	if $(UMOCKDEV_OK); then :; \
	elif [ "$$SUDO" = none ]; then echo "system-deps: umockdev missing and no root/sudo/apt-get: the umockdev tests will skip"; \
	else apt_install $(UMOCKDEV_PKGS) || echo "system-deps: installing umockdev failed: the umockdev tests will skip"; fi; \
	if { $(QEMU_OK); } >/dev/null 2>&1; then :; \
	elif [ "$$SUDO" = none ]; then echo "system-deps: QEMU/toolchains missing and no root/sudo/apt-get: the tests/qemu boards will skip"; \
	else apt_install $(QEMU_PKGS) >/dev/null || echo "system-deps: installing QEMU/toolchains failed: the tests/qemu boards will skip"; fi; \
	if command -v ip >/dev/null; then :; \
	elif [ "$$SUDO" = none ]; then echo "system-deps: iproute2 missing and no root/sudo/apt-get: the node-proxy tests will skip"; \
	else apt_install iproute2 >/dev/null || echo "system-deps: installing iproute2 failed: the node-proxy tests will skip"; fi
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

DURATION ?= 600
DEVICES ?= 8
soak: cluster-build
	$(PY) -m bench.soak --duration $(DURATION) --devices $(DEVICES)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
