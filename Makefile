# The two commands: `make run` and `make test`. Both install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8080
SWAGGER_UI_VERSION ?= 5.36.0
SWAGGER_DIR := src/lamplighter/templates/static/swagger

.PHONY: run test check install db-upgrade demo bench clean vendor

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/lamplighter db upgrade
	$(BIN)/lamplighter demo load
	$(BIN)/lamplighter serve --host $(HOST) --port $(PORT)

# Two workers (pytest-xdist), each test file on one worker: the suite waits on servers,
# browsers and PostgreSQL as much as it computes. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

check: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy src tests

bench: $(STAMP)
	$(BIN)/python bench/http_get.py
	$(BIN)/python bench/jobs.py

# Third-party browser assets served from /static (no CDN): Swagger UI for /api/docs, from npm.
# Prints the copied files' sha256; record them with the version in $(SWAGGER_DIR)/VENDORED.md.
vendor:
	rm -rf var/vendor && mkdir -p var/vendor
	cd var/vendor && npm pack --silent swagger-ui-dist@$(SWAGGER_UI_VERSION) && tar xzf swagger-ui-dist-$(SWAGGER_UI_VERSION).tgz
	mkdir -p $(SWAGGER_DIR)
	cp var/vendor/package/swagger-ui-bundle.js var/vendor/package/swagger-ui.css \
	   var/vendor/package/LICENSE var/vendor/package/NOTICE \
	   var/vendor/package/swagger-ui-bundle.js.LICENSE.txt $(SWAGGER_DIR)/
	cd $(SWAGGER_DIR) && sha256sum swagger-ui-bundle.js swagger-ui.css
	rm -rf var/vendor

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
