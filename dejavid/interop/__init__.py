"""Files of the original DejaVid implementation (checkpoints and centroid caches), read
without trusting them and turned into this package's formats.

    original   import_checkpoint, import_centroid_cache
"""
from __future__ import annotations

from .. import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".original": ["import_checkpoint", "import_centroid_cache"],
})
