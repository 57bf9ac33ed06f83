.PHONY: install demo test lint bench

install:
	pip install -e '.[dev]'

demo:
	dagflow run dags/weekly_ops_chain.yaml

test:
	python -m pytest

lint:
	ruff check .
	ruff format --check .
	mypy

bench:
	python bench/bench_core.py
	python bench/bench_scheduler.py
	python bench/bench_analytics.py
	python bench/bench_recovery.py
	python bench/bench_events.py
	python bench/bench_tenants.py
	python bench/bench_sweeper.py
	python bench/bench_pools.py
	python bench/bench_metrics.py
	python bench/bench_api.py
	python bench/bench_outputs.py
	python bench/chaos.py
