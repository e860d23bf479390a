"""reproduce.py's comparison: the table's rows and their cached results (rows, table) and the
figures of a run (plots).

    table   the rows, cached results, trained runs read back, the markdown table
    rows    the baseline rows, computed on the same splits as DejaVid
    plots   learning curves, learned weights, one alignment path (PNG)
"""
from __future__ import annotations

from .. import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".table": ["Result", "Row", "ROW", "METHODS", "format_table"],
    ".rows": ["run_baseline", "estimator_row"],
})
