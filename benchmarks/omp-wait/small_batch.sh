#!/bin/bash
# OpenMP waiting at small and large batches, on an idle machine or with one core taken by
# a busy loop: ./benchmarks/omp-wait/small_batch.sh idle|busy (from the project root).
set -e
python=${PYTHON:-.venv/bin/python}
export RESNETLAB_CALIBRATE=off
if [ "$1" = busy ]; then (while :; do :; done) & busy=$!; trap 'kill $busy' EXIT; fi
for rep in 1 2 3; do
  for batch in 16 128; do
    for wait in "OMP_WAIT_POLICY=PASSIVE" "OMP_WAIT_POLICY=PASSIVE GOMP_SPINCOUNT=3000" \
      "OMP_WAIT_POLICY=PASSIVE GOMP_SPINCOUNT=10000" "OMP_WAIT_POLICY=PASSIVE GOMP_SPINCOUNT=30000"; do
      echo "$1 rep$rep b$batch [$wait] 2 threads: $(env $wait $python benchmarks/omp-wait/small_batch.py $batch 2) ms"
    done
    echo "$1 rep$rep b$batch [OMP_WAIT_POLICY=PASSIVE] 1 thread: $(env OMP_WAIT_POLICY=PASSIVE $python benchmarks/omp-wait/small_batch.py $batch 1) ms"
  done
done
