"""Exceptions that several layers raise or catch (kept below all of them)."""
from __future__ import annotations


class MissingDependency(ImportError):
    """An optional extra is not installed; the message names the pip command."""
