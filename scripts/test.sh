#!/usr/bin/env bash
# Quick start, part 2 (and what CI runs): set up with the dev tools, lint, check types, run the tests.
# Arguments go to pytest (e.g. -m "not slow"). The SLURM tests use a running dev cluster (two nodes), and
# start one (installing Debian packages, as root) only under CI=true or SWEEP_TEST_START_SLURM=1;
# the browser tests need Debian's chromium, installed here only under CI=true; the PostgreSQL tests a
# server that scripts/postgres-dev.sh starts under CI=true or SWEEP_TEST_START_POSTGRES=1 (or one named
# by SWEEP_TEST_POSTGRES_URL); the live-view tests tmux, installed here only under CI=true. Otherwise they skip.
set -euo pipefail
cd "$(dirname "$0")/.."

# Wall time per stage, printed as a table at the end (also when a stage fails): what the suite's time
# goes to, measured on every run.
STAGES=()
STAGE_NAME=""
STAGE_START=$SECONDS
RUN_START=$SECONDS
stage() {
    if [ -n "$STAGE_NAME" ]; then STAGES+=("$STAGE_NAME $((SECONDS - STAGE_START))"); fi
    STAGE_NAME="$1"
    STAGE_START=$SECONDS
}
report_stages() {
    stage ""
    echo "== wall time per stage (s)"
    for line in "${STAGES[@]}"; do printf '   %-10s %5s\n' ${line}; done
    printf '   %-10s %5s\n' total $((SECONDS - RUN_START))
}
trap report_stages EXIT

stage setup
echo "== python: $(python3 --version)"
. scripts/setup.sh dev
python -c "import torch; print('== torch', torch.__version__, 'cuda' if torch.cuda.is_available() else 'cpu')"

stage lint
echo "== ruff"
ruff check sweep trainer tests benchmarks examples
ruff format --check sweep trainer tests benchmarks examples
# mypy: first with pytest arguments; in the full run (no arguments, CI) beside the cluster faults below,
# which mostly wait on restarted daemons while it takes a core (about 20 s saved)
FULL_RUN=0
if [ $# -eq 0 ] && [ -z "${SWEEP_TEST_WORKERS:-}" ]; then FULL_RUN=1; fi
if [ "$FULL_RUN" -eq 0 ]; then
    stage types
    echo "== mypy"
    mypy sweep trainer benchmarks
fi

stage services
if [ "${CI:-}" = "true" ] || [ "${SWEEP_TEST_START_SLURM:-}" = "1" ]; then
    echo "== slurm: a cluster of two nodes on this machine for the SLURM tests (tests/sweep/executors/test_slurm*.py)"
    bash scripts/slurm-dev-cluster.sh start
fi
if [ "${CI:-}" = "true" ] || [ "${SWEEP_TEST_START_POSTGRES:-}" = "1" ]; then
    echo "== postgresql: a server on 127.0.0.1 for tests/sweep/store/test_claims.py (several launchers)"
    # the URL is the last line (and the only one on stdout); tail guards against a tool that prints there
    SWEEP_TEST_POSTGRES_URL=$(bash scripts/postgres-dev.sh start | tail -1)
    case "$SWEEP_TEST_POSTGRES_URL" in
        postgresql://*) export SWEEP_TEST_POSTGRES_URL ;;
        *) echo "error: scripts/postgres-dev.sh start printed no URL: '$SWEEP_TEST_POSTGRES_URL'" >&2; exit 1 ;;
    esac
fi
if [ "${CI:-}" = "true" ] && ! command -v chromium >/dev/null; then
    echo "== chromium: headless browser for the report and dashboard tests (Playwright drives it)"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if command -v chromium >/dev/null; then chromium --version; fi
if [ "${CI:-}" = "true" ] && ! command -v tmux >/dev/null; then
    echo "== tmux: a real terminal for the tests of the live view (tests/sweep/views/test_live.py)"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux >/dev/null
fi

# With no pytest arguments (CI): every test but the cluster faults in one run on SWEEP_TEST_CI_WORKERS
# pytest-xdist workers (default 3 on 2 cores: many tests wait on subprocesses and the cluster; the slow
# ones are handed out first, see tests/conftest.py; `--dist loadgroup`, with no groups, hands each worker
# one test at a time as it frees up, where `load` sends each a long batch at once), then the tests marked cluster_fault (they stop
# slurmctld or PostgreSQL, or change a limit, which any other test using it would meet) alone, one after
# another. With arguments: one pytest run of them, on SWEEP_TEST_WORKERS=N workers if set.
# The project's own modules compiled once: every process the tests start (launchers, jobs, CLI calls:
# over a thousand) imports sweep and trainer from this checkout, and where PYTHONDONTWRITEBYTECODE is
# set (as on our machines) none writes the bytecode it compiles, so each compiled them again.
python -m compileall -q -j 0 sweep trainer tests benchmarks examples >/dev/null
if [ "$FULL_RUN" -eq 1 ]; then
    stage tests
    echo "== tests: all but the cluster faults, on ${SWEEP_TEST_CI_WORKERS:-3} workers"
    python -m pytest -q --durations=25 -m "not cluster_fault" -n "${SWEEP_TEST_CI_WORKERS:-3}" --dist loadgroup
    stage "faults+types"
    TYPES_OUT=$(mktemp)
    mypy sweep trainer benchmarks > "$TYPES_OUT" 2>&1 &
    TYPES_PID=$!
    echo "== tests: the cluster faults (-m cluster_fault), alone (mypy beside them)"
    FAULTS_RC=0
    python -m pytest -q --durations=5 -m cluster_fault || FAULTS_RC=$?
    TYPES_RC=0
    wait "$TYPES_PID" || TYPES_RC=$?
    echo "== mypy"
    cat "$TYPES_OUT"
    rm -f "$TYPES_OUT"
    if [ "$FAULTS_RC" -ne 0 ] || [ "$TYPES_RC" -ne 0 ]; then exit 1; fi
else
    stage tests
    echo "== tests"
    WORKERS=()
    if [ -n "${SWEEP_TEST_WORKERS:-}" ]; then WORKERS=(-n "$SWEEP_TEST_WORKERS"); fi
    python -m pytest -q --durations=25 "${WORKERS[@]}" "$@"
fi
