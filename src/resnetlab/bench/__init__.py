"""The benchmark harness behind ``resnetlab bench``: ours against the peers, in one process.

- ``bench_train``: images/s of full training steps (``training``)
- ``bench_infer``: batch-1 latency and large-batch throughput (``inference``)
- ``bench_data``: data loading, and the share of training time spent waiting for it (``loading``)
- ``bench_tta``: wall-clock time from raw data to a target accuracy (``tta``)

Each returns a record (a dict) that ``records.append_record`` appends as one JSON line to
``benchmarks/results/<machine>.jsonl``; ``table.render_table`` turns records into the
README's table.
"""

from .inference import bench_infer
from .loading import bench_data
from .records import append_record, read_records, results_path
from .table import describe, render_table, update_readme
from .training import bench_train
from .tta import bench_tta

__all__ = [
    "append_record",
    "bench_data",
    "bench_infer",
    "bench_train",
    "bench_tta",
    "describe",
    "read_records",
    "render_table",
    "results_path",
    "update_readme",
]
