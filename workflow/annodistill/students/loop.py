"""Our training loop: the grid for one seed inside one process, the winner kept in memory.

Efficiency, in the order it matters on a CPU:
- texts are tokenised once per job (no padding, truncated to `max_length`);
- batches are formed from length-sorted groups (`length_grouped_batches`) and padded only to the
  longest item of the batch (dynamic padding); evaluation runs length-sorted with larger batches;
- every grid point (learning rate, batch size, epochs) is its own run with its own linear schedule,
  as in the paper; `share_epochs: true` is an opt-in approximation that scores one run of the
  largest epoch count after each listed epoch (docs/students.md gives its measured effect);
- no checkpoint is written inside the grid: the best trainable parameters are copied in memory;
- on CUDA: bf16 autocast (when supported), TF32 matmuls, and on out-of-memory a retry with half
  the per-device batch and twice the gradient accumulation (same effective batch).

The targets are distributions over the codebook's K labels (one-hot for hard labels, the teacher's
distribution for soft labels); the loss is the cross-entropy against that distribution. The grid
winner is chosen by `selection.selection_key` (a constant predictor never wins while a
non-constant grid point exists; then the configured metric, macro-F1 by default; ties by loss).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class Encoded:
    """Token ids (unpadded) of a list of texts, and any extra per-token inputs."""
    input_ids: list[list[int]]
    extra: dict[str, list[list[int]]] = field(default_factory=dict)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64,
                           count=len(self.input_ids))

    def __len__(self) -> int:
        return len(self.input_ids)


def encode(tokenizer, texts: list[str], max_length: int) -> Encoded:
    out = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
    names = getattr(tokenizer, "model_input_names", None) or ["token_type_ids"]
    extra = {k: out[k] for k in ("token_type_ids",) if k in out and k in names}
    return Encoded(input_ids=out["input_ids"], extra=extra)


def collate(enc: Encoded, idx, pad_id: int, side: str = "right") -> dict:
    import torch

    seqs = [enc.input_ids[i] for i in idx]
    width = max(len(s) for s in seqs)
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    extras = {k: np.zeros((len(seqs), width), dtype=np.int64) for k in enc.extra}
    for r, (i, s) in enumerate(zip(idx, seqs)):
        sl = slice(width - len(s), width) if side == "left" else slice(0, len(s))
        ids[r, sl] = s
        mask[r, sl] = 1
        for k in extras:
            extras[k][r, sl] = enc.extra[k][i]
    batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
    batch.update({k: torch.from_numpy(v) for k, v in extras.items()})
    return batch


def length_grouped_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                           group: int = 50) -> list[np.ndarray]:
    """Shuffle, cut into groups of `group` batches, sort each group by length, shuffle the batches."""
    perm = rng.permutation(len(lengths))
    chunk = batch_size * group
    batches = []
    for start in range(0, len(perm), chunk):
        part = perm[start:start + chunk]
        part = part[np.argsort(-lengths[part], kind="stable")]
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def _autocast(device, enabled: bool):
    import contextlib

    import torch

    if device.type == "cuda" and enabled and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def predict_proba(model, enc: Encoded, *, device, batch_size: int, pad_id: int, side: str,
                  bf16: bool = True) -> np.ndarray:
    """(n, K) class probabilities for every item, in the input order (evaluated length-sorted)."""
    import torch

    model.eval()
    order = np.argsort(-enc.lengths, kind="stable")
    out = np.empty((len(enc), model.config.num_labels), dtype=np.float64)
    with torch.inference_mode(), _autocast(device, bf16):
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            batch = {k: v.to(device) for k, v in collate(enc, idx, pad_id, side).items()}
            logits = model(**batch).logits.float()
            out[idx] = torch.softmax(logits, dim=-1).cpu().numpy()
    return out


def _trainable(model) -> dict:
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters()
            if p.requires_grad}


def _restore(model, state: dict) -> None:
    import torch

    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, v in state.items():
            params[n].copy_(v.to(params[n].device, dtype=params[n].dtype))


def grid_runs(grid: dict, share_epochs: bool) -> list[dict]:
    """The runs of a grid: each with lr, batch size and the epochs at which it is scored."""
    epochs = sorted(set(grid["epochs"]))
    runs = []
    for lr in grid["learning_rate"]:
        for bs in grid["batch_size"]:
            if share_epochs:
                runs.append({"learning_rate": lr, "batch_size": bs, "checkpoints": epochs})
            else:
                runs += [{"learning_rate": lr, "batch_size": bs, "checkpoints": [e]} for e in epochs]
    return runs


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def train_grid(model, *, train: Encoded, targets: np.ndarray, select: Encoded,
               select_labels: np.ndarray, select_targets: np.ndarray, spec: dict, seed: int,
               device, pad_id: int, side: str, positive_index: int | None = None) -> dict:
    """Run the grid, leave the winner's weights in `model`, return records and timings.

    targets/select_targets: (n, K) distributions; select_labels: codes 0..K-1 of the selection
    split's hard labels (same source); positive_index: the positive class's code (binary)."""
    import torch

    from .selection import selection_key

    grid = spec["grid"]
    metric = spec.get("selection_metric", "macro_f1")
    runs = grid_runs(grid, spec.get("share_epochs", False))
    init = _trainable(model)
    eval_bs = spec.get("eval_batch_size", 128)
    bf16 = spec.get("bf16", True)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    y = torch.tensor(np.asarray(targets, dtype=np.float64), dtype=torch.float32)
    from .conditions import class_weights

    cw = torch.tensor(class_weights(np.asarray(targets, float), spec.get("class_weight")),
                      dtype=torch.float32, device=device)
    lengths = train.lengths
    records: list[dict] = []
    best = {"key": None, "rec": None, "params": None}

    def consider(rec: dict) -> None:
        key = selection_key(rec, metric)  # ties: lower loss, then grid order
        if best["key"] is None or key > best["key"]:
            best.update(key=key, rec=rec, params=_trainable(model))

    train_seconds, examples = 0.0, 0
    t_grid = time.perf_counter()
    for r_idx, run in enumerate(runs):
        accum = 1
        while True:
            _restore(model, init)
            before = dict(best)
            try:
                out = _one_run(model, run, r_idx, accum, train, y, lengths, select,
                               select_labels, select_targets, spec, seed, device, pad_id,
                               side, eval_bs, bf16, consider, positive_index, cw)
                break
            except Exception as exc:  # noqa: BLE001 - only CUDA OOM is retried
                if device.type != "cuda" or not _is_oom(exc):
                    raise
                best.clear()
                best.update(before)
                torch.cuda.empty_cache()
                if run["batch_size"] // (accum * 2) < 1:
                    raise
                accum *= 2
                log.warning("CUDA out of memory at batch %d: retrying with per-device batch %d "
                            "x %d accumulation steps", run["batch_size"],
                            run["batch_size"] // accum, accum)
        train_seconds += out["train_seconds"]
        examples += out["examples"]
        for rec in out["points"]:
            rec["accumulation"] = accum
            records.append(rec)
    grid_seconds = time.perf_counter() - t_grid
    _restore(model, best["params"])
    chosen = {k: best["rec"][k] for k in ("learning_rate", "batch_size", "epochs")}
    chosen["selection_metric"] = metric
    return {"chosen": chosen, "grid": records, "train_seconds": train_seconds,
            "grid_seconds": grid_seconds, "examples": examples,
            "examples_per_s": examples / train_seconds if train_seconds > 0 else None}


def _adamw(params, **kw):
    """AdamW, fused where torch supports it (on CPU many times faster than the per-tensor loop)."""
    import torch

    try:
        return torch.optim.AdamW(params, fused=True, **kw)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(params, foreach=True, **kw)


def _one_run(model, run, r_idx, accum, train, y, lengths, select, select_labels,
             select_targets, spec, seed, device, pad_id, side, eval_bs, bf16, consider,
             positive_index, class_weight) -> dict:
    import torch

    from .selection import grid_record
    lr, bs = run["learning_rate"], run["batch_size"]
    n_epochs = max(run["checkpoints"])
    torch.manual_seed(seed * 1009 + r_idx)
    rng = np.random.default_rng([seed, r_idx])
    steps_per_epoch = math.ceil(len(train) / bs)
    total = steps_per_epoch * n_epochs
    warm = int(spec.get("warmup_ratio", 0.1) * total)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = _adamw(params, lr=lr, weight_decay=spec.get("weight_decay", 0.01))

    def linear(step: int) -> float:  # warm-up, then linear decay to 0 at the run's last step
        if step < warm:
            return (step + 1) / max(1, warm)
        return max(0.0, (total - step) / max(1, total - warm))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, linear)
    clip = spec.get("max_grad_norm", 1.0)
    points, train_seconds, examples = [], 0.0, 0
    for epoch in range(1, n_epochs + 1):
        model.train()
        t0 = time.perf_counter()
        for batch_idx in length_grouped_batches(lengths, bs, rng):
            opt.zero_grad(set_to_none=True)
            micro = math.ceil(len(batch_idx) / accum)
            for m in range(0, len(batch_idx), micro):
                idx = batch_idx[m:m + micro]
                batch = {k: v.to(device) for k, v in collate(train, idx, pad_id, side).items()}
                with _autocast(device, bf16):
                    logits = model(**batch).logits
                target = y[idx].to(device)
                # soft cross-entropy, each label's term weighted (class_weight; ones by default)
                logp = torch.nn.functional.log_softmax(logits.float(), dim=-1)
                loss = -(target * class_weight * logp).sum() / len(batch_idx)
                loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            sched.step()
            examples += len(batch_idx)
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_seconds += time.perf_counter() - t0
        if epoch in run["checkpoints"]:
            p = predict_proba(model, select, device=device, batch_size=eval_bs, pad_id=pad_id,
                              side=side, bf16=bf16)
            rec = {"learning_rate": lr, "batch_size": bs, "epochs": epoch,
                   **grid_record(p, select_labels, select_targets, positive_index)}
            log.info("lr=%g batch=%d epoch=%d: selection macro-F1 %.4f, loss %.4f%s", lr, bs,
                     epoch, rec["selection_macro_f1"], rec["selection_loss"],
                     " (one class)" if rec["selection_constant"] else "")
            points.append(rec)
            consider(rec)
    return {"points": points, "train_seconds": train_seconds, "examples": examples}
