# LT-Skeleton Bench. `make help` lists the targets.
PYTHON ?= python
DATA ?= synth
PROFILE ?= default

.PHONY: help setup test test-all bench benchmark clean

help:
	@echo "make setup      install the requirements (CPU torch if no torch is installed)"
	@echo "make test       run the test suite (what CI runs)"
	@echo "make test-all   also the slow tests"
	@echo "make bench      data-layer speed and memory benchmarks"
	@echo "make benchmark  run the benchmark suites (DATA=synth|ucla|ntu)"

setup:
	$(PYTHON) scripts/install_torch.py
	$(PYTHON) -m pip install -r requirements.txt

test:
	$(PYTHON) -m pytest -q

test-all:
	$(PYTHON) -m pytest -q -m "not gpu"

bench:
	$(PYTHON) scripts/bench_ntu_prepare.py
	$(PYTHON) scripts/bench_store_memory.py --n 4000

benchmark:
	@echo "The training harness and suites arrive with issues 3-6; today this prepares the data." 
	$(PYTHON) -m benchmark data info "$$($(PYTHON) -c 'from benchmark.data.synth import load_synth; print(load_synth())')"

clean:
	rm -rf .pytest_cache
