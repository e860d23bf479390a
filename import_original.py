"""Import the original DejaVid's centroid cache and/or saved model into dejavid's formats.

    python import_original.py --config configs/hmdb51.yaml \\
        --cache /path/to/centroids/_cached_median_djv3_8_1337_50_100_51_1459_mm0.pkl
    python import_original.py --config configs/hmdb51.yaml \\
        --k-feats saved_models/k_feats_rank_0_T.pkl \\
        --log-weights saved_models/feat_log_weights_rank_0_T.pt --out runs/original.pt
    python train_dejavid.py --eval-only --checkpoint runs/original.pt

The files are read without running anything they hold (dejavid/interop/original.py).
"""
from __future__ import annotations

import dejavid.runtime  # noqa: F401  (before torch: OpenMP wait policy, numba vector width)
from dejavid.config import cli
from dejavid.config.files import load_config
from dejavid.config.settings import index_from_config
from dejavid.interop.original import import_centroid_cache, import_checkpoint
from dejavid.io import check_not_managed


def main(argv=None) -> int:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--cache", help="the original's centroid cache (<prefix>_cached_median_djv3_*.pkl)")
    p.add_argument("--k-feats", help="the original's saved centroids (k_feats_*.pkl)")
    p.add_argument("--log-weights", help="the original's saved log-weights (feat_log_weights_*.pt)")
    p.add_argument("--out", help="with --k-feats: the dejavid checkpoint to write")
    args, rest = cli.parse(p, argv)
    if not (args.cache or args.k_feats or args.log_weights):
        raise ValueError("nothing to import: give --cache FILE and/or --k-feats FILE "
                         "--log-weights FILE --out FILE")
    if bool(args.k_feats) != bool(args.log_weights):
        raise ValueError("--k-feats and --log-weights go together (the two files of one saved model)")
    if args.k_feats and not args.out:
        raise ValueError("--k-feats/--log-weights need --out FILE, the checkpoint to write")
    cfg = load_config(args.config, rest)
    if args.out:   # before the data check: never over an input or into a managed folder
        check_not_managed(args.out, "--out", {
            "the --cache file": args.cache, "the --k-feats file": args.k_feats,
            "the --log-weights file": args.log_weights, "the config file": args.config,
            **{f"the {k} map": cfg[k] for k in ("id2splits", "id2labels", "id2fname")}},
            {"cache_dir (centroid cache and feature store)": cfg["cache_dir"]})
    index = index_from_config(cfg, progress=not args.no_progress)
    if args.cache:
        entry = import_centroid_cache(args.cache, cfg, index)
        print(f"centroid cache entry written: {entry}\n"
              f"training with this config and data now starts from these centroids")
    if args.k_feats:
        out = import_checkpoint(args.k_feats, args.log_weights, cfg, index, args.out)
        print(f"checkpoint written: {out}\n"
              f"evaluate it with: python train_dejavid.py --eval-only --checkpoint {out}")
    return 0


if __name__ == "__main__":
    cli.main_guard(main)
