# docllm — every target does its own set-up (scripts/setup.sh is idempotent).
.PHONY: setup up demo test test-fast lint typecheck sam-check schemas api-docs bench clean

VENV := .venv/bin

setup:
	@bash scripts/setup.sh

up: setup ## the demo on samples/corpus (resumes if run before), then the platform keeps running (Ctrl-C stops)
	$(VENV)/docllm demo

demo: up

test: setup ## the full suite, as CI runs it
	$(VENV)/python -m pytest -q

test-fast: setup ## unit tests only
	$(VENV)/python -m pytest -q tests/unit

lint: setup
	$(VENV)/ruff check .

typecheck: setup
	$(VENV)/mypy

sam-check: ## sam validate --lint and sam build (SAM CLI in its own tool venv)
	bash scripts/sam-check.sh

schemas: setup ## regenerate events/schemas from the event contracts
	$(VENV)/docllm events schemas --out events/schemas

api-docs: setup ## regenerate docs/api.md from the API's OpenAPI document
	$(VENV)/python docs/gen_api.py

bench: setup ## the quick benchmarks (docs/benchmarks.md lists the others)
	$(VENV)/python -m bench.ingest --quick
	$(VENV)/python -m bench.platform --quick
	$(VENV)/python -m bench.search --quick
	$(VENV)/python -m bench.tokenizer --quick
	$(VENV)/python -m bench.train --quick

clean:
	rm -rf .docllm .aws-sam .pytest_cache .mypy_cache .ruff_cache
