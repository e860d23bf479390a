"""The documents match the code: the README's length and its two commands (the second is
.ci/run's), every config key documented, every reproduce.py --methods value listed, every
file (and test) a document names exists, and no change-log sentences in the README."""
from __future__ import annotations

import re

import pytest

from conftest import ROOT

README = ROOT / "README.md"
DOCS = [README, ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
# Written by work merged beside this one (the reliability issue moves the README's
# Reliability section there); remove an entry once the file is in the tree.
# Where paths a document names as repository files start.
REPO_PREFIXES = ("configs/", "bench/", "tests/", "dejavid/", "docs/", "kernel_setup/", ".ci/")


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, re.S)]


def test_readme_is_a_front_door():
    lines = README.read_text().splitlines()
    print("README lines", len(lines))
    assert len(lines) <= 250


def test_the_readme_starts_with_the_demo_and_the_ci_test_command():
    blocks = _bash_blocks(README.read_text())
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert blocks[0] == ('pip install torch==2.13.0 -e ".[demo]" && python prepare_demo.py && '
                         'python train_dejavid.py --config configs/japanese_vowels.yaml')
    assert blocks[1] == ci[-1]


def test_no_change_log_sentences_in_the_readme():
    text = README.read_text()
    history = re.findall(r"(?i)\b(rerun after|used to|before the 20\d\d|after the [a-z -]*change|"
                         r"earlier round|is now|were changed|took [\d.]+ and [\d.]+ minutes)\b",
                         text)
    assert not history, history


def test_every_config_key_is_documented():
    from dejavid.config.files import DEFAULTS
    usage = (ROOT / "docs" / "usage.md").read_text()
    table = usage[usage.index("## Config keys"):]
    table = table[:table.index("\n## ", 1)]
    missing = [k for k in DEFAULTS if f"`{k}`" not in table]
    assert not missing, f"config keys missing from docs/usage.md's table: {missing}"


def test_every_reproduce_method_is_listed():
    from dejavid.report.table import ROWS
    paper = (ROOT / "docs" / "paper.md").read_text()
    options = re.search(r"\*\*Options\.\*\* `--methods ([a-z_,]+)`", paper).group(1).split(",")
    assert options == [r.method for r in ROWS]


def test_every_default_config_value_is_described_as_the_default():
    """configs/default.yaml is the file 'Your data' points to, and the benchmark reads it."""
    readme = README.read_text()
    section = readme[readme.index("## Your data"):readme.index("## Daily usage")]
    assert "configs/default.yaml" in section
    bench = (ROOT / "bench" / "bench_accuracy.py").read_text()
    assert 'CONFIG = ROOT / "configs" / "default.yaml"' in bench


def _named_paths(text: str) -> set[str]:
    tokens = set(re.findall(r"\]\(([^)#\s]+)", text))            # markdown links
    tokens |= set(re.findall(r"`([^`\s]+)`", text))              # code spans
    out = set()
    for tok in tokens:
        tok = tok.split("::")[0].rstrip(".,:;")
        if tok.startswith(("http", "/", "$")) or any(c in tok for c in "<>*{}…") or \
                "..." in tok:
            continue
        if tok.startswith(REPO_PREFIXES) or re.fullmatch(r"[a-z_]+\.py|[A-Z]+\.md", tok):
            out.add(tok)
    return out


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_file_a_document_names_exists(doc):
    base = doc.parent
    missing = []
    for name in sorted(_named_paths(doc.read_text())):
        if "/" not in name:   # a bare file name, in the text about its folder
            found = (base / name).exists() or any(ROOT.glob(f"*/**/{name}")) or \
                (ROOT / name).exists()
        else:
            found = (ROOT / name).exists() or (base / name).exists()
        if not found:
            missing.append(name)
    assert not missing, f"{doc.name} names files that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_test_a_document_names_exists(doc):
    missing = []
    for path, name in re.findall(r"(tests/test_\w+\.py)::(\w+)", doc.read_text()):
        source = (ROOT / path).read_text() if (ROOT / path).is_file() else ""
        if f"def {name}(" not in source:
            missing.append(f"{path}::{name}")
    assert not missing, missing
