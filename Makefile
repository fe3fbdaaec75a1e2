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
	$(PYTHON) scripts/bench_steps.py --threads 2

SYNTH_CACHE ?= datasets/cache

benchmark:
	@echo "DATA=$(DATA): the training harness and suites arrive with issues 3-6; for now this"
	@echo "prepares the embedded synthetic dataset (cached in $(SYNTH_CACHE)) and summarises it."
	@echo "For NTU, prepare it first:  python -m benchmark data prepare ntu60 --raw RAW --out datasets/ntu60"
	@echo "then:                       make benchmark DATA=ntu NTU_ROOT=datasets/ntu60"
	$(PYTHON) scripts/prepare_default_data.py --data $(DATA) --cache $(SYNTH_CACHE) $(if $(NTU_ROOT),--ntu-root $(NTU_ROOT))

clean:
	rm -rf .pytest_cache
