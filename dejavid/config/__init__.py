"""The config edge: YAML files and command-line overrides (files, cli) become validated,
resolved training settings (settings) that every layer above reads.

    files      one source of defaults (DEFAULTS), load_config, overrides, validation
    settings   TrainSettings and its parts, resolved from a config dict
    cli        the entry scripts' parser, error handling and run-folder names
"""
from __future__ import annotations

from .. import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".files": ["DEFAULTS", "load_config"],
    ".settings": ["TrainSettings", "DataSpec", "CentroidSpec", "ModelSpec", "OptimSpec", "LoopSpec", "settings_from_config", "index_from_config"],
})
