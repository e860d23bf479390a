"""The data layer: temporal sequences of embeddings on disk or in memory, checked, packed
into batches and optionally standardised (docs/DESIGN.md section 1).

    dataset       load_index (reads and validates an on-disk data set), TSEDataset, Batch
    store         the packed, memory-mapped feature store
    packing       batches as one gather of rows from a split held as one array
    arrays        the same index and dataset interface built from in-memory arrays
    standardize   per-feature standardisation statistics

It sits on the alignment layer's row layout (:func:`dejavid.alignment.backend.packed_row_width`)
and the shared leaves, never on the model or the training loop.
"""
from __future__ import annotations

from .. import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".dataset": ["load_index", "DataIndex", "TSEDataset", "Batch", "DataValidationError", "collate_packed", "SPLITS"],
    ".arrays": ["ArrayDataset", "index_from_arrays"],
})
