"""`annodistill evaluate ...`: task (per-task metrics), summary (tables), figures, headline."""
from __future__ import annotations

import argparse
from pathlib import Path


def _floats(s: str) -> tuple[float, ...]:
    return tuple(float(x) for x in s.split(",") if x.strip())


def _ints(s: str) -> tuple[int, ...]:
    return tuple(int(x) for x in s.split(",") if x.strip())


def _boot_args(p: argparse.ArgumentParser, n_default: int) -> None:
    p.add_argument("--n-resamples", type=int, default=n_default, help="bootstrap resamples")
    p.add_argument("--confidence", type=float, default=0.95, help="CI level")
    p.add_argument("--seed", type=int, default=20240625, help="bootstrap seed")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluation stage: task, summary, figures, headline")
    esub = p.add_subparsers(dest="evaluate_command", required=True, metavar="STEP")

    t = esub.add_parser("task", help="score one task's student runs and teacher labels")
    t.add_argument("--task", required=True)
    t.add_argument("--codebook", required=True, help="config/tasks/<task>.yaml")
    t.add_argument("--test", required=True, help="results/<task>/splits/test.parquet")
    t.add_argument("--predictions", nargs="*", default=[],
                   help="results/<task>/students/<model>/<condition>/predictions.parquet ...")
    t.add_argument("--teacher-test", nargs="*", default=[],
                   help="results/<task>/teacher/<teacher>/labels_test.parquet ...")
    t.add_argument("--teacher-train", nargs="*", default=[],
                   help="results/<task>/teacher/<teacher>/labels_train.parquet ...")
    t.add_argument("--train-pool", default=None, help="results/<task>/splits/train_pool.parquet")
    t.add_argument("--llm-train-size", type=int, default=None)
    t.add_argument("--equal-size", type=int, default=None,
                   help="human-label size compared with LLM labels (default: --llm-train-size)")
    t.add_argument("--bins", type=_floats, default=None, help="consistency bin edges, e.g. 0,0.5,0.75,1")
    t.add_argument("--thresholds", type=_ints, default=None, help="consistency sweep in %%, e.g. 0,50,100")
    _boot_args(t, 1000)
    t.add_argument("--metrics", required=True, help="output metrics.csv")
    t.add_argument("--gaps", required=True, help="output metrics_gaps.csv")
    t.add_argument("--consistency", required=True, help="output metrics_consistency.csv")
    t.add_argument("--sweep", required=True, help="output metrics_sweep.csv")
    t.add_argument("--coders", nargs="*", default=[],
                   help="results/<task>/data/coders.parquet (human-human agreement), if any")
    t.add_argument("--per-class", default=None, help="output metrics_per_class.csv")
    t.add_argument("--confusion", default=None, help="output metrics_confusion.csv")
    t.add_argument("--gaps-per-class", default=None, help="output metrics_gaps_per_class.csv")
    t.add_argument("--agreement", default=None, help="output metrics_agreement.csv")
    t.set_defaults(func=_task)

    s = esub.add_parser("summary", help="tables across tasks from the per-task files on disk")
    for name, what in (("metrics", "metrics.csv"), ("gaps", "metrics_gaps.csv"),
                       ("consistency", "metrics_consistency.csv"), ("sweep", "metrics_sweep.csv"),
                       ("per-class", "metrics_per_class.csv"),
                       ("gaps-per-class", "metrics_gaps_per_class.csv"),
                       ("agreement", "metrics_agreement.csv"),
                       ("gates", "gate.json"), ("costs", "cost_<split>.json")):
        s.add_argument(f"--{name}", nargs="*", default=[], help=f"per-task {what} files")
    s.add_argument("--reference", default=None, help="resources/paper_reference.yaml")
    s.add_argument("--model", default=None, help="headline student model (default: first)")
    s.add_argument("--teacher", default=None, help="headline teacher (default: first)")
    s.add_argument("--equal-size", type=int, default=None)
    s.add_argument("--excluded", action="append", default=[], metavar="TASK=REASON",
                   help="a task left out of the tables, listed as missing with the reason")
    _boot_args(s, 10000)
    s.add_argument("--out-dir", required=True)
    s.set_defaults(func=_summary)

    f = esub.add_parser("figures", help="figures (PNG + PDF) from the summary tables")
    f.add_argument("--summary-dir", required=True)
    f.add_argument("--out-dir", required=True)
    f.set_defaults(func=_figures)

    h = esub.add_parser("headline", help="print the headline table and the report's path")
    h.add_argument("--summary-dir", default="results/summary")
    h.add_argument("--report", default="results/report.html")
    h.set_defaults(func=_headline)

    from .downstream_cli import register as register_downstream

    register_downstream(esub)  # prevalence, budget, cost, disagreements (beyond the paper)


def _task(args) -> int:
    from .. import io
    from ..config import load_codebook
    from ..errors import InputError
    from .metrics import Bootstrap, Scheme
    from .task import DEFAULT_BINS, DEFAULT_THRESHOLDS, TaskInputs, evaluate_task

    cb = load_codebook(args.codebook, name_from_file=False)
    if len(args.coders) > 1:
        raise InputError("give at most one --coders file", field="coders")
    inp = TaskInputs(task=args.task, test=args.test, scheme=Scheme(tuple(cb.label_names), cb.positive),
                     predictions=args.predictions, teacher_test=args.teacher_test,
                     teacher_train=args.teacher_train, train_pool=args.train_pool,
                     llm_train_size=args.llm_train_size, equal_size=args.equal_size,
                     bins=args.bins or DEFAULT_BINS, thresholds=args.thresholds or DEFAULT_THRESHOLDS,
                     coders=args.coders[0] if args.coders else None)
    bins = inp.bins
    if len(bins) < 2 or list(bins) != sorted(set(bins)):
        raise InputError(f"consistency bins must be at least two increasing edges, got {bins}",
                         field="bins")
    res = evaluate_task(inp, Bootstrap(args.n_resamples, args.confidence, args.seed))
    io.write_csv(args.gaps, res.gaps)
    io.write_csv(args.consistency, res.consistency)
    io.write_csv(args.sweep, res.sweep)
    for dest, df in ((args.per_class, res.per_class), (args.confusion, res.confusion),
                     (args.gaps_per_class, res.gaps_per_class), (args.agreement, res.agreement)):
        if dest:
            io.write_csv(dest, df)
    io.write_csv(args.metrics, res.metrics)  # last: its existence means the task is done
    print(f"{args.task}: {len(res.metrics)} runs scored, {len(res.gaps)} gaps -> {args.metrics}")
    return 0


def _summary(args) -> int:
    from .summary import SummaryInputs, build_summary

    meta = build_summary(SummaryInputs(
        metrics=args.metrics, gaps=args.gaps, consistency=args.consistency, sweep=args.sweep,
        per_class=args.per_class, gaps_per_class=args.gaps_per_class, agreement=args.agreement,
        gates=args.gates, costs=args.costs, reference=args.reference, model=args.model,
        teacher=args.teacher, equal_size=args.equal_size, n_resamples=args.n_resamples,
        confidence=args.confidence, seed=args.seed,
        excluded=dict(e.split("=", 1) for e in args.excluded)), args.out_dir)
    print(f"summary of {meta['n_tasks']} task(s) -> {args.out_dir}")
    _print_missing(meta)
    return 0


def _print_missing(meta: dict) -> None:
    for m in meta.get("missing") or []:
        print(f"MISSING task {m['task']}: {m['missing']} — {m['reason']}")


def _figures(args) -> int:
    from .figures import build_figures

    paths = build_figures(args.summary_dir, args.out_dir)
    print(f"{len(paths)} figure files -> {args.out_dir}")
    return 0


def _headline(args) -> int:
    from ..errors import InputError

    d = Path(args.summary_dir)
    head = d / "headline.md"
    if not head.exists():
        raise InputError("no headline table yet (run the workflow first)", path=str(head))
    print(head.read_text(encoding="utf-8").rstrip())
    if (d / "meta.json").exists():
        from .. import io

        _print_missing(io.read_json(d / "meta.json"))
    comp = d / "paper_comparison.md"
    if comp.exists():
        print()
        print(comp.read_text(encoding="utf-8").rstrip())
    report = Path(args.report)
    print()
    print(f"HTML report: {report}" + ("" if report.exists() else
                                      " (not built yet: snakemake --report " f"{report})"))
    return 0
