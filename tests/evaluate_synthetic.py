"""Synthetic evaluation inputs that follow docs/contracts.md: a codebook, test and training-pool
splits, teacher label files with gate.json and cost_<split>.json, and student predictions, for a
few tasks. Predictions are the human label flipped with a chosen error rate, so metrics vary."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

LABELS = ("yes", "no")


def codebook(name: str, labels=LABELS, positive="yes") -> dict:
    return {"name": name, "description": f"synthetic task {name}",
            "source": {"path": f"raw/{name}.csv", "format": "csv", "id_column": "id",
                       "text_column": "text",
                       "label": {"column": "code", "map": {str(i): lab for i, lab in
                                                           enumerate(labels)}}},
            "labels": [{"name": lab, "definition": f"is {lab}", "verbalizer": lab}
                       for lab in labels],
            "positive": positive}


def noisy(truth: np.ndarray, err: float, rng, labels=LABELS) -> np.ndarray:
    out = truth.copy()
    flip = rng.random(len(truth)) < err
    for i in np.flatnonzero(flip):
        others = [lab for lab in labels if lab != truth[i]]
        out[i] = others[rng.integers(len(others))]
    return out


def write_task(root: Path, task: str, *, seed: int = 0, n_test: int = 120, n_pool: int = 400,
               models=("bert", "tfidf"), teachers=("gpt",), seeds=(0, 1),
               human_sizes=(100, 200, 400), llm_size: int = 400, cons=(67,),
               labels=LABELS, positive="yes", skip: tuple = (), n_val: int = 40) -> dict:
    """Write one task's inputs under root/results/<task>; return the paths by kind."""
    rng = np.random.default_rng(seed)
    res = root / "results" / task
    cfg = root / "config" / "tasks"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / f"{task}.yaml").write_text(yaml.safe_dump(codebook(task, labels, positive),
                                                     sort_keys=False))
    probs = [0.35] + [0.65 / (len(labels) - 1)] * (len(labels) - 1)
    y_test = rng.choice(np.array(labels, dtype=object), size=n_test, p=probs)
    test = pd.DataFrame({"id": [f"t{i:04d}" for i in range(n_test)],
                         "text": [f"text {i}" for i in range(n_test)], "label": y_test})
    y_pool = rng.choice(np.array(labels, dtype=object), size=n_pool, p=probs)
    pool = pd.DataFrame({"id": [f"p{i:04d}" for i in range(n_pool)],
                         "text": [f"pool {i}" for i in range(n_pool)], "label": y_pool,
                         "rank": rng.permutation(n_pool)})
    (res / "splits").mkdir(parents=True, exist_ok=True)
    test.to_parquet(res / "splits" / "test.parquet", index=False)
    pool.to_parquet(res / "splits" / "train_pool.parquet", index=False)
    out = {"codebook": cfg / f"{task}.yaml", "test": res / "splits" / "test.parquet",
           "train_pool": res / "splits" / "train_pool.parquet", "predictions": [],
           "teacher_test": [], "teacher_train": [], "gates": [], "costs": []}

    def teacher_labels(ids, truth, err):
        lab = noisy(truth, err, rng, labels).astype(object)
        n_ans = 5
        agree = rng.integers(2, n_ans + 1, size=len(ids))
        # disagreement goes with errors: wrong labels get lower consistency on average
        wrong = lab != truth
        agree = np.where(wrong, np.minimum(agree, rng.integers(2, 5, size=len(ids))), agree)
        cons_ = agree / n_ans
        none = rng.random(len(ids)) < 0.03
        lab[none] = None
        cons_ = np.where(none, np.nan, cons_)
        return pd.DataFrame({
            "id": ids, "label": lab, "consistency": cons_,
            "p_positive": np.where(none, np.nan, np.where(lab == positive, cons_, 1 - cons_)),
            "p_source": "votes", "n_answers": n_ans, "n_unparseable": none.astype(int) * n_ans,
            "answers": ["[]"] * len(ids), "prompt_tokens": 100, "completion_tokens": 5,
            "cost_usd": 0.001})

    llm_ids = pool[pool["rank"] < llm_size]
    for k, teacher in enumerate(teachers):
        tdir = res / "teacher" / teacher
        tdir.mkdir(parents=True, exist_ok=True)
        err = 0.2 + 0.05 * k
        teacher_labels(test["id"].to_numpy(), y_test, err).to_parquet(
            tdir / "labels_test.parquet", index=False)
        teacher_labels(llm_ids["id"].to_numpy(), llm_ids["label"].to_numpy(), err).to_parquet(
            tdir / "labels_train.parquet", index=False)
        gate = {"metrics": {"accuracy": 0.8, "f1": 0.7, "precision": 0.65, "recall": 0.75,
                            "n": 90, "n_unparseable": 2,
                            "bins": [{"lo": 0.5, "hi": 1.0, "accuracy": 0.9, "f1": 0.1}]},
                "threshold": {"metric": "f1", "min": 0.5}, "passed": True}
        (tdir / "gate.json").write_text(json.dumps(gate, sort_keys=True) + "\n")
        n_items = {"validation": n_val - 4, "test": n_test, "train": len(llm_ids)}
        for split in ("validation", "test", "train"):
            (tdir / f"cost_{split}.json").write_text(json.dumps(
                {"requests": 100, "cache_hits": 10, "prompt_tokens": 10000,
                 "completion_tokens": 500, "usd": 0.05, "provider": "openai",
                 "n_items": n_items[split], "requests_sent": 90, "seconds": 12.5,
                 "usd_all_answers": 0.001 * n_items[split] * 5}, sort_keys=True) + "\n")
            out["costs"].append(tdir / f"cost_{split}.json")
        out["teacher_test"].append(tdir / "labels_test.parquet")
        out["teacher_train"].append(tdir / "labels_train.parquet")
        out["gates"].append(tdir / "gate.json")

    # the validation sample and the teacher's labels of it (minus 4 few-shot examples), from a
    # separate random stream so that every other file stays as it was
    vrng = np.random.default_rng(seed + 1000)
    y_val = vrng.choice(np.array(labels, dtype=object), size=n_val, p=probs)
    val = pd.DataFrame({"id": [f"v{i:04d}" for i in range(n_val)],
                        "text": [f"validation {i}" for i in range(n_val)], "label": y_val})
    val.to_parquet(res / "splits" / "validation.parquet", index=False)
    out["validation"] = res / "splits" / "validation.parquet"
    out["teacher_validation"] = []
    for k, teacher in enumerate(teachers):
        tdir = res / "teacher" / teacher
        scored = val.iloc[4:]
        lab = noisy(scored["label"].to_numpy(), 0.2 + 0.05 * k, vrng, labels).astype(object)
        agree = vrng.integers(2, 6, size=len(scored))
        answers = [json.dumps([a] * int(g) + [o for o in labels if o != a][:1] * (5 - int(g)))
                   for a, g in zip(lab, agree)]
        pd.DataFrame({"id": scored["id"].to_numpy(), "label": lab, "consistency": agree / 5,
                      "p_positive": np.where(lab == positive, agree / 5, 1 - agree / 5),
                      "p_source": "votes", "n_answers": 5, "n_unparseable": 0,
                      "answers": answers, "prompt_tokens": 100, "completion_tokens": 5,
                      "cost_usd": 0.001}).to_parquet(tdir / "labels_validation.parquet",
                                                     index=False)
        out["teacher_validation"].append(tdir / "labels_validation.parquet")

    conds = [f"human-{n}" for n in human_sizes]
    for t in teachers:
        conds += [f"llm-{t}", f"soft-{t}"] + [f"llm-{t}-cons{c}" for c in cons]
    for m_i, model in enumerate(models):
        for c_i, cond in enumerate(conds):
            if (model, cond) in skip:
                continue
            err = 0.12 + 0.03 * m_i + (0.05 if cond.startswith(("llm", "soft")) else 0) \
                + (0.1 / (1 + int(cond.split("-")[1])) * 50 if cond.startswith("human") else 0)
            rows = []
            for s in seeds:
                lab = noisy(y_test, min(err, 0.9), rng, labels)
                rows.append(pd.DataFrame({"seed": s, "id": test["id"],
                                          "p_positive": (lab == positive).astype(float),
                                          "label": lab}))
            d = res / "students" / model / cond
            d.mkdir(parents=True, exist_ok=True)
            pd.concat(rows).to_parquet(d / "predictions.parquet", index=False)
            n_train = (int(cond.split("-")[1]) if cond.startswith("human") else
                       llm_size - 5 - (llm_size // 3 if "-cons" in cond else 0))
            (d / "run.json").write_text(json.dumps(
                {"seeds": [{"seed": s, "n_train": n_train, "train_seconds": 0.05 * n_train}
                           for s in seeds]}) + "\n")
            out["predictions"].append(d / "predictions.parquet")
    return out
