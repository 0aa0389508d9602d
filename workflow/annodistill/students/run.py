"""One student job end to end: (task, model, condition) with every seed and the whole grid.

Reads the training pool (and teacher labels for LLM conditions), carves the selection split,
tokenises every text once, runs the grid per seed, keeps the winner in memory and predicts the
test set. The test set enters as ids and texts only: `read_test_texts` loads those two columns,
so no test label is in memory while a model is trained or selected.

Writes predictions.parquet (seed, id, label, p_positive (binary), p_labels (JSON label ->
probability)) and run.json (per seed: chosen hyper-parameters, the grid's selection scores,
selection source and metric, the sha256 of the train/selection ids (equal across conditions of
equal size: the paired design), n_train, the degenerate flag, seconds, examples/s, device);
weights only with `save_models: true`.
"""
from __future__ import annotations

import gc
import json
import logging
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .. import io
from ..contracts import PREDICTION_COLUMNS, degenerate_reason, ids_digest, parse_condition
from ..errors import InputError
from . import selection as sel
from .conditions import training_table

log = logging.getLogger(__name__)

KINDS = ("encoder", "decoder-lora", "tfidf")


def read_test_texts(path: str | Path) -> pd.DataFrame:
    """The test items as `id`, `text` only (the label column is never read)."""
    path = Path(path)
    if not path.exists():
        raise InputError("test split not found", path=str(path))
    df = io.read_parquet(path, columns=["id", "text"])
    return df.reset_index(drop=True)


def _versions() -> dict:
    import sklearn

    out = {"python": platform.python_version(), "scikit-learn": sklearn.__version__,
           "pandas": pd.__version__}
    try:
        import torch
        import transformers

        out.update(torch=torch.__version__, transformers=transformers.__version__)
    except ImportError:
        pass
    return out


def run_job(*, task: str, model_name: str, condition: str, spec: dict, codebook,
            splits_dir: str | Path, out_predictions: str | Path, out_run: str | Path,
            teacher_labels: str | Path | None = None, threads: int = 1,
            test_path: str | Path | None = None, validation_path: str | Path | None = None) -> dict:
    """Train and predict every seed; write the two outputs atomically; return the run record."""
    if spec.get("kind") not in KINDS:
        raise InputError(f"model {model_name!r}: kind must be one of {KINDS}, got "
                         f"{spec.get('kind')!r}", field="kind")
    splits_dir = Path(splits_dir)
    cond = parse_condition(condition)
    labels = codebook.label_names
    positive = getattr(codebook, "positive", None) or None
    pos_index = labels.index(positive) if codebook.is_binary else None
    table = training_table(cond, train_pool=splits_dir / "train_pool.parquet",
                           label_names=labels, positive=positive, teacher_labels=teacher_labels)
    test = read_test_texts(test_path or splits_dir / "test.parquet")
    source = spec.get("selection", "same_source")
    if source not in sel.SOURCES:
        raise InputError(f"selection must be one of {sel.SOURCES}, got {source!r}",
                         field="selection")
    metric = spec.get("selection_metric", "macro_f1")
    if metric not in sel.METRICS:
        raise InputError(f"selection_metric must be one of {sel.METRICS}, got {metric!r}",
                         field="selection_metric")
    human_val = None
    if source == "human_validation":
        vpath = validation_path or splits_dir / "validation.parquet"
        human_val = sel.human_validation(vpath, label_names=labels)
        overlap = set(human_val["id"]) & set(test["id"].astype(str))
        if overlap:
            raise InputError(f"{len(overlap)} validation ids are also test ids", path=str(vpath))
    leak = set(table.base_ids) & set(test["id"].astype(str))
    if leak:
        raise InputError(f"{len(leak)} training ids are test ids (e.g. {sorted(leak)[0]!r})",
                         path=str(splits_dir))

    seeds = [int(s) for s in spec.get("seeds", [1])]
    per_seed, preds = [], []
    device_name = "cpu"
    if spec["kind"] == "tfidf":
        fit = _tfidf_seed
    else:
        fit = _torch_seed
        import torch

        torch.set_num_threads(max(1, int(threads)))
    ctx: dict = {}
    fraction = spec.get("selection_fraction", 0.2)
    for seed in seeds:
        if human_val is not None:
            train_ids, sel_ids = list(table.base_ids), list(human_val["id"])
            tr, se = table.train, human_val
        else:
            # carved by item, not by label: every condition of this size uses the same ids
            train_ids, sel_ids = sel.carve_ids(table.base_ids, fraction=fraction, seed=seed)
            tr = table.train[table.train["id"].isin(set(train_ids))].reset_index(drop=True)
            se = table.select[table.select["id"].isin(set(sel_ids))].reset_index(drop=True)
        if tr.empty or se.empty:
            raise InputError(f"condition {condition!r}, seed {seed}: the "
                             f"{'training' if tr.empty else 'selection'} part is empty after "
                             f"dropping items without a usable label")
        t0 = time.perf_counter()
        y_tr = table.targets(tr)
        hard = y_tr.argmax(axis=1)
        if len(np.unique(hard)) < 2 and np.allclose(y_tr.max(axis=1), 1.0):
            # Every training label is the same class (e.g. a teacher that answered one label to
            # everything): no classifier can be fitted; the student that such labels define
            # predicts that class for every item. Recorded as degenerate, never silently.
            const = labels[int(hard[0])]
            log.warning("%s/%s/%s seed %d: all %d training labels are %s; the student is a "
                        "constant predictor", task, model_name, condition, seed, len(tr), const)
            probs = np.zeros((len(test), len(labels)))
            probs[:, int(hard[0])] = 1.0
            res = {"probs": probs, "grid": [], "train_seconds": 0.0,
                   "chosen": {"degenerate": "single-class training labels", "constant": const},
                   "examples": 0, "examples_per_s": 0.0, "device": "cpu"}
        else:
            res = fit(ctx, spec=spec, train=tr, targets=y_tr, select=se,
                      select_targets=table.targets(se), test=test, seed=seed, labels=labels,
                      positive_index=pos_index)
        wall = time.perf_counter() - t0
        device_name = res.get("device", "cpu")
        probs = np.asarray(res["probs"], dtype=float)
        pred_labels = np.array(labels, dtype=object)[probs.argmax(axis=1)]
        frame = {"seed": seed, "id": test["id"].to_numpy(), "label": pred_labels,
                 "p_positive": probs[:, pos_index] if pos_index is not None
                 else np.full(len(test), np.nan),
                 "p_labels": [json.dumps(dict(zip(labels, map(float, row)))) for row in probs]}
        preds.append(pd.DataFrame(frame, columns=PREDICTION_COLUMNS))
        reason = degenerate_reason(pred_labels, probs, n_labels=len(labels))
        if reason:
            log.warning("%s/%s/%s seed %d: degenerate test predictions: %s", task, model_name,
                        condition, seed, reason)
        rec = {"seed": seed, "chosen": res["chosen"], "grid": res["grid"],
               "selection_source": source, "selection_metric": metric,
               "n_base": len(table.base_ids), "n_train": len(tr), "n_selection": len(se),
               "train_ids_sha256": ids_digest(train_ids),
               "selection_ids_sha256": ids_digest(sel_ids),
               "used_train_ids_sha256": ids_digest(tr["id"]),
               "train_label_shares": dict(zip(labels, map(float, y_tr.mean(axis=0)))),
               "degenerate": reason,
               "train_seconds": res["train_seconds"], "wall_seconds": wall,
               "examples": res["examples"], "examples_per_s": res["examples_per_s"],
               "device": device_name}
        if pos_index is not None:
            rec["train_positive_share"] = float(y_tr[:, pos_index].mean())
        if spec.get("save_models"):
            rec["model_dir"] = str(_save(res, Path(out_run).parent / f"model-seed{seed}"))
        per_seed.append(rec)
        log.info("%s/%s/%s seed %d: chose %s (selection %s %.4f), %.1f s", task, model_name,
                 condition, seed, res["chosen"], metric,
                 max((g.get(f"selection_{metric}", float("nan")) for g in res["grid"]
                      if metric != "loss"), default=float("nan")), wall)
    out = pd.concat(preds, ignore_index=True)
    out["seed"] = out["seed"].astype("int64")
    record = {"task": task, "model": model_name, "condition": condition,
              "condition_kind": cond.kind, "teacher": cond.teacher, "kind": spec["kind"],
              "model_path": spec.get("path"), "positive": positive, "labels": labels,
              "selection": {"source": source, "metric": metric,
                            "fraction": None if human_val is not None else fraction},
              "counts": table.counts, "n_test": len(test), "seeds": per_seed,
              "device": device_name, "threads": int(threads), "spec": spec,
              "versions": _versions()}
    io.write_parquet(out_predictions, out)
    io.write_json(out_run, record)
    return record


def _save(res: dict, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if "model" in res and isinstance(res["model"], tuple):  # tfidf
        import pickle

        with io.atomic_path(folder / "tfidf_logreg.pkl") as tmp:
            tmp.write_bytes(pickle.dumps(res["model"]))
    else:
        res["model"].save_pretrained(folder)
        res["tokenizer"].save_pretrained(folder)
    return folder


def _codes(frame: pd.DataFrame, labels: list[str]) -> np.ndarray:
    index = {n: j for j, n in enumerate(labels)}
    return frame["label"].map(index).to_numpy(dtype=int)


def _tfidf_seed(ctx, *, spec, train, targets, select, select_targets, test, seed, labels,
                positive_index) -> dict:
    from .tfidf import train_predict

    res = train_predict(train["text"].tolist(), targets, select["text"].tolist(),
                        _codes(select, labels), select_targets, test["text"].tolist(), spec=spec,
                        seed=seed, positive_index=positive_index)
    res["device"] = "cpu"
    return res


def _torch_seed(ctx, *, spec, train, targets, select, select_targets, test, seed, labels,
                positive_index) -> dict:
    """Encoder or LoRA decoder for one seed. Tokeniser, device and encodings are cached in ctx."""
    from . import loop, models

    if "tokenizer" not in ctx:
        from transformers import AutoConfig

        path = models.resolve_path(spec["path"])
        model_type = AutoConfig.from_pretrained(path).model_type
        tok = models.prepare_tokenizer(models.load_tokenizer(path, spec), model_type, spec["kind"])
        ctx.update(path=path, tokenizer=tok, device=models.choose_device(spec.get("device", "auto")),
                   cache={})
        log.info("model %s (%s) on %s", spec["path"], model_type, ctx["device"])
    tok, device, cache = ctx["tokenizer"], ctx["device"], ctx["cache"]
    max_len = int(spec.get("max_length", 128))

    # every text is tokenised once per job and reused by every seed and grid point; test texts
    # are keyed apart from training texts
    e_train = _encode_cached(cache, tok, [("train", i) for i in train["id"]], train["text"],
                             max_len)
    e_sel = _encode_cached(cache, tok, [("train", i) for i in select["id"]], select["text"],
                           max_len)
    e_test = _encode_cached(cache, tok, [("test", i) for i in test["id"]], test["text"], max_len)

    model = models.build_model(ctx["path"], spec, seed=seed, device=device,
                               pad_token_id=tok.pad_token_id, labels=labels)
    side = tok.padding_side
    res = loop.train_grid(model, train=e_train, targets=targets, select=e_sel,
                          select_labels=_codes(select, labels), select_targets=select_targets,
                          spec=spec, seed=seed, device=device, pad_id=tok.pad_token_id,
                          side=side, positive_index=positive_index)
    res["probs"] = loop.predict_proba(model, e_test, device=device,
                                           batch_size=spec.get("eval_batch_size", 128),
                                           pad_id=tok.pad_token_id, side=side,
                                           bf16=spec.get("bf16", True))
    res["device"] = device.type
    if spec.get("save_models"):
        res["model"], res["tokenizer"] = model, tok
    else:
        del model
        gc.collect()
        if device.type == "cuda":
            import torch

            torch.cuda.empty_cache()
    return res


def _encode_cached(cache: dict, tok, keys: list, texts, max_len: int):
    from .loop import Encoded, encode

    todo = [(k, t) for k, t in zip(keys, texts) if k not in cache]
    if todo:
        e = encode(tok, [t for _, t in todo], max_len)
        for j, (k, _) in enumerate(todo):
            cache[k] = (e.input_ids[j], {name: v[j] for name, v in e.extra.items()})
    rows = [cache[k] for k in keys]
    names = list(rows[0][1]) if rows else []
    return Encoded([r[0] for r in rows], {n: [r[1][n] for r in rows] for n in names})
