# deskpilot: `make demo` runs the built-in demo, `make test` runs the whole test suite.
# Both create .venv, install the project with its test extras, and install the Debian
# packages the demo and the tests need when they are missing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# xvfb: the private displays; x11-apps: xcalc; xdotool: window lookup and outside input;
# x11-utils: xwininfo/xprop for debugging a display; xfonts-base: the "fixed" font Xvfb and
# xcalc need (only a recommendation of xvfb, and we install without recommendations).
DEB_PACKAGES := xvfb xfonts-base x11-apps xdotool x11-utils
# scrot: what pyautogui.screenshot() runs on X11, for the naive loop in `deskpilot bench overhead`.
DEB_PACKAGES += scrot
# dbus + at-spi2-core: a private session bus per headless display, and the accessibility bus
# it starts, so GTK apps there publish their accessibility trees (click: {name: ...});
# libatk-adaptor: the bridge GTK 2 apps load for it (GTK 3 has its own).
DEB_PACKAGES += dbus at-spi2-core libatk-adaptor
# chromium: only the tests need it, to render the HTML report to a PNG; xterm: a real terminal
# for the prompt-injection test (xmessage comes with x11-utils); tmux: a real terminal for the
# supervision interface's end-to-end test, read back with capture-pane.
DEB_TEST_PACKAGES := chromium xterm tmux
# Real GTK apps for the accessibility and OCR tests: a calculator (symbol keys), question and
# entry dialogs (Yes/No at 1920x1080), a text editor (its Save dialog) and a spreadsheet.
DEB_TEST_PACKAGES += galculator zenity mousepad gnumeric
DEMO_OUT := demo-out

.PHONY: all deps test-deps apt-install venv test lint demo clean

all: test

deps:
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(DEB_PACKAGES)"

test-deps:
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(DEB_PACKAGES) $(DEB_TEST_PACKAGES)"

apt-install:
	@command -v dpkg >/dev/null 2>&1 || { \
	  echo "This Makefile installs Debian packages; on another system install Xvfb, xcalc and xdotool yourself."; exit 0; }; \
	missing=""; \
	for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends$$missing >/dev/null; \
	else \
	  echo "missing Debian packages:$$missing"; \
	  echo "install them with:  sudo apt-get install$$missing"; \
	  exit 1; \
	fi

venv: $(VENV)/.installed

# llama-cpp-python builds from source the first time (about 4 minutes on 2 cores); pip keeps
# the built wheel in its cache, so later installs are quick.
$(VENV)/.installed: pyproject.toml
	@echo "creating $(VENV); the first install builds llama-cpp-python from source (~4 min on 2 cores)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --editable '.[test]'
	touch $@

# The wheel maps agent/, actions/, ... into the package deskpilot (pyproject.toml); mypy reads
# folders, not that mapping, so it checks a tree of links laid out as the installed package.
PACKAGES  := agent actions grounding models tui
TYPECHECK := build/typecheck

lint: venv
	$(BIN)/ruff check .
	@rm -rf $(TYPECHECK) && mkdir -p $(TYPECHECK)/deskpilot
	@for f in deskpilot/*; do ln -s ../../../$$f $(TYPECHECK)/deskpilot/; done
	@for p in $(PACKAGES); do ln -s ../../../$$p $(TYPECHECK)/deskpilot/$$p; done
	$(BIN)/mypy

test: test-deps venv lint
	$(BIN)/pytest

# The examples on a private Xvfb with real xcalc and xedit, no model: first grounded by OCR
# (and cached), then replayed from the cache, every entry verified on screen before a click.
demo: deps venv
	rm -rf $(DEMO_OUT)
	$(BIN)/deskpilot run examples/*.yaml --headless --xvfb --cache-dir $(DEMO_OUT)/cache \
	  --runs-dir $(DEMO_OUT)/runs --junit $(DEMO_OUT)/junit.xml \
	  --summary $(DEMO_OUT)/summary.json --report $(DEMO_OUT)/report
	@echo; echo "== again, from the verified cache (--cache read-only) =="
	$(BIN)/deskpilot run examples/*.yaml --headless --xvfb --cache read-only \
	  --cache-dir $(DEMO_OUT)/cache --runs-dir $(DEMO_OUT)/runs \
	  --junit $(DEMO_OUT)/replay/junit.xml --summary $(DEMO_OUT)/replay/summary.json \
	  --report $(DEMO_OUT)/replay/report

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache build *.egg-info
