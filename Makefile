# The README's two commands are the contract: `make run` and `make test` on a fresh machine.
VENV   ?= .venv
PYTHON ?= python3
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: run test bench bootstrap venv check clean fuzz demo

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

bootstrap:
	bash scripts/bootstrap

run: $(STAMP)
	$(VENV)/bin/voicegw run

# pytest-xdist: the test files are spread over TEST_WORKERS processes, each file whole in
# one worker (--dist loadfile: a module's Asterisk or FreeSWITCH is started once, its
# tests run in order); tests/conftest.py hands out the slow wire files first. Most of the
# suite waits on peers and timers, so 2 workers fit 2 cores (docs/testing.md: CI time).
# Then the tests marked `alone` (a soak, a flood: they load the machine on purpose and
# assert the daemon keeps up), in one process with nothing beside them. Both phases
# always run; either failing fails the target. TEST_WORKERS=0: the first phase in one
# process, as before.
TEST_WORKERS ?= 2
test: $(STAMP) bootstrap
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not alone" --durations=30; \
	status=$$?; $(PY) -m pytest -m alone --durations=5 || status=$$?; exit $$status

# Every benchmark, in turn (about 15 minutes; figures in docs/performance.md). The
# call-rate and RTP benches install their anchors (kamailio, rtpengine) when missing.
bench: $(STAMP) bootstrap
	$(PY) scripts/bench/parser.py
	$(PY) scripts/bench/options_rate.py
	$(PY) scripts/bench/call_rate.py
	$(PY) scripts/bench/rtp_relay.py --rtpengine
	$(PY) scripts/bench/call_memory.py
	$(PY) scripts/bench/transfer_rate.py
	$(PY) scripts/bench/warm_complete.py
	$(PY) scripts/bench/store_writer.py --calls 2000

# A scripted call with sipp peers: the bot REFERs -> voicegw REFERs the carrier, which
# NOTIFYs 486 -> hold prompt -> INVITE to the agent -> answered; prints the call's SIP
# ladder and timeline (scripts/demo.py).
demo: $(STAMP) bootstrap
	$(PY) scripts/demo.py

# Long fuzzing runs (CI runs the same targets briefly under hypothesis: tests/sip/test_fuzz.py).
# atheris is installed on demand; crashes land in var/fuzz/crashes/.
FUZZ_SECONDS ?= 60
fuzz: $(STAMP)
	$(PY) -m pip install --quiet 'atheris>=2.3'
	VOICEGW_FUZZ_SCALE=20 $(PY) -m pytest -q tests/sip/test_fuzz.py tests/sip/test_parser_props.py
	$(PY) scripts/fuzz/run.py all --seconds $(FUZZ_SECONDS)

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
