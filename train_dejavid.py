"""Train and evaluate DejaVid on per-video embeddings.

    python train_dejavid.py --config configs/hmdb51.yaml [--key value ...]
    python train_dejavid.py --resume runs/<run>            # continue exactly
    python train_dejavid.py --eval-only --checkpoint runs/<run>/best.pt --predictions preds.csv
"""
from __future__ import annotations

from pathlib import Path

import dejavid.runtime  # noqa: F401  (before torch: OpenMP wait policy, numba vector width)
from tqdm import tqdm

from dejavid import cli
from dejavid import distributed as ddp
from dejavid.checkpoint import load_checkpoint
from dejavid.config import RESUME_OVERRIDABLE, load_config, parse_overrides
from dejavid.data import TSEDataset
from dejavid.engine import evaluate
from dejavid.predictions import write_predictions
from dejavid.settings import index_from_config, settings_from_config
from dejavid.train import fit, model_from_checkpoint


def main(argv=None) -> int:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--resume", help="run folder or checkpoint to continue")
    p.add_argument("--eval-only", action="store_true", help="only evaluate --checkpoint")
    p.add_argument("--checkpoint", help="checkpoint to evaluate with --eval-only")
    p.add_argument("--predictions", help="with --eval-only: write per-video predictions to this CSV")
    p.add_argument("--verify-data", action="store_true",
                   help="re-read every feature file and compare it with the feature store")
    args, rest = cli.parse(p, argv)

    ckpt = None
    if args.eval_only or args.resume:
        src = args.checkpoint if args.eval_only else args.resume
        if not src:
            raise ValueError("--eval-only needs --checkpoint <path>")
        ckpt = load_checkpoint(src)
        if args.resume:
            bad = sorted(k for k, _ in parse_overrides(rest) if k not in RESUME_OVERRIDABLE)
            if bad:
                raise ValueError(f"cannot change {', '.join(bad)} when resuming (the run would no "
                                 f"longer be the same); allowed: {', '.join(sorted(RESUME_OVERRIDABLE))}")
        cfg = load_config(None, rest, base=ckpt["config"])
    else:
        cfg = load_config(args.config, rest)
    info, device = ddp.init(cfg["device"])
    try:
        return run(args, cfg, ckpt, info, device, not args.no_progress and info.is_main)
    finally:
        ddp.shutdown()


def _load_data(args, cfg, info, device, progress):
    """The data index.  With the feature store, rank 0 builds (or checks) it first and the
    other ranks open it after rank 0 is done, as with the centroids."""
    if not (info.enabled and cfg["store"]):
        return index_from_config(cfg, progress, verify=args.verify_data)
    if info.is_main:
        failed = True
        try:
            index = index_from_config(cfg, progress, verify=args.verify_data)
            failed = False
        finally:
            # The barrier; it also tells the waiting ranks whether rank 0 failed.
            ddp.any_flag(failed, info, device)
        return index
    if ddp.any_flag(False, info, device):
        raise ValueError("rank 0 could not load the data; its error says why")
    return index_from_config(cfg, progress=False)


def run(args, cfg: dict, ckpt, info, device, progress: bool) -> int:
    if cfg["store_on_device"] and cfg["num_workers"]:
        if info.is_main:
            tqdm.write("store_on_device: batches are sliced in device memory, which worker "
                       "processes cannot share; num_workers set to 0")
        cfg = {**cfg, "num_workers": 0}
    settings = settings_from_config(cfg)
    index = _load_data(args, cfg, info, device, progress)
    store_device = device if cfg["store_on_device"] else None
    eval_ds = TSEDataset(index, cfg["eval_split"], cfg["in_memory"], progress, store_device)

    if args.eval_only:
        if list(ckpt["label_values"]) != list(index.label_values):
            raise ValueError("the classes in the data differ from those the checkpoint was "
                             "trained on")
        model = model_from_checkpoint(ckpt, settings.model).to(device)
        res = evaluate(model, eval_ds, settings.loop, device, progress,
                       keep_predictions=bool(args.predictions), info=info)
        if not info.is_main:
            return 0
        print(f"eval on '{cfg['eval_split']}' ({res['count']} videos): loss {res['loss']:.4f} "
              f"top1 {res['top1']:.4f} top5 {res['top5']:.4f}")
        if args.predictions:
            write_predictions(args.predictions, index, res["predictions"])
            print(f"predictions written to {args.predictions}")
        return 0

    run_dir = Path(args.resume) if args.resume else cli.default_run_dir(cfg)
    if args.resume and not run_dir.is_dir():
        run_dir = run_dir.parent
    if not args.resume and info.enabled:
        run_dir = Path(ddp.gather_objects(str(run_dir), info)[0])  # rank 0's timestamped name
    train_ds = TSEDataset(index, cfg["train_split"], cfg["in_memory"], progress, store_device)
    result = fit(train_ds, eval_ds, settings, device=device, cache_dir=cfg["cache_dir"],
                 run_dir=run_dir, resume=ckpt, config=cfg, progress=progress,
                 log=tqdm.write, info=info)
    return 130 if result.stopped else 0


if __name__ == "__main__":
    cli.main_guard(main)
