"""`annodistill students train ...`: one (task, model, condition) job, all seeds, whole grid."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("students", help="student stage: fine-tune on human or LLM labels, predict")
    ssub = p.add_subparsers(dest="students_command", required=True, metavar="STEP")
    t = ssub.add_parser("train", help="train every seed of one (task, model, condition) over the "
                                      "grid, select without the test set, predict the test set")
    t.add_argument("--task", required=True, help="task name (recorded in run.json)")
    t.add_argument("--model-name", required=True, help="the model's key in students.models")
    t.add_argument("--condition", required=True,
                   help="human-<n> | llm-<teacher> | llm-<teacher>-cons<t> | soft-<teacher>")
    spec = t.add_mutually_exclusive_group(required=True)
    spec.add_argument("--spec", help="the result-defining part of the model's resolved spec "
                                     "as JSON (what the rule passes; device, eval_batch_size "
                                     "and save_models come from $ANNODISTILL_RUN_SETTINGS)")
    spec.add_argument("--config", help="a study config file: the spec is built from its "
                                       "students section")
    t.add_argument("--codebook", required=True, help="config/tasks/<task>.yaml")
    t.add_argument("--splits-dir", required=True, help="results/<task>/splits")
    t.add_argument("--teacher-labels", default=None,
                   help="results/<task>/teacher/<teacher>/labels_train.parquet (LLM conditions)")
    t.add_argument("--predictions", required=True, help="output predictions.parquet")
    t.add_argument("--run-json", required=True, help="output run.json")
    t.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    t.set_defaults(func=_train)


def _train(args) -> int:
    from ..config import load_study
    from ..config import load_codebook as _codebook
    from .run import run_job
    from .spec import model_spec

    if args.spec is not None:
        try:
            spec = json.loads(args.spec)
        except json.JSONDecodeError as exc:
            raise InputError(f"--spec is not JSON: {exc}")
        # what only runs the job (device, eval_batch_size, save_models) is not in the rule's
        # --spec (it must not rerun the job): it comes from the run's settings
        from .. import runsettings

        spec = {**runsettings.model("students", args.model_name), **spec}
    else:
        spec = model_spec(load_study(args.config)["students"], args.model_name)
    cb = _codebook(args.codebook)
    rec = run_job(task=args.task, model_name=args.model_name, condition=args.condition,
                  spec=spec, codebook=cb, splits_dir=Path(args.splits_dir),
                  out_predictions=args.predictions, out_run=args.run_json,
                  teacher_labels=args.teacher_labels, threads=args.threads)
    chosen = "; ".join(f"seed {s['seed']}: {s['chosen']}" for s in rec["seeds"])
    print(f"{args.task}/{args.model_name}/{args.condition}: {len(rec['seeds'])} seed(s) on "
          f"{rec['device']}; {chosen}")
    return 0
