# Set-up and the two entry points of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# This machine's wheels; the library metadata (pyproject.toml) keeps looser ranges.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
DEMO_DIR   ?= runs/demo
PHANTOM    ?= data/phantom
# extra recipe overrides for the demo's training, e.g. make demo DEMO_OVERRIDES="trainer.steps=1500"
DEMO_OVERRIDES ?=
PYTEST_ARGS ?= -n 2

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(TORCH_PINS)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]" $(TORCH_PINS)
	touch $(STAMP)

install: $(STAMP)

# Built-in phantom -> Pix2pix MR->CT -> whole-volume inference on a held-out subject -> metrics.
demo: install
	$(BIN)/translate data phantom $(PHANTOM) --subjects 40 --seed 0
	rm -rf $(DEMO_DIR)
	$(BIN)/translate fit recipes/mr2ct.yaml data.root=$(PHANTOM) trainer.out_dir=$(DEMO_DIR) $(DEMO_OVERRIDES)
	subject=$$($(BIN)/python -c "import json; print(json.load(open('$(PHANTOM)/split.json'))['test'][0])") && \
	$(BIN)/translate infer $(DEMO_DIR)/checkpoints/last.pt $(PHANTOM)/$$subject/mr.nii.gz $(DEMO_DIR)/$${subject}_synthetic_ct.nii.gz && \
	$(BIN)/translate evaluate $(DEMO_DIR)/$${subject}_synthetic_ct.nii.gz $(PHANTOM)/$$subject/ct.nii.gz

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python benchmarks/speed.py --out benchmarks/results/speed_cpu.json --markdown benchmarks/results/speed_cpu.md

clean:
	rm -rf $(DEMO_DIR) $(PHANTOM) .pytest_cache
