"""Pre-fetch the study's Hugging Face hub models on a machine with internet (the login node).

Compute nodes on many clusters have no internet. Run once on the login node:

    snakemake --cores 1 prefetch_models          # or: python -m annodistill.hub prefetch --config ...

It downloads every hub model the configuration names into the Hugging Face cache (`$HF_HOME`, by
default ~/.cache/huggingface; put it on a filesystem the compute nodes share) and writes a
manifest. Jobs running inside Slurm then set `HF_HUB_OFFLINE=1` (workflow/rules/hpc.smk), so a
model that was not pre-fetched fails at once with a clear error instead of hanging on the network.

What counts as a hub model: a `path` of `students.models.<name>` that is neither a
`python:<module>:<function>` reference nor an existing local folder, and the `hub_repo` (with
optional `hub_file`, `revision`) of a teacher entry. Local folders and Python-package models are
listed in the manifest as `local` and never downloaded.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, Iterator

from . import io
from .errors import InputError

log = logging.getLogger(__name__)

# weights in formats the study never loads (TF, Flax, ONNX, ...) are not downloaded
IGNORE_PATTERNS = ["*.h5", "*.msgpack", "*.ot", "*.onnx", "onnx/*", "openvino/*", "*.tflite",
                   "tf_model*", "flax_model*", "rust_model*", "coreml/*"]


def _teacher_entries(section: Any) -> Iterator[tuple[str, dict]]:
    """(name, entry) for every teacher-like mapping in the `teachers:` section, whatever its shape."""
    if isinstance(section, list):
        for item in section:
            if isinstance(item, dict):
                yield str(item.get("name", "?")), item
        return
    if not isinstance(section, dict):
        return
    models = section.get("models")
    if isinstance(models, (dict, list)):
        yield from _teacher_entries(models if isinstance(models, list) else
                                    [dict(v, name=k) for k, v in models.items()
                                     if isinstance(v, dict)])
        return
    for name, entry in section.items():
        if isinstance(entry, dict):
            yield str(name), entry


def model_refs(cfg: dict, root: str | Path = ".") -> list[dict]:
    """Every model the study config names: `role`, `name`, `ref`, `kind` (`hub` or `local`)."""
    root = Path(root)
    out = []
    students = (cfg.get("students") or {}).get("models") or {}
    for name, spec in students.items():
        ref = (spec or {}).get("path")
        if not ref or (spec or {}).get("kind") == "tfidf":
            continue
        local = ref.startswith("python:") or (root / ref).is_dir() or Path(ref).is_absolute()
        out.append({"role": "student", "name": name, "ref": ref,
                    "kind": "local" if local else "hub", "revision": spec.get("revision")})
    for name, entry in _teacher_entries(cfg.get("teachers")):
        repo = entry.get("hub_repo")
        if repo:
            out.append({"role": "teacher", "name": name, "ref": repo, "kind": "hub",
                        "file": entry.get("hub_file"), "revision": entry.get("revision")})
    return out


def prefetch(refs: list[dict], cache_dir: str | None = None) -> list[dict]:
    """Download the hub models in `refs` into the HF cache; returns manifest rows."""
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    rows = []
    for r in refs:
        row = dict(r)
        if r["kind"] != "hub":
            row["local_path"] = r["ref"]
            rows.append(row)
            continue
        log.info("fetching %s model %s (%s)", r["role"], r["name"], r["ref"])
        try:
            if r.get("file"):
                path = hf_hub_download(r["ref"], r["file"], revision=r.get("revision"),
                                       cache_dir=cache_dir)
            else:
                path = snapshot_download(r["ref"], revision=r.get("revision"),
                                         cache_dir=cache_dir, ignore_patterns=IGNORE_PATTERNS)
        except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as exc:
            offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
            hint = " (HF_HUB_OFFLINE is set: run this on a machine with internet)" if offline else ""
            raise InputError(f"cannot fetch {r['role']} model {r['name']!r} from the hub "
                             f"repository {r['ref']!r}: {type(exc).__name__}: {exc}{hint}",
                             field="path" if r["role"] == "student" else "hub_repo") from exc
        row["local_path"] = str(path)
        rows.append(row)
    return rows


def cmd_prefetch(args: argparse.Namespace) -> int:
    import json

    from .config import load_study, validate_study

    if args.config_json is not None:
        try:
            cfg = validate_study(json.loads(args.config_json), "--config-json")
        except json.JSONDecodeError as exc:
            raise InputError(f"--config-json is not JSON: {exc}") from exc
    else:
        cfg = load_study(args.config)
    refs = model_refs(cfg, root=args.root)
    rows = prefetch(refs, cache_dir=args.cache_dir)
    n_hub = sum(r["kind"] == "hub" for r in rows)
    manifest = {"study": cfg.get("study"), "hf_home": os.environ.get("HF_HOME"),
                "cache_dir": args.cache_dir, "models": rows}
    io.write_json(args.manifest, manifest)
    print(f"prefetch: {n_hub} hub model(s) cached, {len(rows) - n_hub} local; "
          f"manifest {args.manifest}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("prefetch-models", help="download the configured hub models "
                              "into the Hugging Face cache (run on the login node)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="the study config file (config/config.yaml)")
    src.add_argument("--config-json", help="the study config as JSON (what the rule passes)")
    p.add_argument("--manifest", required=True, help="JSON manifest to write")
    p.add_argument("--root", default=".", help="project root local model paths are relative to")
    p.add_argument("--cache-dir", default=None,
                   help="Hugging Face cache folder (default: $HF_HOME/hub or ~/.cache/huggingface)")
    p.set_defaults(func=cmd_prefetch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m annodistill.hub",
                                     description=__doc__.splitlines()[0])
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"annodistill {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
