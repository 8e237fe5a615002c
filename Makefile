# Hubbub developer entry points. `make run` and `make test` create/refresh .venv themselves.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run
PROTO_SRC := protos/hubbub/v1/messenger.proto
GEN := generated/hubbub/v1
# FileDescriptorSet of the contract with its comments: reflection serves it (server/grpc_docs.py).
DESCRIPTOR_SET := $(GEN)/messenger.binpb
BUF := node_modules/.bin/buf
# Our packages live in server/, client/, generated/ (package-dir mapping), so setuptools
# makes the editable install with an import hook and says so in an "Editable installation"
# UserWarning that pip repeats after every install. It only warns about folders named
# like the package (hubbub/) in the working directory, which this layout does not have.
PIP := $(PY) -W "ignore:Editable installation:UserWarning" -m pip install -q
# `make install`: a venv of its own (pipx-style) and links to its two commands.
INSTALL_DIR ?= $(or $(XDG_DATA_HOME),$(HOME)/.local/share)/hubbub
BIN_DIR ?= $(HOME)/.local/bin
COMMANDS := hubbub hubbub-server

.PHONY: venv system-deps run install uninstall proto check-proto lint-proto lint typecheck pytest test bench torture clean

# Debian packages the tests need: slapd/ldap-utils (LDAP login), openssl (TLS), nodejs/npm
# (buf), postgresql and redis-server (multi-node tests start throw-away instances of their
# own). Installed with apt when missing and running as root (Debian's services are kept from
# starting: a temporary policy-rc.d); otherwise the apt-get line to run is shown.
system-deps:
	@missing=""; \
	test -x /usr/sbin/slapd || missing="$$missing slapd"; \
	command -v ldapsearch >/dev/null 2>&1 || missing="$$missing ldap-utils"; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "missing Debian packages:$$missing; run: sudo apt-get install -y$$missing" >&2; exit 1; \
	fi; \
	policy=/usr/sbin/policy-rc.d; own_policy=; \
	if [ ! -e $$policy ]; then printf '#!/bin/sh\nexit 101\n' > $$policy && chmod +x $$policy && own_policy=1; fi; \
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing </dev/null; status=$$?; \
	if [ -n "$$own_policy" ]; then rm -f $$policy; fi; \
	for service in postgresql redis-server slapd; do service $$service stop >/dev/null 2>&1 || true; done; \
	exit $$status

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; set PYTHON=python3" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

# Reinstall when the package metadata changes. The dev extra (tests, linters, grpcurl)
# includes the runtime dependencies, so it satisfies `make run` too.
$(STAMP): pyproject.toml | $(PY)
	$(PIP) --upgrade pip setuptools wheel
	$(PIP) -e '.[dev]'
	@touch $(STAMP) $(RUN_STAMP)

# Runtime dependencies only: what `make run` needs.
$(RUN_STAMP): pyproject.toml | $(PY)
	$(PIP) --upgrade pip setuptools wheel
	$(PIP) -e .
	@touch $(RUN_STAMP)

venv: $(STAMP)

run: $(RUN_STAMP)
	$(VENV)/bin/hubbub-server --host 127.0.0.1 --port 50051 --database ./data/hubbub.db

# `hubbub` and `hubbub-server` for the user: a venv of their own under INSTALL_DIR
# (default ~/.local/share/hubbub/venv) with a non-editable install of this checkout
# (runtime dependencies only), linked from BIN_DIR (default ~/.local/bin).
install:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; set PYTHON=python3" >&2; exit 1; }
	$(PYTHON) -m venv --clear $(INSTALL_DIR)/venv
	$(INSTALL_DIR)/venv/bin/python -m pip install -q --upgrade pip
	$(INSTALL_DIR)/venv/bin/python -m pip install -q .
	@mkdir -p $(BIN_DIR)
	@for command in $(COMMANDS); do ln -sfn $(INSTALL_DIR)/venv/bin/$$command $(BIN_DIR)/$$command; done
	@echo "installed $(COMMANDS) in $(BIN_DIR)"
	@case ":$$PATH:" in *":$(BIN_DIR):"*) ;; *) echo "$(BIN_DIR) is not on your PATH: add it (e.g. in ~/.profile: export PATH=\"$(BIN_DIR):\$$PATH\")";; esac

uninstall:
	@for command in $(COMMANDS); do \
		if [ "$$(readlink $(BIN_DIR)/$$command)" = "$(INSTALL_DIR)/venv/bin/$$command" ]; then rm -f $(BIN_DIR)/$$command; fi; \
	done
	rm -rf $(INSTALL_DIR)/venv

proto: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m grpc_tools.protoc -I protos \
		--python_out=generated --mypy_out=quiet:generated \
		--grpc_python_out=generated --mypy_grpc_out=quiet:generated \
		--include_source_info --descriptor_set_out=$(DESCRIPTOR_SET) \
		$(PROTO_SRC)
	@touch $(GEN)/py.typed

# Regenerates the stubs and the descriptor set and fails if the committed ones differ.
check-proto: proto
	@git diff --exit-code --stat -- generated/ || { echo "generated/ is stale: run 'make proto' and commit" >&2; exit 1; }
	@test -z "$$(git status --porcelain -- generated/)" || { git status --porcelain -- generated/; echo "untracked generated files: commit them" >&2; exit 1; }

# `npm ci` installs exactly package-lock.json and never rewrites it.
$(BUF): package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	@touch $(BUF)

lint-proto: $(BUF)
	$(BUF) lint protos

lint: $(STAMP)
	$(VENV)/bin/ruff check server client tests scripts
	$(VENV)/bin/ruff format --check server client tests scripts

# mypy --strict over the code, the tests and the scripts. The tests and scripts import
# hubbub.server / hubbub.client, which the editable install maps to server/ and client/
# with an import hook mypy cannot follow; links in $(MYPY_LINKS) (on pyproject's
# mypy_path) show it those packages under their installed names.
MYPY_LINKS := $(VENV)/mypy-path/hubbub
typecheck: $(STAMP)
	@mkdir -p $(MYPY_LINKS)
	@ln -sfn $(CURDIR)/server $(MYPY_LINKS)/server
	@ln -sfn $(CURDIR)/client $(MYPY_LINKS)/client
	$(VENV)/bin/mypy server client tests scripts

pytest: $(STAMP)
	$(VENV)/bin/pytest -q

test: system-deps lint typecheck check-proto lint-proto pytest

# Benchmark vs a bare grpc.aio relay (python -m scripts.bench --help): make bench ARGS="--streams 10000"
bench: $(STAMP)
	$(PY) -m scripts.bench $(ARGS)

# Long fault-injection run (100 kill -9 cycles by default): make torture ARGS="--mix --cycles 200"
torture: $(STAMP)
	$(PY) -m scripts.torture $(ARGS)

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache
