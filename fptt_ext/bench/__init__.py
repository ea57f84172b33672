"""Measurements of the training methods: autograd saved bytes, peak memory, speed, profile.

* :mod:`.saved_bytes` - bytes autograd saves per update (deterministic, used in tests);
* :mod:`.memory` - peak RSS and saved bytes against T, one fresh process per point;
* :mod:`.speed` - interleaved throughput of FPTT, TBPTT-1, BPTT and SpikingJelly's FPTT;
* :mod:`.profile` - where an FPTT step's time goes, and its overhead before/after.

``fptt-ext bench saved-bytes|memory|speed|profile`` runs them from the command line.
"""

from .memory import measure_point, memory_table, plot_memory, print_memory
from .saved_bytes import saved_bytes_per_update, saved_bytes_table
from .speed import plot_speed, print_speed, speed_table
from .workloads import METHODS, NETWORKS, build_network, make_data, make_workload

__all__ = ["METHODS", "NETWORKS", "build_network", "make_data", "make_workload", "measure_point", "memory_table",
           "plot_memory", "plot_speed", "print_memory", "print_speed", "saved_bytes_per_update",
           "saved_bytes_table", "speed_table"]
