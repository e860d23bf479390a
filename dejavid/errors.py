"""Exceptions that several layers raise or catch (kept below all of them)."""
from __future__ import annotations


class MissingDependency(ImportError):
    """An optional extra is not installed; the message names the pip command."""


class PeerError(Exception):
    """Another rank of a torchrun job stopped with an error it reports itself; this rank
    ends quietly with the same exit code (:func:`dejavid.config.cli.main_guard`), so that
    the one message is not buried under every rank's copy of it."""


class Terminated(KeyboardInterrupt):
    """SIGTERM received where no training loop handles it (data check, centroids): raised
    like Ctrl-C's KeyboardInterrupt, so that every clean-up that runs on Ctrl-C (run
    folder, lock, centroid progress) runs on it too; the scripts exit 143."""
