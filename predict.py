"""Classify new raw videos with a trained DejaVid checkpoint: top-5 classes and distances.

    python predict.py --checkpoint runs/<run>/best.pt VIDEO [VIDEO ...]     # files
    python predict.py --checkpoint runs/<run>/best.pt my_videos/ --out preds.csv  # a folder
    python predict.py --checkpoint runs/<run>/best.pt clips.csv          # a manifest path[,label]

Each video is decoded and encoded exactly as the training features were: the encoder and
sampling that extract_tse.py recorded travel in the checkpoint (docs/extraction.md,
"Predicting classes of new videos").  A checkpoint trained on features made otherwise
needs them given: --extraction FOLDER, or --encoder SPEC and the sampling flags of that
extraction.  A video that cannot be read is reported with its reason and the others
are still classified (exit status 3; 0 when all were, 2 for a bad argument).
"""
from __future__ import annotations

import argparse

import dejavid.runtime  # noqa: F401  (before torch: OpenMP wait policy, numba vector width)

from dejavid.config import cli
from dejavid.extract.encoders import build_encoder, config_overrides
from dejavid.extract.sampling import Sampling
from dejavid.io import check_writable_file
from dejavid.predict.inputs import list_inputs, write_predictions_csv
from dejavid.predict.videos import Extraction, load_classifier

EXIT_OK, EXIT_SOME_FAILED = 0, 3


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("videos", nargs="+", metavar="VIDEO",
                   help="video files, folders of videos, or CSV manifests (path[,label])")
    p.add_argument("--checkpoint", required=True, help="best.pt / last.pt or a run folder")
    p.add_argument("--out", help="also write the predictions to this CSV")
    p.add_argument("--top", type=int, default=5, help="classes per video (default 5)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-clips", type=int, default=32, help="clips per encoder call")
    e = p.add_argument_group("the extraction, when the checkpoint does not carry it")
    e.add_argument("--extraction", help="the --out folder of the extract_tse.py run that made "
                   "the training features (its extraction.json)")
    e.add_argument("--encoder", help="as extract_tse.py --encoder, with the same flags below")
    e.add_argument("--random-init", action="store_true")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--trust-remote-code", action="store_true")
    e.add_argument("--hf-config", action="append", default=[], metavar="KEY=VALUE")
    e.add_argument("--append-logits", action=argparse.BooleanOptionalAction, default=None)
    e.add_argument("--clip-len", type=int)
    e.add_argument("--crop", type=int)
    e.add_argument("--frame-stride", type=int, default=1)
    e.add_argument("--clip-stride", type=int)
    e.add_argument("--num-clips", type=int)
    e.add_argument("--fps", type=float)
    e.add_argument("--dtype", default="float32", choices=("float16", "float32"))
    return p


def explicit_extraction(args) -> Extraction | None:
    """The extraction given by --encoder and the sampling flags (as extract_tse.py builds it)."""
    if not args.encoder:
        return None
    encoder = build_encoder(args.encoder, args.random_init, args.seed, args.trust_remote_code,
                            config_overrides(args.hf_config), args.clip_len, args.crop)
    sampling = Sampling.of(encoder.pre.clip_len, args.frame_stride, args.clip_stride,
                           args.num_clips, args.fps)
    _, c = encoder.dims()
    append = (c > 0) if args.append_logits is None else args.append_logits
    return Extraction(encoder, sampling, append, args.dtype)


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.extraction and args.encoder:
        raise ValueError("--extraction and --encoder exclude each other: give the extraction "
                         "folder, or the encoder and its sampling flags")
    if args.top < 1:
        raise ValueError(f"--top {args.top} must be at least 1")
    if args.out:
        check_writable_file(args.out, "--out file")
    paths, labels = list_inputs(args.videos)
    clf = load_classifier(args.checkpoint, args.extraction, explicit_extraction(args), args.device)
    preds = clf.predict(paths, args.top, labels, args.batch_clips)
    for p in preds:
        if p.error:
            print(f"{p.video}: FAILED: {p.error}")
            continue
        known = f" (listed as {p.label})" if p.label else ""
        print(f"{p.video}{known}: " + ", ".join(f"{c} {d:.4g}" for c, d in zip(p.classes, p.distances)))
    failed = sum(p.error is not None for p in preds)
    print(f"{len(preds) - failed} of {len(preds)} videos classified"
          + (f"; {failed} failed (reasons above)" if failed else ""))
    if args.out:
        write_predictions_csv(preds, args.out)
        print(f"predictions written to {args.out}")
    return EXIT_SOME_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    cli.main_guard(main)
