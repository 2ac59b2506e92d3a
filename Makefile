# mt-lstm: every target bootstraps what it needs, so `make train` and `make test` work on a fresh clone.
SHELL := bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

RUN ?= runs/multi30k-en-de
CONFIG ?= configs/multi30k_en_de.yaml
SRC ?= en
TGT ?= de
SHARED_DATA := ../shared/data/multi30k
DATA_DIR ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),)
HF_DATASET ?= bentrevett/multi30k
SPLIT ?= test_2016_flickr
JOEY ?=
ARGS ?=

.PHONY: install data train eval demo serve test test-fast bench scale-bench serve-bench students-bench messy-bench demo-bench transfer-experiment sweep compare lint clean

install: $(STAMP)

# torch==2.13.0 goes first: with it installed, the project's torch range adds nothing (no CUDA wheels on CPU boxes).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# data.* settings in ARGS (e.g. ARGS="data.vocab_size=4000") prepare RUN with them: `mt train` refuses a config
# whose data.* settings differ from those RUN/data was prepared with.
data: $(STAMP)
	$(BIN)/mt prepare --run $(RUN) --config $(CONFIG) --src $(SRC) --tgt $(TGT) \
	  $(if $(DATA_DIR),--data-dir $(DATA_DIR),--hf-dataset $(HF_DATASET)) $(filter data.%,$(ARGS))

# Training under tcmalloc where the system has it (Debian/Ubuntu: libtcmalloc-minimal4): the same speed, and memory
# that stays flat where glibc's heap grows every epoch (docs/results.md, "Memory"). ALLOCATOR= trains without it.
ALLOCATOR ?= $(firstword $(wildcard /usr/lib/*-linux-gnu/libtcmalloc_minimal.so.4 /usr/lib64/libtcmalloc_minimal.so.4))

train: data
	$(if $(ALLOCATOR),LD_PRELOAD=$(ALLOCATOR) )$(BIN)/mt train --run $(RUN) --config $(CONFIG) data.src=$(SRC) data.tgt=$(TGT) $(ARGS)

eval: $(STAMP)
	$(BIN)/mt eval --run $(RUN) $(ARGS)

demo: $(STAMP)
	$(BIN)/mt demo --run $(RUN) $(ARGS)

# the HTTP JSON API (LibreTranslate's /translate, /translate_batch, /docs) on http://127.0.0.1:8000
serve: $(STAMP)
	$(BIN)/mt serve --run $(RUN) $(ARGS)

# one pytest worker per core, at most 4 (pytest-xdist); the idle one steals queued tests from the busy one
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist worksteal $(ARGS)

# the unit tests without end-to-end runs (no training, no subprocesses): the loop for development
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(ARGS)

# JOEY=DIR (made by ../shared/reference/run_joeynmt.sh DIR SECONDS): Joey NMT's decoding timed beside ours
bench: data
	$(BIN)/python -m bench --run $(RUN) --split $(SPLIT) $(if $(JOEY),--joey $(JOEY)) $(ARGS)

# mt prepare + a short mt train on synthetic corpora of N unique pairs: time, peak memory, tokens/s per N
scale-bench: $(STAMP)
	$(BIN)/python -m bench.scale --data-dir $(or $(DATA_DIR),$(SHARED_DATA)) --src $(SRC) --tgt $(TGT) $(ARGS)

# the web demo measured end to end: start-up, browser latency (system chromium), concurrent API users, memory
# messy input (names, numbers, links, tags, capitals, paragraphs) with the text pipeline on and off; SPLIT=val to tune
# mt serve under 1, 8 and 50 concurrent clients, batching on and off, beside mt translate on the same sentences
serve-bench: $(STAMP)
	$(BIN)/python -m bench.serve --run $(RUN) --split $(SPLIT) $(ARGS)

# teachers and students (mt distill) side by side: STUDENT=RUN of the student
STUDENT ?= runs/student
students-bench: $(STAMP)
	$(BIN)/python -m bench.students --split $(SPLIT) --arm "teacher beam 5=$(RUN):5" --arm "teacher greedy=$(RUN):1" \
		--arm "student greedy=$(STUDENT):1" --arm "student beam 5=$(STUDENT):5" \
		--arm "student greedy, lexical shortlist=$(STUDENT):1:decode.lexical_shortlist=true" $(ARGS)

messy-bench: $(STAMP)
	$(BIN)/python -m bench.messy --run $(RUN) --split $(SPLIT) $(if $(filter en-de,$(SRC)-$(TGT)),--glossary bench/glossary.en-de.tsv) $(ARGS)

demo-bench: $(STAMP)
	$(BIN)/python -m bench.demo --run $(RUN) $(ARGS)

# LM pre-training vs. training from scratch with 3,000 and 10,000 parallel pairs (about 2 hours on 2 cores)
transfer-experiment: $(STAMP)
	$(BIN)/python -m experiments.transfer $(if $(DATA_DIR),--data-dir $(DATA_DIR),) --src $(SRC) --tgt $(TGT) --split $(SPLIT) $(ARGS)

# e.g. make sweep ARGS='--minutes 15 "model.dropout=0.2" "model.dropout=0.4" "data.vocab_size=16000"'
sweep: data
	$(BIN)/python -m experiments.sweep --base $(RUN) --out $(RUN)-sweep $(ARGS)

# finished runs side by side on validation: RUNS="runs/a runs/b ..." (the first is the reference; default: RUN)
RUNS ?= $(RUN)
compare: $(STAMP)
	$(BIN)/python -m experiments.compare $(RUNS) $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check $(wildcard mt data_prep eval demo tests bench experiments)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
