# The two commands a fresh machine needs: `make demo` and `make test`.
VENV := .venv
BIN  := $(VENV)/bin

.PHONY: setup demo test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml deploy/install.sh node_firmware/wasm/package.json
	bash deploy/install.sh
	touch $@

demo: setup
	$(BIN)/tinyfleet demo

test: setup
	$(BIN)/pytest

clean:
	rm -rf $(VENV) node_firmware/wasm/node_modules var runs
