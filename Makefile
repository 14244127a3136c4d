# diffretriever-pyserini: `make help` lists the targets and variables.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
MIRROR ?= $(BEIR_MIRROR)
MODEL ?= minilm
ADAPTER ?=
KQ ?=
KP ?=
DEVICE ?= auto
DTYPE ?= auto
BATCH ?= 32
THREADS ?= 2
RUNS ?= runs
DATASET ?= scifact
MODES ?=
MAXSIM ?= exact
DENSE_INDEX ?= flat
DENOISE ?=
CHECKPOINT ?= llada-8b-single
PYTEST_ARGS ?=

PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
SOURCES := setup.cfg setup.py pyproject.toml diffretriever_pyserini_startup.py \
	$(shell find diffretriever_pyserini -name '*.py' -o -name '*.yaml' 2>/dev/null)
BEIR_DATASETS := trec-covid nfcorpus nq hotpotqa fiqa arguana webis-touche2020 quora dbpedia-entity scidocs \
	fever climate-fever scifact msmarco \
	$(addprefix cqadupstack-,android english gaming gis mathematica physics programmers stats tex unix webmasters wordpress)
RUN_OPTS = --model $(MODEL) $(if $(ADAPTER),--adapter $(ADAPTER)) $(if $(KQ),--k-q $(KQ)) $(if $(KP),--k-p $(KP)) --device $(DEVICE) --dtype $(DTYPE) --batch-size $(BATCH) \
	--threads $(THREADS) --runs $(RUNS) --work $(RUNS)/work $(if $(MIRROR),--mirror $(MIRROR)) \
	$(if $(MODES),--modes $(MODES)) --maxsim $(MAXSIM) --dense-index $(DENSE_INDEX) $(if $(DENOISE),--denoise-steps $(DENOISE))

.PHONY: help install test demo bench-k bench-maxsim bench-index bench-scale report baselines anserini-configs paper-configs \
	paper-check beir-all $(addprefix beir-,$(BEIR_DATASETS))

help: ## show this help
	@echo "diffretriever-pyserini targets:"
	@grep -E '^[a-zA-Z_%-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | awk -F'\t' '{printf "  %-14s %s\n", $$1, $$2}'
	@echo "  beir-<name>    one BEIR dataset end to end; names: $(BEIR_DATASETS)"
	@echo
	@echo "variables (current value):"
	@echo "  MIRROR=$(MIRROR)  BEIR mirror folder (default \$$BEIR_MIRROR; empty = official download, checksummed)"
	@echo "  MODEL=$(MODEL) (packaged name, Dream/LLaDA/AR/encoder folder, or hub id)  ADAPTER=$(ADAPTER) (LoRA)"
	@echo "  KQ=$(KQ)  KP=$(KP) (empty: 4, or a fine-tuned model's own)  DEVICE=$(DEVICE)  DTYPE=$(DTYPE)  BATCH=$(BATCH)  THREADS=$(THREADS)"
	@echo "  DATASET=$(DATASET) (report)  MODES=$(MODES) (comma-separated; empty = all)  MAXSIM=$(MAXSIM) (exact|candidates|compressed)"
	@echo "  DENSE_INDEX=$(DENSE_INDEX) (flat|sq16|sq8|sq6|pq|ivfpq|hnsw-sq8)"
	@echo "  DENOISE=$(DENOISE) (denoising steps S; empty = 1, or a fine-tuned model's own)  CHECKPOINT=$(CHECKPOINT) (paper-check)"
	@echo "  RUNS=$(RUNS)  VENV=$(VENV)  PYTHON=$(PYTHON)  TORCH_SPEC=$(TORCH_SPEC)"

$(STAMP): $(SOURCES)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@# keep a torch the environment already has; otherwise the CPU wheel (never a multi-GB CUDA build by accident)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q ".[test]"
	@touch $@

install: $(STAMP) ## create or reuse the venv (VENV) and install the package with its dependencies

test: $(STAMP) ## run the test suite (unit + end-to-end on real SciFact data; needs MIRROR)
	BEIR_MIRROR="$(MIRROR)" $(PY) -m pytest $(PYTEST_ARGS)

demo: $(STAMP) ## SciFact: zero-shot readout, BM25 and mean-pooling controls, fine-tune on training claims, fine-tuned readout; table
	BEIR_MIRROR="$(MIRROR)" $(PY) -m diffretriever_pyserini demo --dataset scifact $(RUN_OPTS)

bench-k: $(STAMP) ## latency vs K: diffusion one-pass vs autoregressive readout, same network (last line: JSON)
	BEIR_MIRROR="$(MIRROR)" $(PY) benchmarks/bench_k.py

bench-maxsim: $(STAMP) ## MaxSim exact vs candidates+rerank on SciFact, K_q = K_p = 16 (last line: JSON)
	BEIR_MIRROR="$(MIRROR)" $(PY) benchmarks/bench_maxsim.py $(RUN_OPTS) --k-q $(or $(KQ),16) --k-p $(or $(KP),16)

bench-index: $(STAMP) ## index size vs quality and speed: dense and MaxSim index types on SciFact + a Dream-shaped synthetic store (last line: JSON)
	BEIR_MIRROR="$(MIRROR)" $(PY) benchmarks/bench_index.py $(RUN_OPTS)

bench-scale: $(STAMP) ## SIGKILL + resume, peak RSS 10k vs 100k documents, Ray vs single process (last line: JSON)
	BEIR_MIRROR="$(MIRROR)" $(PY) benchmarks/bench_scale.py

report: $(STAMP) ## K sweep {1,4,16} and (4,16), all modes, on DATASET: table + PNG under runs/
	BEIR_MIRROR="$(MIRROR)" $(PY) -m diffretriever_pyserini report --dataset $(DATASET) $(RUN_OPTS)

baselines: $(STAMP) ## BM25 flat + multifield on DATASET, fused with our hybrid (RRF, normalize); prints the table
	BEIR_MIRROR="$(MIRROR)" $(PY) -m diffretriever_pyserini baselines --dataset $(DATASET) $(RUN_OPTS)

anserini-configs: $(STAMP) ## (re)write anserini_configs/ from the measured runs, then check the DATASET one
	BEIR_MIRROR="$(MIRROR)" $(PY) -m diffretriever_pyserini encode-queries --dataset $(DATASET) $(RUN_OPTS)
	BEIR_MIRROR="$(MIRROR)" $(PY) -m diffretriever_pyserini anserini-configs $(RUN_OPTS)
	$(PY) -m diffretriever_pyserini check-config anserini_configs/beir-v1.0.0-$(DATASET).*.yaml

paper-configs: $(STAMP) ## (re)write anserini_configs/paper/ from the published numbers (data/paper-results.yaml)
	$(PY) -m diffretriever_pyserini paper-configs

paper-check: $(STAMP) ## released CHECKPOINT on DATASET vs the paper: OK / OKish / FAIL (MODEL=base, ADAPTER=adapter)
	BEIR_MIRROR="$(MIRROR)" $(PY) -m diffretriever_pyserini check-config \
		anserini_configs/paper/beir-v1.0.0-$(DATASET).diffretriever-$(CHECKPOINT).yaml \
		$(if $(MODEL:minilm=),--model $(MODEL)) $(if $(ADAPTER),--adapter $(ADAPTER)) --device $(DEVICE) \
		--dtype $(DTYPE) --batch-size $(BATCH) $(if $(MIRROR),--mirror $(MIRROR)) --work $(RUNS)/work --runs $(RUNS)

$(addprefix beir-,$(BEIR_DATASETS)): beir-%: $(STAMP)
	BEIR_MIRROR="$(MIRROR)" $(PY) -m diffretriever_pyserini run --dataset $* $(RUN_OPTS)

beir-all: $(addprefix beir-,$(BEIR_DATASETS)) ## every BEIR dataset of the registry, one after another
