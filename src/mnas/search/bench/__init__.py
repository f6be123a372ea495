"""A tabular benchmark of search strategies: a table answers accuracy and latency for every cell of a
space at once, so a search of hundreds of evaluations takes well under a second and can be repeated
over many seeds (``mnas bench strategies``; docs/strategies.md has the reasoning).

* ``table``: loading a table (CSV, or gzip-compressed CSV);
* ``metrics``: what a run is measured against (reward regret, hypervolume ratio, constrained regret);
* ``runner``: one search, all of them over a process pool, and the report;
* ``stats``: means, spreads and p-values against random search;
* ``generate``: tables with a structure the strategies were not tuned on (permuted, synthetic);
* ``families``: tables generated at run time from a name (``generated:FAMILY:SEED``), in families of
  landscapes unlike the tuned-on ones, and ``open_table`` (a generated table's name or a CSV's path).
"""

from mnas.search.bench.families import FAMILIES, generated_names, generated_table, open_table
from mnas.search.bench.generate import permuted_table, synthetic_table
from mnas.search.bench.metrics import Oracle, hypervolume_2d
from mnas.search.bench.runner import bench_strategies, run_search
from mnas.search.bench.table import Table, load_table

__all__ = ["FAMILIES", "Oracle", "Table", "bench_strategies", "generated_names", "generated_table",
           "hypervolume_2d", "load_table", "open_table", "permuted_table", "run_search", "synthetic_table"]
