"""From raw videos to TSEs: the layer behind ``extract_tse.py``.

    sources    where the videos are: a class-per-folder tree, a CSV manifest, and the
               annotation files of HMDB51, Kinetics-400 and Something-Something V2
    sampling   which frames make which clip (the TSE's time axis)
    decode     PyAV: a file -> RGB frames, or the reason it gives none
    encoders   one interface: uint8 clips -> embeddings (+ logits); hf, tv, custom
               are its Hugging Face, torchvision and TorchScript/Python kinds
    writer     the output folder train_dejavid.py reads, written atomically
    pipeline   the run: checks, decode workers, batching across videos, resume, ranks

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
    ".encoders": ["Encoder", "build_encoder"],
    ".pipeline": ["Options", "Ranks", "extract", "rebuild", "rebuild_from"],
})
