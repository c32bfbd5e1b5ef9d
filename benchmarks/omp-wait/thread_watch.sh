#!/bin/bash
# Training beside a busy process, with the run's thread watch (engine/threads.py) and with
# the count fixed at the machine's (OMP_NUM_THREADS, which turns the watch off), in turns:
#   ./benchmarks/omp-wait/thread_watch.sh MODEL DATA BATCH STEPS [ROUNDS]   (project root)
# The workload is calibrated first, on the cores as they are; then each run trains STEPS
# steps with one busy loop beside it and prints its epochs' images per second (metrics.csv).
set -e
python=${PYTHON:-.venv/bin/python}
model=$1 data=$2 batch=$3 steps=$4 rounds=${5:-2}
threads=$($python -c "import torch; print(torch.get_num_threads())")
out=$(mktemp -d)
$python -m resnetlab bench calibrate --model "$model" --batch-size "$batch" --optimizer adam >/dev/null
(while :; do :; done) & busy=$!
trap 'kill $busy; rm -rf "$out"' EXIT
epochs() {  # images/s of each epoch of a run folder
  $python -c "import csv, sys; print(' '.join(f\"{float(r['images_per_s']):.1f}\" for r in csv.DictReader(open(sys.argv[1])) if r['kind'] == 'epoch'))" "$1/metrics.csv"
}
for round in $(seq "$rounds"); do
  for way in watch fixed; do
    run="$out/$way$round"
    if [ $way = fixed ]; then fix="OMP_NUM_THREADS=$threads"; else fix=""; fi
    env $fix $python -m resnetlab train --model "$model" --data "$data" --batch-size "$batch" \
      --optimizer adam --max-steps "$steps" --out "$run" 2>"$run.log" >/dev/null
    echo "round $round, $way${fix:+ ($fix)}: img/s by epoch $(epochs "$run")"
    grep '^threads:' "$run.log" || true
  done
done
