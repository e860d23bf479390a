"""The reproduce table mirrors the paper's: rows in its order, the encoder's own row when the
features hold its logits, the published numbers beside each row for the paper's configs, and
the trained parameters' share of the encoder."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import reproduce
from dejavid.report.rows import estimator_row
from dejavid.data.dataset import TSEDataset
from dejavid.baselines.encoder import EncoderLogits
from dejavid.report.table import (METHODS, PAPER_ENCODER_PARAMS, PUBLISHED, ROW, TITLES, Result, Row,
                             format_table)
from dejavid.config.settings import index_from_config

from helpers import make_config, write_config_yaml, write_dataset

C, E, K = 3, 2, 4          # classes, embedding columns before the logits, centroid steps
F = E + C
PER_CLASS = {"train": 8, "val": 8}


def logit_videos(seed: int = 0) -> tuple[dict, float]:
    """Videos [T, E + C] whose last C columns are class logits: the embedding is the class
    level plus noise; the logits are noise plus 2 on the true class, except for every fourth
    validation video of a class, whose logits favour the next class.  Returns the videos and
    the clip-averaged logits' top-1 on 'val' that follows (3/4)."""
    g = torch.Generator().manual_seed(seed)
    videos, wrong = {}, 0
    for split, n in PER_CLASS.items():
        for c in range(C):
            for k in range(n):
                T = int(torch.randint(4, 10, (1,), generator=g))
                embed = float(c) + 0.3 * torch.randn(T, E, generator=g)
                logits = 0.1 * torch.randn(T, C, generator=g)
                shifted = split == "val" and k % 4 == 3
                logits[:, (c + 1) % C if shifted else c] += 2.0
                wrong += shifted
                videos[f"{split}_c{c}_{k:02d}"] = (torch.cat([embed, logits], 1), c, split)
    return videos, 1 - wrong / (C * PER_CLASS["val"])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    pytest.importorskip("sklearn")
    tmp = tmp_path_factory.mktemp("paper")
    videos, encoder_top1 = logit_videos()
    return tmp, write_dataset(tmp / "data", videos), encoder_top1


@pytest.fixture(scope="module")
def paper_run(data):
    """reproduce.py on a config named like the paper's HMDB51 config, with logit columns."""
    tmp, paths, _ = data
    cfg = write_config_yaml(tmp / "hmdb51.yaml", paths, name="hmdb51", logit_columns=C,
                            num_timesteps=K, num_epochs=2, batch_size=8, lr=0.05,
                            w_one_init=True, sample_size_per_class=8, dba_max_iter=3,
                            in_memory=True)
    out = tmp / "out"
    assert reproduce.main(["--config", str(cfg), "--no-progress", "--no-plots",
                           "--out", str(out)]) == 0
    return out


def _cells(table: str, title: str) -> list[str]:
    line = next(x for x in table.splitlines() if x.startswith(f"| {title} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_every_row_in_the_papers_order_with_the_encoder_row(data, paper_run):
    _, paths, encoder_top1 = data
    blob = json.loads((paper_run / "results.json").read_text())
    rows = {r["method"]: r for r in blob["rows"]}
    assert list(rows) == list(METHODS)
    assert METHODS[:5] == ("encoder_logits", "meanpool_lr", "dejavid_centroids",
                           "dejavid_weights", "dejavid")
    assert rows["encoder_logits"]["top1"] == pytest.approx(encoder_top1)   # the known answer
    # The row's time-mean shortcut gives what EncoderLogits gives on the whole series.
    index = index_from_config(make_config(paths), progress=False)
    series = {s: [TSEDataset(index, s)[n] for n in range(len(TSEDataset(index, s)))]
              for s in ("train", "val")}
    clf = EncoderLogits(C).fit([x for x, _, _ in series["train"]],
                               [y for _, y, _ in series["train"]])
    Xv, yv = [x for x, _, _ in series["val"]], [y for _, y, _ in series["val"]]
    assert rows["encoder_logits"]["top1"] == clf.score(Xv, yv)
    assert rows["encoder_logits"]["top5"] == clf.top_k_score(Xv, yv, 5) == 1.0
    assert blob["encoder_params"] == PAPER_ENCODER_PARAMS


def test_published_numbers_stand_beside_each_row(paper_run):
    table = (paper_run / "results.md").read_text()
    print(table)
    header = _cells(table, "method")
    assert header[:5] == ["method", "top-1 (%)", "paper top-1", "top-5 (%)", "paper top-5"]
    published = PUBLISHED["hmdb51"]
    for m in METHODS:
        cells = _cells(table, TITLES[m])
        key = ROW[m].paper
        if key is None:                              # our extra baselines
            assert cells[2] == cells[4] == "—", m
        else:
            mark = " †" if m == "meanpool_lr" else ""
            assert cells[2] == f"{published[key][0]:.1f}{mark}", m
            assert cells[4] == "—"                   # HMDB51: no published top-5
    assert [published[k][0] for k in ("encoder", "averaged", "centroids", "weights", "full")] \
        == [88.1, 88.0, 88.3, 88.5, 88.6]
    assert "temporal oversampling, averaged" in table


def test_share_of_the_encoder_is_trained_params_over_1013e6(paper_run):
    table = (paper_run / "results.md").read_text()
    col = _cells(table, "method").index("share of encoder")
    trained_col = _cells(table, "method").index("trained params")
    expect = {"dejavid": 2 * C * K * F, "dejavid_centroids": C * K * F,
              "dejavid_weights": C * K * F, "encoder_logits": 0, "dba_centroid": 0}
    for m, params in expect.items():
        cells = _cells(table, TITLES[m])
        assert cells[trained_col] == f"{params:,}", m
        assert float(cells[col].rstrip(" %")) == pytest.approx(100 * params / 1013e6,
                                                               rel=5e-3), m
    assert _cells(table, TITLES["dejavid"])[col] == "0.0000118 %"   # 100 * 120 / 1013e6
    assert _cells(table, TITLES["encoder_logits"])[col] == "0 %"


def _row(method, top1, **kw):
    base = dict(top5=0.9, count=10, head_params=100, trained_params=50, train_seconds=1.5,
                eval_seconds=None, notes="")
    return Result(method, top1, **{**base, **kw})


def test_table_for_other_papers_and_other_configs():
    results = {m: _row(m, 0.5 + 0.05 * n) for n, m in enumerate(METHODS)}
    k400 = format_table(results, name="k400", encoder_params=1e4)
    print(k400)
    cells = _cells(k400, TITLES["dejavid_centroids"])
    assert cells[1:5] == ["60.00", "89.1", "90.00", "98.2"] and "0.500 %" in cells  # 50 / 1e4
    assert _cells(k400, TITLES["dejavid"])[2] == "88.9"
    best = f"**{100 * (0.5 + 0.05 * (len(METHODS) - 1)):.2f}**"
    assert best in _cells(k400, TITLES[METHODS[-1]])                # best measured in bold
    ssv2 = format_table(results, name="ssv2")
    assert _cells(ssv2, TITLES["dejavid"])[1:5] == ["70.00", "77.2", "90.00", "96.3"]
    assert "| n/a |" in ssv2   # no --encoder_params given to format_table
    assert _cells(ssv2, TITLES["encoder_logits"])[2] == "76.7"
    other = format_table(results, name="japanese_vowels")
    assert _cells(other, "method")[:3] == ["method", "top-1 (%)", "top-5 (%)"]
    assert "paper" not in other and "| n/a |" in other and "†" not in other


def test_encoder_row_needs_logit_columns(data):
    tmp, paths, _ = data
    cfg = write_config_yaml(tmp / "plain.yaml", paths, name="plain", num_timesteps=K,
                            num_epochs=1, in_memory=True)
    with pytest.raises(ValueError, match="set logit_columns"):
        reproduce.main(["--config", str(cfg), "--no-progress", "--no-plots",
                        "--methods", "encoder_logits", "--out", str(tmp / "plain")])


class _NearestMeanStep:
    """A toy estimator for an added row: nearest class mean of the first step."""

    def get_params(self, deep=True):
        return {}

    def fit(self, X, y):
        first = np.stack([np.asarray(x[0]) for x in X])
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        self.means_ = np.stack([first[y == c].mean(0) for c in self.classes_])
        self.head_params_ = self.trained_params_ = self.means_.size
        return self

    def decision_function(self, X):
        first = np.stack([np.asarray(x[0]) for x in X])
        return -((first[:, None, :] - self.means_[None]) ** 2).sum(-1)


def test_an_added_estimator_row_is_scored_like_the_estimator(data):
    """What a new estimator row gets: fitted on the training split, ranked by its decision,
    on the features as stored even when the config standardises them for DejaVid (the
    encoder's logit columns must stay logits)."""
    _, paths, _ = data
    index = index_from_config(make_config(paths, standardize=True), progress=False)
    assert index.feature_stats is not None
    train, val = TSEDataset(index, "train"), TSEDataset(index, "val")
    row = Row("toy", "toy", "estimator", factory=lambda cfg, C, F: _NearestMeanStep())
    result = estimator_row(row, row.factory({}, C, F), train, val)
    assert index.feature_stats is not None            # put back for DejaVid's rows
    raw = index_from_config(make_config(paths, standardize=False), progress=False)
    train, val = TSEDataset(raw, "train"), TSEDataset(raw, "val")
    est = _NearestMeanStep().fit([train[n][0] for n in range(len(train))],
                                 [train[n][1] for n in range(len(train))])
    pred = est.decision_function([val[n][0] for n in range(len(val))]).argmax(1)
    assert result.top1 == np.mean(pred == [val[n][1] for n in range(len(val))])
    assert (result.head_params, result.trained_params, result.count) == (C * F, C * F, len(val))
    with pytest.raises(ValueError, match="need a factory"):
        Row("bad", "bad", "estimator")
