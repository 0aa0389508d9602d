"""Teacher pieces without a server: prompts, parsing, few-shot draw, cache keys, aggregation, gate
metrics, config checks."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, codebook_dict
from sklearn.metrics import f1_score, precision_score, recall_score

from annodistill.config import codebook_from_dict, load_study, load_task, validate_study
from annodistill.errors import InputError
from annodistill.teacher.votes import gate_metrics, label_rows
from annodistill.teacher.cache import cache_key
from annodistill.teacher.prompts import (AnswerParser, PromptBuilder, check_disjoint,
                                         choose_few_shot, logprob_positions)
from annodistill.teacher.spec import spec_from_dict, teacher_names


def _cb(**kw):
    d = codebook_dict("topic", "raw/topic.csv")
    d["labels"][0]["verbalizer"] = "negative"
    d["labels"][1]["verbalizer"] = "positive"
    d.update(kw)
    return codebook_from_dict(d, "topic.yaml")


def _spec(**kw):
    d = {"provider": "openai", "base_url": "http://x/v1", "model": "m", "mode": "completion",
         "max_usd": 0}
    d.update(kw)
    return spec_from_dict("t", d)


def test_parser_is_strict():
    p = AnswerParser(_cb(), structured=False)
    assert p.parse(" negative") == "yes" and p.parse("Positive.") == "no"
    assert p.parse('"negative"\nbecause') == "yes" and p.parse("negative, clearly") == "yes"
    for bad in ("", None, " neutral", "negatively", "The answer is negative", "neg", "maybe"):
        assert p.parse(bad) is None, bad
    js = AnswerParser(_cb(), structured=True)
    assert js.parse('{"label": "positive"}') == "no"
    for bad in ('{"label": "neutral"}', '{"label": ', "positive", '["positive"]', '{"x": 1}'):
        assert js.parse(bad) is None, bad


def test_verbalizers_longest_first():
    d = codebook_dict("t2", "raw.csv")
    d["labels"][0]["verbalizer"] = "not negative"
    d["labels"][1]["verbalizer"] = "negative"
    p = AnswerParser(codebook_from_dict(d, "t2.yaml"), structured=False)
    assert p.parse("not negative") == "yes" and p.parse("negative") == "no"


def test_logprob_p_positive_completion_and_chat():
    p = AnswerParser(_cb(), structured=False)
    choice = {"logprobs": {"tokens": [" negative"], "token_logprobs": [math.log(0.6)],
                           "top_logprobs": [{" negative": math.log(0.6), " positive": math.log(0.3),
                                             " the": math.log(0.1)}]}}
    assert p.p_positive(logprob_positions(choice)) == pytest.approx(0.6 / 0.9)
    js = AnswerParser(_cb(), structured=True)
    chat = {"logprobs": {"content": [
        {"token": '{"', "logprob": 0.0, "top_logprobs": [{"token": '{"', "logprob": 0.0}]},
        {"token": "label", "logprob": 0.0, "top_logprobs": [{"token": "label", "logprob": 0.0}]},
        {"token": '":"', "logprob": 0.0, "top_logprobs": [{"token": '":"', "logprob": 0.0}]},
        {"token": "pos", "logprob": math.log(0.7),
         "top_logprobs": [{"token": "pos", "logprob": math.log(0.7)},
                          {"token": "neg", "logprob": math.log(0.3)}]}]}}
    # 'label' is not a verbalizer prefix; the label token is 'pos'/'neg'
    assert js.p_positive(logprob_positions(chat)) == pytest.approx(0.3)


def test_few_shot_seeded_balanced_and_excluded():
    cb = _cb()
    v = pd.DataFrame({"id": [f"v{i}" for i in range(30)], "text": [f"t{i}" for i in range(30)],
                      "label": ["yes"] * 6 + ["no"] * 24})
    a = choose_few_shot(v, cb, 4, seed=1)
    assert list(a["label"]) == ["yes", "no", "yes", "no"]
    assert a.equals(choose_few_shot(v.sample(frac=1, random_state=3), cb, 4, seed=1))
    assert not a.equals(choose_few_shot(v, cb, 4, seed=2))
    with pytest.raises(InputError, match="few-shot"):
        check_disjoint(v, a, "x")
    pinned = _cb(few_shot={"ids": ["v7", "v3"]})
    assert list(choose_few_shot(v, pinned, 2, seed=1)["id"]) == ["v7", "v3"]
    with pytest.raises(InputError, match="not in the validation"):
        choose_few_shot(v, _cb(few_shot={"ids": ["nope"]}), 1, seed=1)


def test_completion_prefix_fixed_and_chat_messages():
    cb = load_task("vader_tweets", ROOT / "config/tasks")
    shots = pd.DataFrame({"id": ["a", "b"], "text": ["bad  day\n", "nice"],
                          "label": ["negative", "not_negative"]})
    b = PromptBuilder(cb, _spec(), shots)
    p1, p2 = b.body("one", 0)["prompt"], b.body("two", 1)["prompt"]
    assert p1.endswith("Text: one\nSentiment:") and p1[:-20] == p2[:-20]
    assert "Text: bad day\nSentiment: negative\n\nText: nice\nSentiment: positive\n\n" in p1
    assert b.body("one", 0)["seed"] != b.body("one", 1)["seed"]
    c = PromptBuilder(cb, _spec(mode="chat", structured=True, logprobs=True), shots).body("x", 0)
    roles = [m["role"] for m in c["messages"]]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert json.loads(c["messages"][2]["content"]) == {"label": "negative"}
    assert c["response_format"]["json_schema"]["schema"]["properties"]["label"]["enum"] == [
        "negative", "positive"]
    assert c["logprobs"] is True


def test_cache_key_content_addressed():
    body = {"model": "m", "prompt": "p", "seed": 1}
    k = cache_key("http://a/v1", "m", body, 0)
    assert k == cache_key("http://a/v1", "m", dict(reversed(list(body.items()))), 0)
    assert len({k, cache_key("http://b/v1", "m", body, 0), cache_key("http://a/v1", "m", body, 1),
                cache_key("http://a/v1", "m", {**body, "prompt": "q"}, 0)}) == 4


def _resp(text, pt=10, ct=1, usd=0.0):
    return {"choices": [{"text": text, "logprobs": None}],
            "usage": {"prompt_tokens": pt, "completion_tokens": ct}, "_billed_usd": usd}


def test_label_rows_mode_consistency_votes():
    cb, spec = _cb(), _spec(samples=3)
    answers = {("a", 0): _resp(" negative"), ("a", 1): _resp(" positive"), ("a", 2): _resp(" negative"),
               ("b", 0): _resp(" meh"), ("b", 1): _resp(""), ("b", 2): _resp(" nope"),
               ("c", 0): _resp(" positive", usd=0.5), ("c", 1): _resp(" huh"),
               ("c", 2): _resp(" negative", usd=0.25)}
    df = label_rows(["a", "b", "c"], answers, cb, spec)
    a, b, c = (df.iloc[i] for i in range(3))
    assert a["label"] == "yes" and a["consistency"] == pytest.approx(2 / 3)
    assert a["p_positive"] == pytest.approx(2 / 3) and a["p_source"] == "votes"
    assert pd.isna(b["label"]) and b["n_unparseable"] == 3 and pd.isna(b["p_positive"])
    assert json.loads(b["answers"]) == [" meh", "", " nope"]
    # a tie between parsed answers goes to the one answered first
    assert c["label"] == "no" and c["consistency"] == 0.5 and c["n_unparseable"] == 1
    assert c["cost_usd"] == 0.75 and c["prompt_tokens"] == 30


def test_gate_metrics_match_sklearn():
    cb = _cb()
    rng = np.random.default_rng(0)
    truth = pd.DataFrame({"id": [str(i) for i in range(50)],
                          "label": rng.choice(["yes", "no"], 50)})
    pred = truth["label"].where(rng.random(50) < 0.8, rng.choice(["yes", "no"], 50))
    pred = pred.where(rng.random(50) > 0.1, None)
    labels = pd.DataFrame({"id": truth["id"], "label": pred, "consistency": 1.0,
                           "p_positive": np.nan, "n_unparseable": pred.isna() * 3,
                           "n_answers": 3})
    g = gate_metrics(labels, truth, cb)
    y = truth["label"] == "yes"
    yhat = pred == "yes"
    assert g["f1"] == pytest.approx(f1_score(y, yhat))
    assert g["precision"] == pytest.approx(precision_score(y, yhat))
    assert g["recall"] == pytest.approx(recall_score(y, yhat))
    assert g["accuracy"] == pytest.approx(np.mean(pred == truth["label"]))
    assert g["n_unparseable_items"] == pred.isna().sum() > 0
    assert g["consistency_vs_accuracy"][0]["n"] == 50


def test_config_checks():
    cfg = load_study(ROOT / "config/config.yaml")
    assert teacher_names(cfg) == ["gemma270m"]
    bad = {**cfg, "teachers": {"models": {"my_teacher": cfg["teachers"]["models"]["gemma270m"]}}}
    with pytest.raises(InputError):
        validate_study(bad)
    bad = {**cfg, "teachers": {"models": {"gpt-cons67": cfg["teachers"]["models"]["gemma270m"]}}}
    with pytest.raises(InputError):
        validate_study(bad)
    with pytest.raises(InputError, match="not defined"):
        teacher_names({"teachers": {"models": {"a": {}}, "active": ["b"]}})
    with pytest.raises(InputError, match="base_url"):
        spec_from_dict("x", {"provider": "openai", "mode": "chat", "max_usd": 0})
    no_key = {"provider": "openai", "base_url": "u", "model": "m", "mode": "chat", "max_usd": 1,
              "api_key": "sk-..."}
    with pytest.raises(InputError):  # a key in config is refused by the schema
        validate_study({**cfg, "teachers": {"models": {"x": no_key}}})
