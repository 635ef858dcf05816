# The set-up both quick-start commands share; sourced by scripts/try.sh and scripts/test.sh, from the
# repository root: a virtual environment in .venv (or $SWEEP_VENV), torch, and sweep itself.
#
#   . scripts/setup.sh          # sweep
#   . scripts/setup.sh dev      # sweep and its development tools (pytest, ruff, mypy, playwright)
#
# torch: the CUDA build where `nvidia-smi` sees a GPU, else the CPU build (about 200 MB instead of the
# 3 GB of the CUDA stack a plain `pip install torch` brings).

TORCH_VERSION="2.13.0"
SWEEP_VENV="${SWEEP_VENV:-.venv}"

if [ ! -x "$SWEEP_VENV/bin/python" ]; then
    echo "== setup: a virtual environment in $SWEEP_VENV"
    python3 -m venv "$SWEEP_VENV"
fi
# shellcheck disable=SC1091
. "$SWEEP_VENV/bin/activate"
python -m pip install --quiet --upgrade pip

if ! python -c "import torch" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        echo "== setup: torch $TORCH_VERSION with CUDA (nvidia-smi sees a GPU)"
        python -m pip install --quiet --no-compile "torch==$TORCH_VERSION"
    else
        echo "== setup: torch $TORCH_VERSION, CPU build (no GPU here)"
        python -m pip install --quiet --no-compile --retries 1 --timeout 20 \
            --extra-index-url https://download.pytorch.org/whl/cpu "torch==$TORCH_VERSION+cpu"
    fi
fi

echo "== setup: sweep${1:+ with [$1]}"
python -m pip install --quiet --no-compile -e ".${1:+[$1]}"
# the installed packages' bytecode, compiled on every core (pip compiles on one: half the set-up's time);
# a file that does not compile (a package's Python 2 example) is left as pip would leave it
python -m compileall -q -j 0 "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    >/dev/null 2>&1 || true
