"""From raw videos to TSEs: the layer behind ``extract_tse.py``.

    sources    where the videos are: a class-per-folder tree, a CSV manifest, and the
               annotation files of HMDB51, Kinetics-400 and Something-Something V2
    sampling   which frames make which clip (the TSE's time axis)

It reads videos and runs encoders; it writes exactly the four inputs
``train_dejavid.py`` reads (docs/extraction.md).  It uses the data layer's split names
and the shared leaves, nothing above.
"""
from __future__ import annotations

from .. import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".sources": ["VideoItem", "Listing", "folder_source", "csv_source", "hmdb51_source",
                 "k400_source", "ssv2_source"],
    ".sampling": ["Sampling", "clip_indices"],
})
