"""The benchmark harness behind ``resnetlab bench``: ours against the peers, in one process.

- ``bench_train``: images/s of full training steps (``training``)
- ``bench_infer``: batch-1 latency and large-batch throughput (``inference``)
- ``bench_data``: data loading, and the share of training time spent waiting for it (``loading``)
- ``bench_time_to_accuracy``: wall-clock time from raw data to a target accuracy
  (``time_to_accuracy``)
- ``bench_calibrate``: this CPU's measured training choices for a workload (``calibration``)

The timed comparisons build their two sides alike (``sides``). Each command returns a
record (a dict) that ``records.append_record`` appends as one JSON line to
``<results>/<machine>.jsonl``; ``table`` shows records, one type per kind.
"""

from .calibration import bench_calibrate
from .inference import bench_infer
from .loading import bench_data
from .records import append_record, check_results, default_results_dir, read_records, results_path
from .table import as_record, describe, render_table, update_readme
from .time_to_accuracy import bench_time_to_accuracy
from .training import bench_train

bench_tta = bench_time_to_accuracy  # the name before 0.2; kept for a release

__all__ = [
    "append_record",
    "as_record",
    "bench_calibrate",
    "bench_data",
    "bench_infer",
    "bench_time_to_accuracy",
    "bench_train",
    "bench_tta",
    "check_results",
    "default_results_dir",
    "describe",
    "read_records",
    "render_table",
    "results_path",
    "update_readme",
]
