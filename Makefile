# The two set-up commands: `make run` and `make test` work from a fresh clone.
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
SOURCES := $(shell find core_rt sim -name '*.pyx' -o -name '*.pxd' -o -name '*.h') setup.py pyproject.toml

.PHONY: run test bench soak lint install clean mosquitto rt-tests chromium postgresql fmt fleet-bench

$(VPY):
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip

# The editable install maps chair.profiles onto profiles/ with a finder; setuptools says so in a
# multi-line notice on every build, which is all the noise the build would otherwise make.
$(STAMP): $(VPY) $(SOURCES)
	PYTHONWARNINGS="ignore:Editable installation" $(VPY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	mkdir -p out
	$(VENV)/bin/chair run relax --speed 60 --telemetry out/session.jsonl --summary out/summary.json --plot out/session.png

mosquitto:
	@command -v mosquitto >/dev/null 2>&1 || command -v /usr/sbin/mosquitto >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing mosquitto (apt-get)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q mosquitto mosquitto-clients >/dev/null || \
	    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q mosquitto mosquitto-clients >/dev/null; }; \
	  else echo "mosquitto is missing: install it with 'sudo apt-get install mosquitto mosquitto-clients'"; exit 1; fi; }

# The web remote's page tests drive a real headless Chromium through Playwright (docs/web.md):
# the distribution's chromium, so nothing is downloaded from outside the package mirrors.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium (apt-get)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null || \
	    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }; \
	  else echo "chromium is missing: install it with 'sudo apt-get install chromium'"; exit 1; fi; }

# The fleet service's tests start a PostgreSQL of their own (tests/postgres_server.py) from the
# distribution's packages; without root they skip and say so.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing postgresql (apt-get)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null || \
	    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null; }; \
	  else echo "postgresql is missing: the PostgreSQL tests skip (sudo apt-get install postgresql)"; fi; }

rt-tests:
	@command -v cyclictest >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing rt-tests (cyclictest)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q rt-tests >/dev/null || \
	    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q rt-tests >/dev/null; }; \
	  else echo "cyclictest is missing: install it with 'sudo apt-get install rt-tests'"; exit 1; fi; }

# CPU-bound tests spread over the cores; then the wall-clock ones (HIL, broker, browser), which
# mostly wait on real time, two at a time (the HIL ones in turn on one worker); last the few that time the real-time loop itself, alone
# (tests/conftest.py). The slowest of each part are listed: the suite must stay under 10 minutes.
test: $(STAMP) mosquitto chromium postgresql
	$(VPY) -m pytest -q -n auto -m "not serial" -p no:cacheprovider --durations=8
	$(VPY) -m pytest -q -n 2 --dist loadgroup -m "serial and not alone" -p no:cacheprovider --durations=12
	$(VPY) -m pytest -q -m alone -p no:cacheprovider

bench: $(STAMP) rt-tests mosquitto chromium
	$(VENV)/bin/chair bench

# How many simulated chairs this machine holds (docs/fleet-sim.md, Benchmark): about 10 minutes.
fleet-bench: $(STAMP) mosquitto
	$(VENV)/bin/chair bench --only fleet

# The board link's soak (docs/board-protocol.md, Measured): SESSIONS whole real-time sessions of
# MINUTES against `chair board`, one after another (50 x 5 min: about 4.5 hours).
SESSIONS ?= 50
MINUTES  ?= 5
soak: $(STAMP)
	mkdir -p out
	$(VPY) -m chair.bench.soak --sessions $(SESSIONS) --minutes $(MINUTES) --json out/soak.json

lint: $(STAMP)
	$(VENV)/bin/ruff check chair core_rt sim tests setup.py
	$(VENV)/bin/ruff format --check chair core_rt sim tests setup.py
	$(VENV)/bin/mypy

fmt: $(STAMP)
	$(VENV)/bin/ruff format chair core_rt sim tests setup.py
	$(VENV)/bin/ruff check --fix chair core_rt sim tests setup.py

clean:
	rm -rf build *.egg-info core_rt/*.c core_rt/*.so core_rt/board/*.c core_rt/board/*.so sim/*.c sim/*.so $(VENV) out
