# create-bench: every target that needs Python depends on .venv, so a fresh clone needs nothing else.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MODEL ?= alwig
DATA ?= data/create-sample
SPLIT ?= test
MODEL_ARGS ?=
EVAL_ARGS ?=
# ALWIG: one checkpoint per dataset (where `create-bench eval --model alwig` looks by default), and
# the config follows the dataset: configs/sample.yaml for CREATE-sample (by its manifest), the paper's
# configs/paper.yaml for anything else; ALWIG_CONFIG=FILE|name overrides. An ALWIG_CKPT override
# also needs MODEL_ARGS (a YAML with `checkpoint:`) for eval to use it.
ALWIG_CKPT ?= checkpoints/alwig-$(notdir $(patsubst %/,%,$(DATA)))
ALWIG_CONFIG ?=
# RCG: the same, checkpoints/rcg-<dataset> (configs/sample.yaml for CREATE-sample, default.yaml
# otherwise; RCG_CONFIG=FILE|name overrides); the retrieved-title floor reads RCG's retriever, so
# MODEL=rcg and MODEL=retrieved-title both train it when it is missing.
RCG_CKPT ?= checkpoints/rcg-$(notdir $(patsubst %/,%,$(DATA)))
RCG_CONFIG ?=

.PHONY: setup system-deps test test-fast lint eval sample bench leaderboard stats clean

# The environment: a virtualenv with the package, its extras and the dev tools, plus the few
# system packages the tests use (Chromium for the browser test, a CJK font for plots).
$(VENV)/.installed: pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[server,ray,dev]"
	$(PY) -c "import jieba; jieba.initialize()" 2>/dev/null
	touch $@

$(VENV): $(VENV)/.installed

setup: $(VENV)/.installed

# Debian packages: installed when missing and we are root (CI, fresh machines); otherwise say what is missing.
# postgresql: the leaderboard tests start a throwaway cluster (initdb/pg_ctl) and FAIL without it as root.
SYSTEM_PKGS := chromium chromium-driver fonts-wqy-microhei postgresql
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	fc-list 2>/dev/null | grep -qi "wqy\|noto sans cjk" || missing="$$missing fonts-wqy-microhei fontconfig"; \
	ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing system packages:$$missing"; \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "WARNING: please install these system packages:$$missing (browser test, CJK plots and the PostgreSQL tests need them; without postgresql those tests are skipped unless root or CI)"; \
	  fi; \
	fi

test: $(VENV)/.installed
	$(PY) -m pytest -q

test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow"

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check create_bench tests benchmarks leaderboard
	$(VENV)/bin/ruff format --check create_bench tests benchmarks leaderboard
	$(VENV)/bin/mypy create_bench

$(DATA)/manifest.json:
	$(PY) -m create_bench sample --out $(DATA)

sample: $(VENV)/.installed $(DATA)/manifest.json

$(ALWIG_CKPT)/config.json:
	$(PY) -m create_bench train alwig --data $(DATA) --out $(ALWIG_CKPT) $(if $(ALWIG_CONFIG),--config $(ALWIG_CONFIG))

$(RCG_CKPT)/config.json:
	$(PY) -m create_bench train rcg --data $(DATA) --out $(RCG_CKPT) $(if $(RCG_CONFIG),--config $(RCG_CONFIG))

eval: $(VENV)/.installed $(DATA)/manifest.json $(if $(filter alwig,$(MODEL)),$(ALWIG_CKPT)/config.json) \
	  $(if $(filter rcg retrieved-title,$(MODEL)),$(RCG_CKPT)/config.json)
	$(PY) -m create_bench eval --model $(MODEL) --data $(DATA) --split $(SPLIT) \
	  $(if $(MODEL_ARGS),--model-args $(MODEL_ARGS)) $(EVAL_ARGS)

bench: $(VENV)/.installed $(DATA)/manifest.json
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b --data $(DATA) || exit 1; done

stats: $(VENV)/.installed $(DATA)/manifest.json
	$(PY) -m create_bench stats $(DATA) --out data_cards/$(notdir $(DATA))

leaderboard: $(VENV)/.installed
	$(PY) -m create_bench leaderboard render --results leaderboard/results --out leaderboard

clean:
	rm -rf results .pytest_cache
