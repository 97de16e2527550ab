# One command to set up and run the tests, one to set up and run the pipeline.
#   make test    create .venv, install the project with its test extra, run the test suite
#   make run     create .venv, install, run the paper-scale pipeline (downloads CIFAR-10)
#   make smoke   the whole DAG small and fast on CPU (synthetic data, no internet)
#   make full    all 50 000 training images (CIFAR-10 JPEG copy from ../shared), about 3 h on 2 CPU cores
#   make bench   benchmarks against the usual alternatives (benchmarks/README.md)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 8

.PHONY: docs full-positive-control full-seed autoencoder-sweep autoencoder-cross mini-robust mini-robust-detection install test run smoke mini full bench clean-results

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e ".[test,slurm,bench,robustbench,corruptions]"
	touch $@

install: $(BIN)/.installed

test: install
	$(BIN)/pytest -ra --durations=15 -n 2

# each config is checked first: Snakemake reads --configfile files before any project code runs, and
# reports a YAML syntax error there without file or line (advdefense-check-config names both)
# `run` also says up front, on a machine without a GPU, how long the paper config takes there
run: install
	$(BIN)/advdefense-check-config config/config.yaml
	$(BIN)/advdefense-estimate config/config.yaml
	$(BIN)/snakemake --cores $(CORES) --resources gpu=1

smoke: install
	$(BIN)/advdefense-check-config config/smoke.yaml
	$(BIN)/snakemake --cores 2 --resources gpu=2 --configfile config/smoke.yaml

mini: install
	$(BIN)/advdefense-check-config config/cifar10-mini.yaml
	$(BIN)/snakemake --cores 2 --resources gpu=1 --configfile config/cifar10-mini.yaml

# the positive control: a standard and a fast-AT ResNet-20 side by side over three seeds (AutoAttack at 8/255)
mini-robust: install
	$(BIN)/advdefense-check-config config/cifar10-mini-robust.yaml
	$(BIN)/snakemake --cores 2 --resources gpu=2 --configfile config/cifar10-mini-robust.yaml

# every detector on both classifiers of the positive control (adds detection to its runs, re-runs none of them)
mini-robust-detection: install
	$(BIN)/advdefense-check-config config/cifar10-mini-robust.yaml config/mini-robust-detection.yaml
	$(BIN)/snakemake --cores 2 --resources gpu=2 --configfile config/cifar10-mini-robust.yaml config/mini-robust-detection.yaml

JPEG_BATCHES := resources/cifar-10-jpeg/cifar-10-batches-py

$(JPEG_BATCHES)/test_batch: | install
	$(BIN)/python ../shared/data/cifar-10-jpeg/build_batches.py resources/cifar-10-jpeg

full: install $(JPEG_BATCHES)/test_batch
	$(BIN)/advdefense-check-config config/cifar10-full.yaml
	$(BIN)/advdefense-estimate config/cifar10-full.yaml
	$(BIN)/snakemake --cores 2 --resources gpu=1 --configfile config/cifar10-full.yaml

# one seed of the full-size run over three seeds (config/full-seeds.yaml, the reproduction page): make full-seed SEED=0
SEED ?= 0
full-seed: install $(JPEG_BATCHES)/test_batch
	mkdir -p results/overlays && printf 'seeds: [%s]\n' $(SEED) > results/overlays/seed$(SEED).yaml
	$(BIN)/advdefense-check-config config/cifar10-full.yaml config/full-seeds.yaml results/overlays/seed$(SEED).yaml
	$(BIN)/snakemake --cores 2 --resources gpu=1 --configfile config/cifar10-full.yaml config/full-seeds.yaml \
		results/overlays/seed$(SEED).yaml

# the autoencoder sweep (issue 41, config/autoencoder-sweep.yaml) on seed 0 of the full-size run, its classifier reused
autoencoder-sweep: install $(JPEG_BATCHES)/test_batch
	mkdir -p results/overlays && printf 'seeds: [0]\n' > results/overlays/seed0.yaml
	$(BIN)/advdefense-check-config config/cifar10-full.yaml config/full-seeds.yaml results/overlays/seed0.yaml \
		config/autoencoder-sweep.yaml
	$(BIN)/snakemake --cores 2 --resources gpu=1 --configfile config/cifar10-full.yaml config/full-seeds.yaml \
		results/overlays/seed0.yaml config/autoencoder-sweep.yaml

# the 2 x 2 cross (issue 41): the mini and the full-size autoencoders, each in front of the mini and the full-size
# classifier, on the test images of seed 0 of the full-size run. After `make mini` and `make autoencoder-sweep` in
# this checkout: two overlays written here with the models' sha256 (the mini autoencoder as one more sweep point of
# the full-size run; the mini classifier brought into a run on the JPEG copy, run cifar10-jpeg-miniclf-seed0, with
# both autoencoders as its points), both sweeps, then the cross table into docs/data/full-size/ (then `make docs`)
CROSS := resources/cross
SHA = $$(sha256sum $(1) | cut -c1-64)
FULL_SWEEP := results/tables/cifar10-jpeg-seed0/autoencoder_sweep.csv
CROSS_SWEEP := results/tables/cifar10-jpeg-miniclf-seed0/autoencoder_sweep.csv
autoencoder-cross: install $(JPEG_BATCHES)/test_batch
	# brought models are copied out of results/ (a path there is a file the workflow makes, not one it is given)
	mkdir -p results/overlays $(CROSS)
	cp -p results/classifier/cifar10-mini/model.pt $(CROSS)/mini-classifier.pt
	cp -p results/autoencoder/cifar10-mini/model.pt $(CROSS)/mini-autoencoder.pt
	cp -p results/autoencoder/cifar10-jpeg-seed0/model.pt $(CROSS)/full-autoencoder.pt
	printf 'purification:\n  autoencoder_sweep:\n    points:\n      mini_ae: {checkpoint: %s, sha256: %s}\n' \
		$(CROSS)/mini-autoencoder.pt $(call SHA,$(CROSS)/mini-autoencoder.pt) > results/overlays/cross-mini-ae.yaml
	printf 'dataset: {name: cifar10-jpeg-miniclf}\nclassifier:\n  source: checkpoint\n  checkpoint: {path: %s, builder: "advdefense.models.resnet:CifarResNet", sha256: %s}\npurification:\n  autoencoder_sweep:\n    epsilon: 0.02\n    adaptive: pgd\n    points:\n      mini_ae: {checkpoint: %s, sha256: %s}\n      full_ae: {checkpoint: %s, sha256: %s}\n' \
		$(CROSS)/mini-classifier.pt $(call SHA,$(CROSS)/mini-classifier.pt) $(CROSS)/mini-autoencoder.pt \
		$(call SHA,$(CROSS)/mini-autoencoder.pt) $(CROSS)/full-autoencoder.pt $(call SHA,$(CROSS)/full-autoencoder.pt) \
		> results/overlays/cross-mini-classifier.yaml
	$(BIN)/snakemake --cores 2 --resources gpu=1 $(FULL_SWEEP) --configfile config/cifar10-full.yaml \
		config/full-seeds.yaml results/overlays/seed0.yaml config/autoencoder-sweep.yaml results/overlays/cross-mini-ae.yaml
	$(BIN)/snakemake --cores 2 --resources gpu=1 $(CROSS_SWEEP) --configfile config/cifar10-full.yaml \
		config/full-seeds.yaml results/overlays/seed0.yaml results/overlays/cross-mini-classifier.yaml
	$(BIN)/advdefense-docs cross --folder full-size --cell "mini,mini=$(CROSS_SWEEP):mini_ae" \
		--cell "mini,full-size=$(CROSS_SWEEP):full_ae" --cell "full-size,mini=$(FULL_SWEEP):mini_ae" \
		--cell "full-size,full-size=$(FULL_SWEEP):code1024"

# the positive control at full size (issue 45): fast adversarial training of the same ResNet-20 on all 50 000 images
full-positive-control: install $(JPEG_BATCHES)/test_batch
	$(BIN)/advdefense-check-config config/full-positive-control.yaml
	$(BIN)/snakemake --cores 2 --resources gpu=1 --configfile config/full-positive-control.yaml

# docs/results.md from the CSVs in docs/data/ (advdefense-docs collect puts a finished run's there)
docs: install
	$(BIN)/advdefense-docs render docs/data --out docs/results.md

bench: install
	$(BIN)/python benchmarks/run.py

clean-results:
	rm -rf results/data results/classifier results/attacks logs
