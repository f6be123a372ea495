# The two commands a new user needs: `make demo` and `make test`. Everything else is set up here.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast demo clean gpu-prep gpu-smoke gpu-check

setup: $(STAMP)

# torch first, pinned to the CPU wheel on local disk, so no range below ever pulls a CUDA build.
$(STAMP): pyproject.toml Makefile constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[test,latency,litert,ray,train,live,tensorboard]'
	$(PIP) install -q --no-deps animal-mnist==0.4
	# headless Chromium renders report.html in the tests (tests/test_report_html.py fails without it in CI)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) \
	    || (test -z "$$CI" && echo "warning: chromium not installed; the report.html browser test will skip")
	touch $(STAMP)

# The import-layer contract (pyproject.toml, [tool.importlinter]) first: an upward import fails CI.
test: setup
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=20

# The inner loop: every test that no marker calls slow, cluster (Ray), browser (Chromium) or gpu.
test-fast: setup
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -m "not slow and not cluster and not browser and not gpu" --durations=10

# A real small search: animal-mnist proxy, onnxruntime latency measured here, T = MobileNetV2's latency.
DEMO_OUT ?= runs/demo-$(shell date +%Y%m%d-%H%M%S)
demo: setup
	@echo "make demo shows the whole loop in minutes: real latencies on onnxruntime, but a proxy of 1 epoch on"
	@echo "3,000 silhouettes (about 20-40 % accuracy), too short to rank models reliably. For a search whose"
	@echo "ranking means something, see configs/cifar10.yaml and docs/training.md."
	$(VENV)/bin/mnas search $(DEMO_OUT) --config configs/demo.yaml
	$(VENV)/bin/mnas report $(DEMO_OUT) --top 3

# The GPU check (docs/training.md, "The GPU path"). gpu-prep, here: the CIFAR-10 pack (gpu-data/, ~54 MiB) and
# the wheels the GPU machine's Python 3.12 lacks (.whl/); both are ignored by git and carried there.
# gpu-check, there: every measurement in one call, one JSON ($OUT/gpu_check.json where OUT is set).
GPU_WHEELS := pydantic==2.11.10 pydantic-core==2.33.2 annotated-types==0.7.0 typing-inspection==0.4.2
gpu-prep: setup
	$(PY) benchmarks/gpu_check.py prep
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	    -d .whl $(GPU_WHEELS)

gpu-smoke: setup
	$(PY) benchmarks/gpu_check.py --smoke --out /tmp/gpu_check_smoke.json

gpu-check:
	test ! -d .whl || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
	    --target /tmp/site .whl/*.whl
	PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:src python3 benchmarks/gpu_check.py --data gpu-data/cifar10-jpeg.npz \
	    --out $${OUT:-.}/gpu_check.json --budget $${GPU_BUDGET:-510}

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
