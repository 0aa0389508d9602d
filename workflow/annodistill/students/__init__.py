"""Student stage: fine-tune classifiers on human or LLM labels, select on a non-test split, predict.

One job = one (task, model, condition) with all its seeds and the whole hyper-parameter grid:
- `conditions`: condition names (`human-250`, `llm-gpt4`, `llm-gpt4-cons67`, `soft-gpt4`) and
  the training table each one means (texts + target probability of the positive class);
- `selection`: the selection split (carved from the same label source, or the human validation
  sample), never the test set;
- `models`: model references (hub id, local folder, `python:<module>:<function>`), device choice,
  building encoders and LoRA decoders;
- `loop`: our training loop (tokenise once, dynamic padding, length-grouped batches, grid inside
  one job, winner kept in memory, OOM retry with gradient accumulation);
- `tfidf`: the TF-IDF + logistic regression baseline;
- `run`: one job end to end (inputs -> predictions.parquet + run.json).
"""
