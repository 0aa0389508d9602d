"""Shared fixtures: the project root and small generated human-coded tasks."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "workflow"))


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


def codebook_dict(name: str, path: str, fmt: str = "csv", **source) -> dict:
    src = {"path": path, "format": fmt, "id_column": "id", "text_column": "text",
           "label": {"column": "code", "map": {"1": "yes", "0": "no"}}}
    src.update(source)
    return {
        "name": name,
        "description": f"Is the text about topic {name}?",
        "source": src,
        "labels": [{"name": "yes", "definition": "about the topic", "verbalizer": "yes"},
                   {"name": "no", "definition": "not about the topic", "verbalizer": "no"}],
        "positive": "yes",
    }


def write_codebook(task_dir: Path, cb: dict) -> Path:
    task_dir.mkdir(parents=True, exist_ok=True)
    p = task_dir / f"{cb['name']}.yaml"
    p.write_text(yaml.safe_dump(cb, sort_keys=False))
    return p


def synthetic_rows(n: int, positive_share: float = 0.3, seed: int = 0):
    """n distinct texts with a learnable binary label (the word 'tax' marks the positive class)."""
    import random

    rng = random.Random(seed)
    topics_pos = ["tax", "budget", "tariff", "deficit", "spending"]
    topics_neg = ["football", "weather", "concert", "garden", "recipe"]
    rows = []
    for i in range(n):
        pos = rng.random() < positive_share
        word = rng.choice(topics_pos if pos else topics_neg)
        filler = " ".join(rng.choice(["the", "new", "city", "plan", "says", "about", "today",
                                      "people", "very", "local"]) for _ in range(rng.randint(4, 12)))
        rows.append({"id": f"r{i:05d}", "text": f"{filler} {word} item {i}", "code": int(pos)})
    return rows


def write_task(root: Path, name: str, n: int = 400, positive_share: float = 0.3, seed: int = 0,
               raw_path: str | None = None) -> tuple[Path, Path]:
    """A generated CSV task under root/raw/ and its codebook under root/config/tasks/.

    The codebook's source path is `raw_path` (default: relative `raw/<name>.csv`, for studies run
    with root as working directory). Returns (codebook_path, raw_path)."""
    import csv

    raw = root / "raw" / f"{name}.csv"
    raw.parent.mkdir(parents=True, exist_ok=True)
    with open(raw, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "text", "code"])
        w.writeheader()
        w.writerows(synthetic_rows(n, positive_share, seed))
    cb = write_codebook(root / "config" / "tasks",
                        codebook_dict(name, raw_path or f"raw/{name}.csv"))
    return cb, raw


@pytest.fixture
def tiny_task(tmp_path):
    """A generated CSV task with 400 rows and its codebook; returns (codebook_path, raw_path)."""
    return write_task(tmp_path, "topic", raw_path=str(tmp_path / "raw" / "topic.csv"))


def venv_bin() -> Path:
    return Path(sys.executable).parent


@pytest.fixture
def env_with_venv():
    env = dict(os.environ)
    env["PATH"] = f"{venv_bin()}{os.pathsep}{env.get('PATH', '')}"
    return env
