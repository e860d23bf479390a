"""Turn videos into DejaVid's input: one [T, F] tensor per video, the three pickles and a
ready config.  See docs/extraction.md.

    python extract_tse.py --source folder --videos my_videos/ --encoder torchvision:r2plus1d_18 --out feats/mine
    python extract_tse.py --source hmdb51 --annotations testTrainMulti_7030_splits --videos hmdb51/ \
        --encoder hf:MCG-NJU/videomae-base-finetuned-kinetics --out feats/hmdb51
    torchrun --nproc_per_node 8 extract_tse.py ...        # rank r takes a share of the videos

Exit status: 0 when every listed video was written, 3 when some failed (each in
OUT/failures.csv with its reason), 2 for a bad argument (before any work).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import dejavid.runtime  # noqa: F401  (before torch: OpenMP wait policy, numba vector width)
import torch

from dejavid.config import cli
from dejavid.device import resolve_device
from dejavid.extract.encoders import build_encoder, config_overrides, parse_spec
from dejavid.extract.pipeline import Options, Ranks, extract
from dejavid.extract.sampling import Sampling
from dejavid.extract.sources import KINDS, open_source
from dejavid.io import check_writable_dir

AMP = {"none": None, "float16": torch.float16, "bfloat16": torch.bfloat16}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    s = p.add_argument_group("videos")
    s.add_argument("--source", required=True, choices=KINDS)
    s.add_argument("--videos", help="folder of the videos (folder: one subfolder per class)")
    s.add_argument("--annotations", help="csv: the manifest path,label[,split]; hmdb51, k400, "
                   "ssv2: the folder of the data set's annotation files")
    s.add_argument("--split-file", help="folder: CSV id,split (others are train)")
    s.add_argument("--val-fraction", type=float, default=0.1,
                   help="folder/csv without splits: stratified share of val videos (default 0.1)")
    s.add_argument("--split-number", type=int, default=1, help="hmdb51: split 1, 2 or 3")
    s.add_argument("--k400-splits", default="train,val", help="k400: of train,val,test")
    s.add_argument("--seed", type=int, default=0, help="split shuffle and random-init weights")
    e = p.add_argument_group("encoder")
    e.add_argument("--encoder", required=True, help="hf:ID_OR_DIR_OR_MODEL_TYPE, torchvision:NAME, "
                   "torchscript:PATH or python:MODULE:FACTORY")
    e.add_argument("--random-init", action="store_true",
                   help="build the encoder without weights (tests, demos: features mean nothing)")
    e.add_argument("--trust-remote-code", action="store_true",
                   help="hf: run the checkpoint's own code (VideoMAE V2); only for code you trust")
    e.add_argument("--hf-config", action="append", default=[], metavar="KEY=VALUE",
                   help="hf:MODEL_TYPE --random-init: change a key of the default config")
    e.add_argument("--append-logits", action=argparse.BooleanOptionalAction, default=None,
                   help="append the classifier's logits to each step (default: when it has one)")
    t = p.add_argument_group("sampling")
    t.add_argument("--clip-len", type=int, help="frames per clip (default: the encoder's)")
    t.add_argument("--crop", type=int, help="crop size (default: the encoder's)")
    t.add_argument("--frame-stride", type=int, default=1, help="frames between a clip's frames")
    t.add_argument("--clip-stride", type=int, help="frames between clip starts (default: one "
                   "clip length: T grows with the duration)")
    t.add_argument("--num-clips", type=int, help="instead: this many evenly spaced clips")
    t.add_argument("--fps", type=float, help="resample every video to this frame rate first")
    o = p.add_argument_group("output and speed")
    o.add_argument("--out", required=True, help="output folder")
    o.add_argument("--name", default="", help="data set name in config.yaml (default: the folder's)")
    o.add_argument("--dtype", default="float32", choices=("float16", "float32"))
    o.add_argument("--overwrite", action="store_true", help="redo videos already written")
    o.add_argument("--batch-clips", type=int, default=32, help="clips per encoder call")
    o.add_argument("--workers", type=int, default=2, help="decoding processes (0: in this one)")
    o.add_argument("--device", default="auto")
    o.add_argument("--amp", default="auto", choices=("auto", *AMP),
                   help="autocast dtype of the forward (auto: float16 on GPU, none on CPU)")
    o.add_argument("--build-store", action="store_true", help="also build the packed feature store")
    o.add_argument("--no-progress", action="store_true")
    return p


def distributed(device: torch.device) -> tuple[Ranks, torch.device]:
    """Ranks of a torchrun job (gloo barrier), or the single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Ranks(), device
    import torch.distributed as dist
    dist.init_process_group("gloo")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return Ranks(dist.get_rank(), world, dist.barrier), device


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    check_writable_dir(args.out, "--out")
    device = resolve_device(args.device)
    amp = AMP[args.amp] if args.amp != "auto" else (torch.float16 if device.type == "cuda" else None)
    opts = Options(Path(args.out).resolve(), args.dtype, args.append_logits, args.batch_clips,
                   args.workers, args.overwrite, not args.no_progress, args.name).check()
    # the cheap checks first: nothing is listed or built for a misspelt flag
    parse_spec(args.encoder)
    Sampling.of(args.clip_len if args.clip_len is not None else 1, args.frame_stride,
                args.clip_stride, args.num_clips, args.fps)
    listing = open_source(args.source, args.videos, args.annotations, args.val_fraction, args.seed,
                          args.split_file, args.split_number, args.k400_splits.split(","))
    encoder = build_encoder(args.encoder, args.random_init, args.seed, args.trust_remote_code,
                            config_overrides(args.hf_config), args.clip_len, args.crop)
    sampling = Sampling.of(encoder.pre.clip_len, args.frame_stride, args.clip_stride,
                           args.num_clips, args.fps)
    ranks, device = distributed(device)
    encoder.to(device, amp)
    code = extract(listing, encoder, sampling, opts, ranks, log=print if ranks.rank == 0 else _quiet)
    if args.build_store and ranks.rank == 0 and (opts.out / "config.yaml").is_file():
        from dejavid.config.files import load_config
        from dejavid.config.settings import index_from_config
        index_from_config(load_config(opts.out / "config.yaml"), progress=opts.progress)
        print(f"feature store built in {opts.out / 'cache'}")
    return code


def _quiet(*_):
    pass


if __name__ == "__main__":
    cli.main_guard(main)
