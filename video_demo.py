"""Videos in, classes out: the offline video demo, one command from videos to the table.

    python video_demo.py [--out data/video_demo] [--train-per-class 20] [--val-per-class 10]

The chain, each step the project's own script (nothing is downloaded):

1. ``prepare_video_demo.py``: 6 classes that differ only in the order of three coloured
   squares, everything else random (OUT/videos, manifest.csv);
2. ``extract_tse.py`` with a random-init 4-layer VideoMAE (:data:`ENCODER_FLAGS`: seeded,
   built from transformers' config, so it runs with the pinned CPU torch) over 8-frame
   clips every 4 frames, embeddings + logits per step (OUT/feats, with its config.yaml);
3. ``reproduce.py`` on that config and those TSEs: the encoder's clip-averaged logits,
   mean pooling + logistic regression, nearest DBA centroid, 1-NN DTW, the BiGRU, the
   attentive probe and DejaVid (trained with the extractor's config as written: the
   defaults of configs/default.yaml; OUT/reproduce);
4. new videos (another seed, 2 per class) classified from their files by the trained
   checkpoint, as ``predict.py`` does.

A second call reuses what the first one wrote (extracted tensors, finished rows).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import dejavid.runtime  # noqa: F401  (before torch: OpenMP wait policy, numba vector width)

import extract_tse
import prepare_video_demo
import reproduce
from dejavid.config import cli
from dejavid.extract.pipeline import EXIT_OK

# The demo's encoder: VideoMAE with 4 layers of width 192 (3 heads) on 64 x 64 frames,
# 16-pixel patches, tubelets of 2 frames, 8-frame clips, one logit per demo class.
ENCODER_FLAGS = ["--encoder", "hf:videomae", "--random-init"] + [
    f for kv in ("hidden_size=192", "num_hidden_layers=4", "num_attention_heads=3",
                 "intermediate_size=384", "image_size=64", "patch_size=16", "tubelet_size=2",
                 "num_frames=8", f"num_labels={len(prepare_video_demo.CLASSES)}")
    for f in ("--hf-config", kv)]
SAMPLING_FLAGS = ["--clip-len", "8", "--clip-stride", "4"]
METHODS = "encoder_logits,meanpool_lr,dba_centroid,knn_dtw,gru,attention,dejavid"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="data/video_demo")
    ap.add_argument("--train-per-class", type=int, default=20)
    ap.add_argument("--val-per-class", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0, help="data, splits and encoder weights")
    ap.add_argument("--workers", type=int, default=1, help="decoding processes of the extraction")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    out = Path(args.out)
    quiet = ["--no-progress"] if args.no_progress else []
    prepare_video_demo.main(["--out", str(out / "videos"), "--seed", str(args.seed),
                             "--train-per-class", str(args.train_per_class),
                             "--val-per-class", str(args.val_per_class), *quiet])
    code = extract_tse.main(["--source", "csv", "--annotations", str(out / "videos" / "manifest.csv"),
                             *ENCODER_FLAGS, *SAMPLING_FLAGS, "--seed", str(args.seed),
                             "--out", str(out / "feats"), "--workers", str(args.workers), *quiet])
    if code != EXIT_OK:
        raise ValueError(f"extraction failed for some videos (see {out / 'feats' / 'failures.csv'})")
    code = reproduce.main(["--config", str(out / "feats" / "config.yaml"), "--methods", METHODS,
                           "--out", str(out / "reproduce"), "--no-plots", *quiet])
    if code:
        return code
    return classify_new_videos(out, args.seed, args.no_progress)


def classify_new_videos(out: Path, seed: int, no_progress: bool) -> int:
    """Generate 2 new videos per class (another seed) and classify them from their files
    with the trained checkpoint, as predict.py does; prints the hits."""
    from dejavid.predict.inputs import list_inputs
    from dejavid.predict.videos import load_classifier
    new = out / "new_videos"
    prepare_video_demo.generate(new, 1, 1, seed=seed + 1000, progress=not no_progress)
    checkpoint = out / "reproduce" / "dejavid" / "best.pt"
    paths, labels = list_inputs([str(new / "manifest.csv")])
    preds = load_classifier(checkpoint).predict(paths, labels=labels)
    hits = sum(p.classes[:1] == [p.label] for p in preds)
    print(f"new videos (seed {seed + 1000}) classified from their files by {checkpoint}: "
          f"{hits} of {len(preds)} correct")
    print(f"classify your own: python predict.py --checkpoint {checkpoint} VIDEO [VIDEO ...] "
          f"[--out preds.csv]")
    return 0


if __name__ == "__main__":
    cli.main_guard(main)
