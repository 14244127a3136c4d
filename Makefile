# diffretriever-pyserini: `make help` lists the targets and variables.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# The stack: the newest working Python >= 3.12 with Pyserini 2.4 (primary), else Python 3.11 with Pyserini 1.6.
# PYTHON=... overrides the choice; each interpreter gets its own virtual environment.
ifeq ($(origin PYTHON), undefined)
PYTHON := $(shell bash tools/find-python)
endif
PY_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
LEGACY := $(filter 3.10 3.11,$(PY_VERSION))
PYSERINI_SPEC ?= $(if $(LEGACY),pyserini==1.6.0,pyserini==2.4.0)
VENV ?= .venv-py$(PY_VERSION)
TORCH_SPEC ?= torch==2.13.0
# the Pyserini-facing tests and the SciFact end to end: what the Pyserini 1.6 / Python 3.11 job runs
LEGACY_TESTS ?= tests/test_pyserini_native.py tests/test_offline.py tests/test_java.py tests/test_imports.py \
	tests/test_e2e_scifact.py tests/test_trec_anserini.py tests/test_fusion_runs_eval.py tests/test_reference_readout.py
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
CORPUS ?=
TOPICS ?=
QRELS ?=
NAME ?=
CONFIGS ?=
BENCH ?=
FREEZE ?=
PYTEST_ARGS ?=

PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
SOURCES := setup.cfg setup.py pyproject.toml diffretriever_pyserini_startup.py \
	$(shell find diffretriever_pyserini -name '*.py' -o -name '*.yaml' 2>/dev/null)
BEIR_DATASETS := trec-covid nfcorpus nq hotpotqa fiqa arguana webis-touche2020 quora dbpedia-entity scidocs \
	fever climate-fever scifact msmarco \
	$(addprefix cqadupstack-,android english gaming gis mathematica physics programmers stats tex unix webmasters wordpress)
# registry sets that exist only in a local mirror (not downloadable): beir-<name> needs MIRROR
MIRROR_ONLY_DATASETS := msmarco-dl19-sample
RUN_OPTS = --model $(MODEL) $(if $(ADAPTER),--adapter $(ADAPTER)) $(if $(KQ),--k-q $(KQ)) $(if $(KP),--k-p $(KP)) --device $(DEVICE) --dtype $(DTYPE) --batch-size $(BATCH) \
	--threads $(THREADS) --runs $(RUNS) --work $(RUNS)/work $(if $(MIRROR),--mirror $(MIRROR)) \
	$(if $(MODES),--modes $(MODES)) --maxsim $(MAXSIM) --dense-index $(DENSE_INDEX) $(if $(DENOISE),--denoise-steps $(DENOISE))

.PHONY: help install stack stack-numbers test test-legacy demo bench-bm25 bench-k bench-maxsim bench-index bench-scale report baselines anserini-configs collection paper-configs results docs repro-page \
	paper-check beir-all $(addprefix beir-,$(BEIR_DATASETS) $(MIRROR_ONLY_DATASETS))

help: ## show this help
	@echo "diffretriever-pyserini targets:"
	@grep -E '^[a-zA-Z_%-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | awk -F'\t' '{printf "  %-14s %s\n", $$1, $$2}'
	@echo "  beir-<name>    one BEIR dataset end to end; names: $(BEIR_DATASETS)"
	@echo "                 (with MIRROR only: $(MIRROR_ONLY_DATASETS))"
	@echo
	@echo "variables (current value):"
	@echo "  MIRROR=$(MIRROR)  BEIR mirror folder (default \$$BEIR_MIRROR; empty = official download, checksummed)"
	@echo "  MODEL=$(MODEL) (packaged name, Dream/LLaDA/AR/encoder folder, or hub id)  ADAPTER=$(ADAPTER) (LoRA)"
	@echo "  KQ=$(KQ)  KP=$(KP) (empty: 4, or a fine-tuned model's own)  DEVICE=$(DEVICE)  DTYPE=$(DTYPE)  BATCH=$(BATCH)  THREADS=$(THREADS)"
	@echo "  DATASET=$(DATASET) (report)  MODES=$(MODES) (comma-separated; empty = all)  MAXSIM=$(MAXSIM) (exact|candidates|compressed)"
	@echo "  DENSE_INDEX=$(DENSE_INDEX) (flat|sq16|sq8|sq6|pq|ivfpq|hnsw-sq8)"
	@echo "  DENOISE=$(DENOISE) (denoising steps S; empty = 1, or a fine-tuned model's own)  CHECKPOINT=$(CHECKPOINT) (paper-check)"
	@echo "  CORPUS=$(CORPUS) TOPICS=$(TOPICS) QRELS=$(QRELS) NAME=$(NAME) (collection)  CONFIGS=$(CONFIGS) (anserini-configs output)"
	@echo "  RUNS=$(RUNS)  VENV=$(VENV)  PYTHON=$(PYTHON) (Python $(PY_VERSION))  PYSERINI_SPEC=$(PYSERINI_SPEC)"
	@echo "  TORCH_SPEC=$(TORCH_SPEC)  LEGACY_PYTHON=$(LEGACY_PYTHON) (test-legacy)"

$(STAMP): $(SOURCES)
	@test -n "$(PY_VERSION)" || { echo "no usable Python found (looked for >= 3.12, then 3.11); set PYTHON=" >&2; exit 2; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@# keep a torch the environment already has; otherwise TORCH_SPEC (on Python 3.11 the CPU wheel on this disk)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q "$(PYSERINI_SPEC)" ".[test]"
	@touch $@
	@$(MAKE) --no-print-directory stack PYTHON=$(PYTHON) VENV=$(VENV)

install: $(STAMP) ## create or reuse the venv (VENV) for the chosen stack and install the package; prints the stack

stack: ## print the stack of VENV (Python, Pyserini, torch, transformers, Java)
	@$(PY) -c "import sys, importlib.metadata as m; print('stack: Python %s + Pyserini %s (torch %s, transformers %s, faiss %s) in $(VENV)' % (sys.version.split()[0], m.version('pyserini'), m.version('torch'), m.version('transformers'), m.version('faiss-cpu')))"

test: $(STAMP) ## run the test suite on the primary stack (unit + end-to-end on real SciFact data; needs MIRROR)
	@$(MAKE) --no-print-directory stack PYTHON=$(PYTHON) VENV=$(VENV)
	BEIR_MIRROR="$(MIRROR)" $(PY) -m pytest $(PYTEST_ARGS)

LEGACY_PYTHON ?= $(shell command -v python3.11 || ls $$(pyenv root 2>/dev/null)/versions/3.11.*/bin/python3.11 2>/dev/null | tail -1)

test-legacy: ## Pyserini 1.6 / Python 3.11: the Pyserini-facing tests and the SciFact end to end (LEGACY_TESTS)
	$(MAKE) --no-print-directory test PYTHON=$(LEGACY_PYTHON) PYTEST_ARGS="$(LEGACY_TESTS) $(PYTEST_ARGS)"

demo: $(STAMP) ## SciFact: zero-shot readout, BM25 and mean-pooling controls, fine-tune on training claims, fine-tuned readout; table
	BEIR_MIRROR="$(MIRROR)" $(PY) -m diffretriever_pyserini demo --dataset scifact $(RUN_OPTS)

stack-numbers: $(STAMP) ## the same SciFact slice runs on this stack: metrics + run-file digests (runs/stack-numbers/)
	BEIR_MIRROR="$(MIRROR)" $(PY) benchmarks/stack_numbers.py

bench-bm25: $(STAMP) ## BM25 flat + multifield, 1,000 SciFact abstracts as long topics at 1,000 hits: peak RSS and time beside pyserini.search.lucene (last line: JSON)
	BEIR_MIRROR="$(MIRROR)" $(PY) benchmarks/bench_bm25.py --mirror "$(MIRROR)" --work $(RUNS)/work

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

ANSERINI_ROOT = $(RUNS)/work/anserini
anserini-configs: $(STAMP) ## Anserini regression config of DATASET's measured run (files laid out under RUNS/work/anserini; CONFIGS=anserini_configs refreshes the committed one), then check it
	BEIR_MIRROR="$(MIRROR)" $(PY) -m diffretriever_pyserini encode-queries --dataset $(DATASET) $(RUN_OPTS)
	BEIR_MIRROR="$(MIRROR)" $(PY) -m diffretriever_pyserini anserini-configs --dataset $(DATASET) $(RUN_OPTS) \
		--root $(ANSERINI_ROOT) $(if $(CONFIGS),--folder $(CONFIGS) --overwrite)
	$(PY) -m diffretriever_pyserini check-config \
		$(or $(CONFIGS),$(ANSERINI_ROOT)/src/main/resources/regression)/beir-v1.0.0-$(DATASET).diffretriever.$(MODEL)*.yaml

collection: $(STAMP) ## your own collection end to end: CORPUS=(JsonCollection folder or JSONL) TOPICS=(TSV, JSON, JSONL or a Pyserini name) [QRELS=] [NAME=]
	@test -n "$(CORPUS)" -a -n "$(TOPICS)" || { echo "make collection needs CORPUS= and TOPICS= (QRELS= and NAME= optional)" >&2; exit 2; }
	$(PY) -m diffretriever_pyserini run --corpus "$(CORPUS)" --topics "$(TOPICS)" $(if $(QRELS),--qrels "$(QRELS)") \
		$(if $(NAME),--name $(NAME)) $(filter-out --mirror $(MIRROR),$(RUN_OPTS))

paper-configs: $(STAMP) ## (re)write paper_configs/ from the published numbers (diffretriever_pyserini/resources/paper-results.yaml)
	$(PY) -m diffretriever_pyserini paper-configs

paper-check: $(STAMP) ## released CHECKPOINT on DATASET vs the paper: OK / OKish / FAIL (MODEL=base, ADAPTER=adapter)
	BEIR_MIRROR="$(MIRROR)" $(PY) -m diffretriever_pyserini check-config \
		paper_configs/beir-v1.0.0-$(DATASET).diffretriever-$(CHECKPOINT).yaml \
		$(if $(MODEL:minilm=),--model $(MODEL)) $(if $(ADAPTER),--adapter $(ADAPTER)) --device $(DEVICE) \
		--dtype $(DTYPE) --batch-size $(BATCH) $(if $(MIRROR),--mirror $(MIRROR)) --work $(RUNS)/work --runs $(RUNS)

results: ## copy the metrics, configs and benchmark JSON of RUNS into the committed results/ (BENCH="name=output.log ...")
	$(PY) tools/collect_results.py --runs $(RUNS) --results results $(foreach b,$(BENCH),--bench $(b))

docs: $(STAMP) ## rebuild every results table and plot of the README and docs/ from results/
	$(PY) tools/docsgen.py --results results

repro-page: $(STAMP) ## the two-click reproduction page docs/repro/index.html and its YAML source, from results/ (FREEZE=1 records the expected values first)
	$(PY) -m diffretriever_pyserini.evaluate.twocr --results results --out docs/repro $(if $(FREEZE),--freeze)

$(addprefix beir-,$(BEIR_DATASETS) $(MIRROR_ONLY_DATASETS)): beir-%: $(STAMP)
	BEIR_MIRROR="$(MIRROR)" $(PY) -m diffretriever_pyserini run --dataset $* $(RUN_OPTS)

beir-all: $(addprefix beir-,$(BEIR_DATASETS)) ## every BEIR dataset of the registry, one after another
