# opsgate: the verbs people expect. `make test` sets everything up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

## demo: the whole incident flow locally, Slack sandbox in the browser (make demo PORT=8081)
# `make demo PORT=8081`; := so that a PORT set in the environment does not change it
PORT := 8080
demo: $(STAMP)
	$(BIN)/opsgate demo --port $(PORT)

.PHONY: demo install test unit lint fmt bench bench-ack bench-open bench-replicas bench-llm bench-peer-venv check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)
	@echo "opsgate is installed in $(VENV): run $(BIN)/opsgate, or 'source $(BIN)/activate' once, then opsgate"

## install: set up .venv only (the CLI is then .venv/bin/opsgate)
install: $(STAMP)

## test: lint, types, layering contracts, then the whole test suite (SQLite and PostgreSQL)
test: lint unit

unit: $(STAMP)
	$(BIN)/pytest -q -n 4  # four workers: much of the suite waits on real processes and servers

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## bench: control-plane overhead per approved step (SQLite and PostgreSQL), the LangGraph peer
## beside it when its venv exists (make bench-peer-venv), then Slack ack latency
bench: $(STAMP)
	$(BIN)/python -m bench.step_overhead
	$(BIN)/python -m bench.slack_ack

## bench-peer-venv: a venv of its own for the LangGraph peer benchmark (bench/langgraph_hitl.py)
PEER_VENV ?= .venv-langgraph
bench-peer-venv:
	$(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/pip install --quiet langgraph langgraph-checkpoint-sqlite \
		langgraph-checkpoint-postgres "psycopg[binary]"

## bench-ack: Slack ack p99 under a burst of 60 slash commands, against a bare Bolt app
bench-ack: $(STAMP)
	$(BIN)/python -m bench.slack_ack

## bench-replicas: incidents/s through one and two opsgate serve replicas on PostgreSQL (200 ms tool calls)
bench-replicas: $(STAMP)
	$(BIN)/python -m bench.replicas

## bench-open: RSS of one opsgate serve holding 1,000 open incidents (SQLite and PostgreSQL)
bench-open: $(STAMP)
	$(BIN)/python -m bench.open_incidents

## bench-llm: tokens per scripted incident and the agents' overhead per model call (stand-in)
bench-llm: $(STAMP)
	$(BIN)/python -m bench.llm_overhead

check: $(STAMP)
	$(BIN)/opsgate check

clean:
	rm -rf $(VENV) .opsgate .pytest_cache .mypy_cache .ruff_cache
