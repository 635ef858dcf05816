#!/usr/bin/env bash
# The GPU figures of benchmarks/RESULTS.md, in two calls of the device tool (each well under its 10 minutes).
#
# Here, once (the carry folder is git-ignored; the device image has torch, torchvision, numpy, pillow):
#     mkdir -p .carry && cp ../shared/data/cifar10-jpeg.npz ../shared/tools/cifar10_from_jpeg.py .carry/
# Then on the device, naming .carry in `carry`:
#     bash benchmarks/gpu_session.sh throughput    # images/s, eager and --compile; peak GPU memory
#     bash benchmarks/gpu_session.sh accuracy      # validation accuracy of both paths after EPOCHS epochs
# Every log goes to $OUT (the device tool's folder that comes back), else ./gpu-logs.
# DEVICE, DEPTH, BATCH, STEPS, EPOCHS and LIMIT (training images kept) change the defaults, so the script
# can be tried on a CPU: DEVICE=cpu DEPTH=8 STEPS=2 EPOCHS=1 LIMIT=500 bash benchmarks/gpu_session.sh accuracy
set -euo pipefail

part=${1:?usage: bash benchmarks/gpu_session.sh throughput|accuracy}
carry=${CARRY:-.carry}
out=${OUT:-gpu-logs}
device=${DEVICE:-cuda}
depth=${DEPTH:-164}
batch=${BATCH:-128}
steps=${STEPS:-100}
epochs=${EPOCHS:-5}
data=${DATA:-/tmp/sweep-cifar10${LIMIT:+-$LIMIT}}
export PYTHONUNBUFFERED=1
mkdir -p "$out"

if [ ! -d "$data/cifar-10-batches-py" ]; then
    echo "writing real CIFAR-10 to $data"
    python3 "$carry/cifar10_from_jpeg.py" "$data" --npz "$carry/cifar10-jpeg.npz" ${LIMIT:+--limit-train "$LIMIT"}
fi

{
    date -u +"%Y-%m-%d %H:%M UTC"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
    python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
    nproc
} | tee "$out/machine.txt"

run() {  # run LOG ARGS...: the benchmark's output on the console and in $out/LOG
    local log=$1
    shift
    echo "\$ python benchmarks/throughput.py $*" | tee "$out/$log"
    python3 benchmarks/throughput.py "$@" 2>&1 | tee -a "$out/$log"
}

common=(--depth "$depth" --batch-size "$batch" --device "$device" --data-dir "$data")
case "$part" in
    throughput)
        run throughput.log "${common[@]}" --steps "$steps" --warmup 20 --rounds 3
        run throughput-compile.log "${common[@]}" --steps "$steps" --warmup 30 --rounds 3 --compile
        ;;
    accuracy)
        run accuracy.log "${common[@]}" --accuracy-epochs "$epochs" --progress
        ;;
    *)
        echo "unknown part '$part': throughput or accuracy" >&2
        exit 2
        ;;
esac
