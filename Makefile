# The two commands a new user needs: `make demo` and `make test`. Everything else is set up here.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast demo clean

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
	$(PY) -m pytest -q --durations=20

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

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
