# Two entry points on a fresh Debian/Ubuntu machine: `make demo` (the main job) and
# `make test` (the whole test suite). Each creates its own virtual environment.
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
FASHION_MNIST := /usr/share/datasets/fashion-mnist

.PHONY: demo test install data plan clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

data:
	@[ -f $(FASHION_MNIST)/train-images-idx3-ubyte.gz ] || \
		($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist)

plan: install
	$(VENV)/bin/gtnd plan --device jetson-orin-nano

demo: install data
	$(VENV)/bin/gtnd pipeline --quick --out runs/demo

test: install data
	$(VENV)/bin/pytest

clean:
	rm -rf $(VENV) runs build *.egg-info
