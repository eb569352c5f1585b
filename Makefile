# The two quick-start commands (README): `make demo` runs the pipeline, `make test` the test suite.
# Both first run scripts/setup.sh, which installs what is missing and nothing else.
.PHONY: setup demo test test-all lint benchmark

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/snakemake --cores all

test: setup
	.venv/bin/python -m pytest

test-all: setup
	.venv/bin/python -m pytest -m ""

lint: setup
	.venv/bin/snakemake --lint

benchmark: setup
	.venv/bin/python benchmarks/bench_resample.py
