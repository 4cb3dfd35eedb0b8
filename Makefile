# The two commands of the README: `make book` (the main job) and `make test` (what CI runs).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CHAPTERS := $(sort $(wildcard book/[0-9][0-9]_*.ipynb))
CELL_TIMEOUT := 1200

.PHONY: book test chapters html clean

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[book,test,cpu]"
	touch $@

book: chapters html

# Execute every chapter in place with its default (offline) parameters.
chapters: $(VENV)/.installed
	for nb in $(CHAPTERS); do \
	  $(PY) -m papermill --cwd book -k python3 --execution-timeout $(CELL_TIMEOUT) $$nb $$nb || exit 1; \
	done
	$(PY) tools/clean_notebooks.py $(CHAPTERS)

html: $(VENV)/.installed
	$(VENV)/bin/jupyter-book build . -W -n --keep-going

# Unit tests, papermill runs of every chapter, and nbval on the committed notebooks, on two
# pytest-xdist workers (conftest.py groups the work); the chapters go first, being the longest.
# pytest exits 5 when it collects nothing, which fails this target too.
test: $(VENV)/.installed
	$(PY) -m pytest book tests -n 2 --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

clean:
	rm -rf _build
