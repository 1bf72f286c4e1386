# Swagstore: `make dev` runs the store on this laptop, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app swagstore
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: dev test lint format run public bench clean install install-runtime install-test install-lint

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Three layers of the venv: what the store runs on, then the test tools, then the linters.
# `make dev` and `make run` install only the first; `make test` and `make lint` add theirs.
$(VENV)/.installed: $(BIN)/activate setup.cfg pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

$(VENV)/.installed-lint: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install-runtime: $(VENV)/.installed
install-test: $(VENV)/.installed-test
install-lint: $(VENV)/.installed-lint
# Everything, for working on the store.
install: install-test install-lint

# `make dev HOST=0.0.0.0` listens on every interface: phones on the same Wi-Fi reach it at
# the laptop's LAN address, which becomes PUBLIC_URL (so the QR codes lead there). Any
# other HOST is its own address; an exported SWAGSTORE_PUBLIC_URL wins. Worked out once,
# when the recipe runs (after the venv exists).
DEV_URL_OF_HOST = $(shell $(BIN)/python -m swagstore.lan $(HOST) $(PORT))

# True when a Stripe key is configured (instance/config.py or SWAGSTORE_STRIPE_SECRET_KEY).
HAS_KEY = $(BIN)/python -c "import sys; from swagstore import create_app; \
	sys.exit(0 if create_app().config['STRIPE_SECRET_KEY'] else 1)" 2>/dev/null

dev: $(VENV)/.installed
	@# The rehearsal's sync would point the key's real payment links at this laptop's
	@# loopback address, where no phone can reach the after-payment page.
	@if $(HAS_KEY); then \
		echo "make dev: a Stripe key is set (instance/config.py or SWAGSTORE_STRIPE_SECRET_KEY)." \
			"make dev is the offline rehearsal: with the key it would re-point that account's" \
			"payment links at this laptop. Open the booth with 'make run'; to rehearse, move" \
			"the key out of the way first." >&2; \
		exit 1; \
	fi
	$(eval DEV_URL := $(or $(SWAGSTORE_PUBLIC_URL),$(DEV_URL_OF_HOST)))
	$(FLASK) init-db
	$(FLASK) load-catalog instance/catalog.toml
	@# Payment links in the sandbox (or on Stripe, with a key). The sandbox's links follow
	@# PUBLIC_URL: after a new PORT or HOST they are made again, so no QR code leads nowhere.
	SWAGSTORE_PUBLIC_URL=$(DEV_URL) $(FLASK) sync-stripe
	@# The sandbox's staff password: made once, kept in the git-ignored instance folder.
	@test -s instance/admin_password || (umask 077 && $(BIN)/python -c \
		"import secrets; print(secrets.token_urlsafe(12))" > instance/admin_password)
	@echo
	@if [ -n "$$SWAGSTORE_ADMIN_PASSWORD" ]; then \
		echo "  Admin:       $(DEV_URL)/admin  (your SWAGSTORE_ADMIN_PASSWORD)"; \
	else \
		echo "  Admin:       $(DEV_URL)/admin  password: $$(cat instance/admin_password)"; \
	fi
	@echo "  Kiosk:       $(DEV_URL)/"
	@echo "  Stock (API): $(DEV_URL)/api/stock"
	@echo "  Health:      $(DEV_URL)/healthz"
	@echo
	@# Web and worker from Procfile.dev (honcho); Ctrl-C stops both.
	SWAGSTORE_ADMIN_PASSWORD="$${SWAGSTORE_ADMIN_PASSWORD:-$$(cat instance/admin_password)}" \
		SWAGSTORE_PUBLIC_URL=$(DEV_URL) HOST=$(HOST) PATH="$(CURDIR)/$(BIN):$$PATH" \
		$(BIN)/honcho start -f Procfile.dev -p $(PORT)

# Tests run in TEST_JOBS processes (pytest-xdist): most of a test's time is spent waiting
# on servers, so four at once take about 11 minutes on 2 cores instead of 18. 0: one process.
TEST_JOBS ?= 4
test: $(VENV)/.installed-test
	$(BIN)/pytest -n $(TEST_JOBS) $(PYTEST_ARGS)

lint: $(VENV)/.installed-lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict --follow-imports=silent swagstore/payments.py

format: $(VENV)/.installed-lint
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The booth: gunicorn and the worker from the Procfile (honcho); Ctrl-C stops both. With no
# usable Stripe key the store would be its offline sandbox, a shop that takes no money:
# make run refuses, unless SANDBOX=1 asks for exactly that (a rehearsal). It listens on
# 127.0.0.1:PORT (an exported SWAGSTORE_BIND wins).
run: BIND := $(or $(SWAGSTORE_BIND),127.0.0.1:$(PORT))
run: $(VENV)/.installed
	@if [ "$(SANDBOX)" != 1 ] && ! $(FLASK) check --only key 2>/dev/null; then \
		echo "make run: no usable Stripe key (the key line above says why), and a booth" \
			"without one takes no money. 'make run SANDBOX=1' runs the offline sandbox anyway." >&2; \
		exit 1; \
	fi
	$(FLASK) init-db
	@echo
	@echo "  Kiosk:  http://$(BIND)/"
	@echo "  Staff:  http://$(BIND)/admin"
	@echo
	SWAGSTORE_BIND=$(BIND) PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start -f Procfile

# The booth as phones and Stripe reach it: nginx on every interface at PORT (8080 unless
# given) in front of gunicorn on loopback, and the worker (Procfile.public); Ctrl-C or
# SIGTERM stops all three. TLS_CERT=cert.pem TLS_KEY=key.pem serves HTTPS instead.
public: PUBLIC_PORT := $(if $(filter file,$(origin PORT)),8080,$(PORT))
public: SCHEME := $(if $(TLS_CERT),https,http)
public: $(VENV)/.installed
	@test -x /usr/sbin/nginx || command -v nginx >/dev/null || \
		{ echo "make public needs nginx: sudo apt-get install -y nginx" >&2; exit 1; }
	@if [ "$(SANDBOX)" != 1 ] && ! $(FLASK) check --only key 2>/dev/null; then \
		echo "make public: refusing to open a booth that takes no money." \
			"'make public SANDBOX=1' runs the offline sandbox anyway." >&2; \
		exit 1; \
	fi
	$(FLASK) init-db
	@echo
	@echo "  Phones and Stripe: $${SWAGSTORE_PUBLIC_URL:-$(SCHEME)://$$($(BIN)/python deploy/nginx.py --lan-address):$(PUBLIC_PORT)}/"
	@echo "  Kiosk (this laptop): $(SCHEME)://127.0.0.1:$(PUBLIC_PORT)/"
	@echo
	SWAGSTORE_PUBLIC_URL=$${SWAGSTORE_PUBLIC_URL:-$(SCHEME)://$$($(BIN)/python deploy/nginx.py --lan-address):$(PUBLIC_PORT)} \
		SWAGSTORE_PROXY_HOPS=1 PUBLIC_PORT=$(PUBLIC_PORT) \
		PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start -f Procfile.public

# The benchmarks of bench/ (not tests): figures and ratios, written to bench/RESULTS.md.
# The load generator is wrk (Debian's package); BENCH_ARGS="--tree DIR" measures another
# checkout (with its own .venv), "--runs 1" is quicker.
bench: $(VENV)/.installed
	@command -v wrk >/dev/null || { echo "make bench needs wrk: sudo apt-get install -y wrk" >&2; exit 1; }
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache .mypy_cache
