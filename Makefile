# LT-Skeleton Bench. `make help` lists the targets.
PYTHON ?= python
DATA ?= synth
PROFILE ?= default

.PHONY: help setup test test-all test-gpu bench benchmark report status clean

help:
	@echo "make setup      install torch (the CPU build without a GPU) and this package with its test tools"
	@echo "make test       run the test suite (what CI runs)"
	@echo "make test-all   also the slow tests"
	@echo "make test-gpu   the CUDA checks (skip without a GPU)"
	@echo "make bench      speed and memory: JSON in results/bench/ (OFFICIAL=<CTR-GCN checkout> for ratios)"
	@echo "make benchmark  run every paper table's suite, then the report (DATA=synth|ucla|ntu,"
	@echo "                PROFILE=smoke for a 5-minute check, SEEDS=0,1,2, WORKERS=2,"
	@echo "                DEVICES=0,1,2,3 GPUS_PER_RUN=2 for GPUs)"
	@echo "make report     tables and figures from the stored runs (no training)"
	@echo "make status     done / running / unfinished / failed / missing runs"

# torch first (the CPU build where there is no GPU), then this package (editable, with the
# test tools): `ltskeleton` = `python -m benchmark`
setup:
	$(PYTHON) scripts/install_torch.py
	$(PYTHON) -m pip install -e ".[dev]"

test:
	$(PYTHON) -m pytest -q

test-all:
	$(PYTHON) -m pytest -q -m "not gpu"

test-gpu:
	$(PYTHON) -m pytest -q -m gpu

OFFICIAL ?=
# other backbones' official checkouts: OFFICIAL_BACKBONES="aagcn=/tmp/2s-AGCN infogcn=/tmp/infogcn
#   stgcnpp=/tmp/pyskl hdgcn=/tmp/HD-GCN"
OFFICIAL_BACKBONES ?=
bench:
	$(PYTHON) scripts/bench_all.py $(if $(OFFICIAL),--official $(OFFICIAL)) \
		$(foreach b,$(OFFICIAL_BACKBONES),--official-backbone $(b))

# The suites of every paper table (benchmark/suites.py), resumable: a rerun only runs what is
# missing and resumes what is unfinished. DATA=synth (default, embedded, no download) | ucla | ntu.
# DEVICES=0,1,2,3: one worker per GPUS_PER_RUN of them (WORKERS then defaults to as many)
DEVICES ?=
GPUS_PER_RUN ?=
WORKERS ?= $(if $(DEVICES),,2)
DEVICE ?= $(if $(DEVICES),cuda,cpu)
# real NW-UCLA-LT runs are committed (their small records) so a sweep resumes on any machine
RUNS ?= $(if $(filter ucla,$(DATA)),results/runs-ucla,results/runs)
SEEDS ?=
NTU_ROOT ?=
SWEEP_ARGS = --data $(DATA) --out $(RUNS) $(if $(filter-out default,$(PROFILE)),--profile $(PROFILE)) \
	$(if $(SEEDS),--seeds $(SEEDS)) $(if $(NTU_ROOT),--data-root $(NTU_ROOT)) --device $(DEVICE) \
	$(if $(GPUS_PER_RUN),--gpus-per-run $(GPUS_PER_RUN))

benchmark:
	$(PYTHON) -m benchmark sweep run $(SWEEP_ARGS) $(if $(WORKERS),--workers $(WORKERS)) \
		$(if $(DEVICES),--devices $(DEVICES))
	$(PYTHON) -m benchmark report $(SWEEP_ARGS)

report:
	$(PYTHON) -m benchmark report $(SWEEP_ARGS)

status:
	$(PYTHON) -m benchmark sweep status $(SWEEP_ARGS)

clean:
	rm -rf .pytest_cache
