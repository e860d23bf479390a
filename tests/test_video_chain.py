"""video_demo.py at a tiny size: generated videos -> extract_tse.py -> reproduce.py's
table with every row the demo promises -> new videos classified by the trained checkpoint.
(The full-size figures are measured by hand: README "From videos: a demo".)"""
from __future__ import annotations

import json

import pytest
import torch

from conftest import ROOT  # noqa: F401  (puts the scripts on sys.path)

pytest.importorskip("av", reason="the video demo encodes and decodes videos with PyAV")
pytest.importorskip("transformers", reason="the video demo's encoder is a VideoMAE")
pytest.importorskip("sklearn", reason="the demo's table has the logistic-regression row")

import video_demo  # noqa: E402
from dejavid.report.table import TITLES  # noqa: E402


def test_the_chain_runs_and_prints_every_row(tmp_path, capsys):
    out = tmp_path / "demo"
    assert video_demo.main(["--out", str(out), "--train-per-class", "2", "--val-per-class", "1",
                            "--workers", "0", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    methods = video_demo.METHODS.split(",")
    rows = json.loads((out / "reproduce" / "results.json").read_text())["rows"]
    assert sorted(r["method"] for r in rows) == sorted(methods)
    for m in methods:
        assert f"| {TITLES[m]} |" in printed
    assert "Train split 'train' (12 videos), evaluated on 'val' (6 videos); C = 6" in printed
    # the extractor's settings reached the checkpoint, and new videos were classified from files
    ckpt = torch.load(out / "reproduce" / "dejavid" / "best.pt", weights_only=True)
    assert ckpt["extraction"]["settings"]["sampling"]["clip_stride"] == 4
    assert ckpt["extraction"]["settings"]["encoder"]["overrides"]["num_hidden_layers"] == 4
    line = next(s for s in printed.splitlines() if s.startswith("new videos (seed 1000)"))
    assert line.endswith("of 12 correct")
