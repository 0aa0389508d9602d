"""Fetch the default study's human-coded data: the VADER ratings (Hutto & Gilbert, ICWSM 2014).

They ship inside the source distribution of `vaderSentiment==3.3.2` on PyPI (MIT licence), as
`additional_resources/hutto_ICWSM_2014.tar.gz`. We download the sdist with pip (PyPI is reachable
where hubs are not), check its sha256, and extract the ratings into `resources/vader/`.
`SOURCE.json` is written last, so its presence means the extraction is complete.
"""
from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from ..errors import InputError
from ..io import write_json

log = logging.getLogger(__name__)

VADER_SDIST = "vaderSentiment-3.3.2.tar.gz"
VADER_REQUIREMENT = "vaderSentiment==3.3.2"
VADER_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
INNER_TARBALL = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
CORPORA = ("tweets", "nytEditorialSnippets", "movieReviewSnippets", "amazonReviewSnippets")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_sdist(download_dir: Path) -> Path:
    """`pip download` the sdist into download_dir (reused when already there with the right hash)."""
    download_dir.mkdir(parents=True, exist_ok=True)
    target = download_dir / VADER_SDIST
    if target.exists() and sha256_of(target) == VADER_SHA256:
        log.info("reusing %s", target)
        return target
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "-d", str(download_dir), VADER_REQUIREMENT]
    log.info("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not target.exists():
        raise InputError(f"could not download {VADER_REQUIREMENT} from the package index "
                         f"(pip exit {proc.returncode}): {proc.stderr.strip()[-500:]}",
                         path=str(target))
    return target


def extract_vader(sdist: Path, dest: Path) -> dict:
    digest = sha256_of(sdist)
    if digest != VADER_SHA256:
        raise InputError(f"sha256 mismatch: got {digest}, expected {VADER_SHA256}; refusing to "
                         "use an unverified download", path=str(sdist))
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        tmp = Path(tmp)
        with tarfile.open(sdist, "r:gz") as outer:
            try:
                member = outer.getmember(INNER_TARBALL)
            except KeyError:
                raise InputError(f"{INNER_TARBALL} not found in the sdist", path=str(sdist))
            outer.extract(member, tmp, filter="data")
        with tarfile.open(tmp / INNER_TARBALL, "r:gz") as inner:
            inner.extractall(tmp / "out", filter="data")
        extracted = tmp / "out" / "hutto_ICWSM_2014"
        for corpus in CORPORA:
            for kind in ("GroundTruth", "anonDataRatings"):  # mean ratings; every rater's own
                if not (extracted / f"{corpus}_{kind}.txt").exists():
                    raise InputError(f"{corpus}_{kind}.txt missing from the archive",
                                     path=str(sdist))
        final = dest / "hutto_ICWSM_2014"
        if final.exists():
            shutil.rmtree(final)
        extracted.rename(final)
    files = {p.name: sha256_of(p) for p in sorted(final.glob("*_GroundTruth.txt"))}
    info = {"requirement": VADER_REQUIREMENT, "sdist": VADER_SDIST, "sha256": VADER_SHA256,
            "licence": "MIT", "citation": "Hutto, C.J. & Gilbert, E.E. (2014). VADER: A Parsimonious "
            "Rule-based Model for Sentiment Analysis of Social Media Text. ICWSM-14.",
            "files": files}
    write_json(dest / "SOURCE.json", info)
    return info


def fetch_vader(dest: str | Path, sdist: str | Path | None = None,
                download_dir: str | Path | None = None) -> dict:
    dest = Path(dest)
    download_dir = Path(download_dir) if download_dir else dest.parent / "downloads"
    path = Path(sdist) if sdist else download_sdist(download_dir)
    if not path.exists():
        raise InputError("sdist not found", path=str(path))
    return extract_vader(path, dest)
