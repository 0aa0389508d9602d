"""`annodistill data ...`: fetch-vader, ingest, split."""
from __future__ import annotations

import argparse
from pathlib import Path

from .. import io
from ..config import load_codebook


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="data stage: fetch-vader, ingest, split")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="STEP")

    f = dsub.add_parser("fetch-vader", help="download the VADER ratings sdist from PyPI, verify, extract")
    f.add_argument("--dest", default="resources/vader")
    f.add_argument("--sdist", default=None, help="use this local vaderSentiment-3.3.2.tar.gz")
    f.set_defaults(func=_fetch)

    i = dsub.add_parser("ingest", help="raw human-coded file -> clean.parquet + summary.json")
    i.add_argument("--codebook", required=True, help="config/tasks/<task>.yaml")
    i.add_argument("--raw", default=None, help="raw file (default: the codebook's source.path)")
    i.add_argument("--out", required=True)
    i.add_argument("--summary", required=True)
    i.set_defaults(func=_ingest)

    c = dsub.add_parser("coders", help="per-coder ratings -> coders.parquet (id, coder, label)")
    c.add_argument("--codebook", required=True, help="config/tasks/<task>.yaml (with source.coders)")
    c.add_argument("--clean", required=True, help="results/<task>/data/clean.parquet")
    c.add_argument("--raw", default=None, help="coders file (default: source.coders.path)")
    c.add_argument("--out", required=True)
    c.add_argument("--summary", required=True)
    c.set_defaults(func=_coders)

    s = dsub.add_parser("split", help="clean.parquet -> test/validation/train_pool + manifest")
    s.add_argument("--clean", required=True)
    s.add_argument("--out-dir", required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--test-size", type=int, required=True)
    s.add_argument("--validation-size", type=int, required=True)
    s.add_argument("--train-sizes", required=True, help="comma-separated, e.g. 250,500,1000")
    s.add_argument("--llm-train-size", type=int, required=True)
    s.add_argument("--stratify", action="store_true")
    s.add_argument("--codebook", default=None, help="to order labels in the manifest")
    s.set_defaults(func=_split)


def _fetch(args) -> int:
    from .fetch import fetch_vader

    info = fetch_vader(args.dest, sdist=args.sdist)
    print(f"VADER ratings extracted to {args.dest} ({len(info['files'])} corpora, sha256 verified)")
    return 0


def _ingest(args) -> int:
    from .ingest import ingest

    cb = load_codebook(args.codebook)
    df, summary = ingest(cb, args.raw or cb.source["path"])
    io.write_parquet(args.out, df)
    io.write_json(args.summary, summary)
    shares = ", ".join(f"{k} {v:.3f}" for k, v in summary["label_shares"].items() if v is not None)
    print(f"{cb.name}: {summary['n_clean']} items ({shares}); "
          f"{summary['dropped_by_label_map']} dropped by the label map")
    return 0


def _coders(args) -> int:
    from .ingest import read_coders

    cb = load_codebook(args.codebook)
    clean = io.read_parquet(args.clean)
    df, summary = read_coders(cb, args.raw or cb.coders["path"], clean["id"].astype(str))
    io.write_parquet(args.out, df)
    io.write_json(args.summary, summary)
    print(f"{cb.name}: {summary['n_ratings']} ratings of {summary['n_items']} items by "
          f"{summary['n_coders']} coder ids")
    return 0


def _split(args) -> int:
    from ..errors import InputError
    from .splits import make_splits

    try:
        sizes = [int(x) for x in args.train_sizes.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--train-sizes must be comma-separated integers, got {args.train_sizes!r}")
    clean = io.read_parquet(args.clean)
    labels = load_codebook(args.codebook).label_names if args.codebook else None
    res = make_splits(clean, seed=args.seed, test_size=args.test_size,
                      validation_size=args.validation_size, train_sizes=sizes,
                      llm_train_size=args.llm_train_size, stratify=args.stratify,
                      labels=labels, where=args.clean)
    out = Path(args.out_dir)
    for name, frame in res["frames"].items():
        io.write_parquet(out / f"{name}.parquet", frame)
    io.write_json(out / "manifest.json", res["manifest"])  # last: marks the split complete
    print(f"splits written to {out}")
    return 0
