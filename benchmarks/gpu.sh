#!/usr/bin/env bash
# The README's GPU measurements in one run, from source, on a machine with CUDA and with
# PyTorch, torchvision and pytest installed (it installs nothing).
#
#   benchmarks/gpu.sh DATA OUT [SECONDS] [STEP ...]
#
# DATA: the CIFAR-10 archive (e.g. ../shared/data/cifar10-jpg.tar.gz); OUT: a folder for
# the log of each step, the time-to-accuracy run's output and the records (RESULTS: another
# folder or .jsonl file for the records; in a folder they go to <machine>.jsonl).
# SECONDS (default 540) bounds the whole run: each step has its own time limit and a step
# that no longer fits is skipped, so the records made so far always come back. STEP names
# the steps to run, in order (default: all, most important first):
#   tests      pytest -m gpu: CUDA graphs, bf16 and the fused optimizer against fp32 (but
#              the compiled AdamW case, which adds a minute of compiling)
#   r50        ResNet-50 at 224, batch 256, bf16 channels-last, vs torchvision (eager)
#   r56        ResNet-56, batch 512, CUDA graphs, vs the usual eager loop
#   r20        ResNet-20, batch 512, CUDA graphs, vs the usual eager loop
#   tta        ResNet-20 from the archive to 91.25% test accuracy, whole process
#   data       the loader alone, and the share of training spent waiting for it
#   r50c       ResNet-50 compiled, vs torchvision compiled
#   r50fast    ResNet-50 compiled and in a CUDA graph (our fastest mode)
# and, named only: degradation, plain and residual 20 and 56 on the whole archive, the
# paper's recipe shortened to 15 epochs (into OUT/degradation).
# TTA_EPOCHS sets the time-to-accuracy recipe's length (default: the benchmark's, 40);
# DEGRADATION_EPOCHS the experiment's (15). SMOKE=1 runs every step with tiny settings on
# the CPU, to check the script itself.
set -u -o pipefail
cd "$(dirname "$0")/.."
data=${1:?the CIFAR-10 archive}
out=${2:?a folder for the results}
budget=${3:-540}
shift $(($# < 3 ? $# : 3))
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(tests r50 r56 r20 tta data r50c r50fast)

all_steps=" tests r50 r56 r20 tta data r50c r50fast degradation "
for step in "${steps[@]}"; do
  if [[ $all_steps != *" $step "* ]]; then
    echo "unknown step '$step'; the steps:$all_steps" >&2
    exit 2
  fi
done
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
results=${RESULTS:-$out}
start=$SECONDS

if [ "${SMOKE:-0}" = 1 ]; then
  device=(--device cpu) graphs=() tiny=(--steps 1 --warmup 1 --repeats 1 --input-size 32 --batch-size 8)
  tta_tiny=(--epochs 1 --batch-size 64 --train-option subset=256 --train-option val_subset=64)
  data_tiny=(--steps 2 --batch-size 32) tests=(--collect-only)
  degradation_tiny=(--subset 200 --val-subset 100 --epochs 1 --depths 8)
else
  device=(--device cuda) graphs=(--cuda-graphs) tiny=() tta_tiny=() data_tiny=() tests=()
  degradation_tiny=()
fi
bench=("$python" -m resnetlab bench)
save=(--results "$results")

run_step() {  # run_step NAME SECONDS COMMAND...: the command's output goes to OUT/NAME.log
  local name=$1 limit=$2
  shift 2
  local left=$((budget - (SECONDS - start)))
  if ((left < limit / 2)); then
    echo "== $name: skipped, $left s left of $budget"
    return
  fi
  ((limit > left)) && limit=$left
  local began=$SECONDS
  echo "== $name (at most $limit s): $*"
  timeout -k 10 "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  tail -n 15 "$out/$name.log"
  echo "== $name: exit $rc after $((SECONDS - began)) s"
  return $rc
}

for step in "${steps[@]}"; do
  case $step in
  tests)
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null
    "$python" -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__, "cuda", torch.version.cuda)'
    run_step tests 200 "$python" -m pytest -q -p no:cacheprovider -m gpu -k "not True-adamw" "${tests[@]}" \
      tests/engine/test_step.py tests/bench/test_training.py ;;
  r50)
    run_step r50 90 "${bench[@]}" train --model resnet50 --batch-size 256 --precision bf16 \
      --channels-last --vs torchvision "${device[@]}" "${tiny[@]}" "${save[@]}" ;;
  r56)
    run_step r56 60 "${bench[@]}" train --model resnet56 --batch-size 512 "${graphs[@]}" \
      --vs torchvision "${device[@]}" "${tiny[@]}" "${save[@]}" ;;
  r20)
    run_step r20 60 "${bench[@]}" train --model resnet20 --batch-size 512 "${graphs[@]}" \
      --vs torchvision "${device[@]}" "${tiny[@]}" "${save[@]}" ;;
  tta)
    tta=("${bench[@]}" time-to-accuracy --model resnet20 --data "$data" --target 0.9125
      --timeout 170 ${TTA_EPOCHS:+--epochs "$TTA_EPOCHS"} "${device[@]}" "${tta_tiny[@]}"
      "${save[@]}")
    # Without CUDA graphs if the run with them fails.
    run_step tta 180 "${tta[@]}" --log "$out/tta-train.log" ||
      run_step tta-eager 180 "${tta[@]}" --no-cuda-graphs --log "$out/tta-eager-train.log" ;;
  data)
    run_step data 90 "${bench[@]}" data --data "$data" "${device[@]}" "${data_tiny[@]}" \
      "${save[@]}" ;;
  r50c)
    run_step r50c 240 "${bench[@]}" train --model resnet50 --batch-size 256 --precision bf16 \
      --channels-last --compile --vs torchvision "${device[@]}" "${tiny[@]}" "${save[@]}" ;;
  r50fast)
    run_step r50fast 150 "${bench[@]}" train --model resnet50 --batch-size 256 --compile \
      "${graphs[@]}" "${device[@]}" "${tiny[@]}" "${save[@]}" ;;
  degradation)
    run_step degradation 420 "$python" -m resnetlab experiment degradation --data "$data" \
      --depths 20 56 --epochs "${DEGRADATION_EPOCHS:-15}" --out "$out/degradation" \
      "${device[@]}" "${degradation_tiny[@]}" \
      --train-option "cuda_graphs=$([ "${SMOKE:-0}" = 1 ] && echo false || echo true)" ;;
  esac
done
echo "== done after $((SECONDS - start)) s; records appended under $results"
