"""Every README snippet runs as copied: a new user's first contact with the project is its README.

Each ```python block runs on its own, as a script, in a fresh empty folder (no preamble: a snippet
defines its own data). Command blocks (```bash, ```text) are listed in COMMAND_BLOCKS by the section
they are in, each either run (every line a command, exit status 0) or skipped with the reason; a block
in no entry fails the test, so a new snippet must be classified here. ``atlas-ds`` and
``atlas-validate`` run as ``python -m torch_atlas_ds.cli`` and ``python -m atlas_validator`` (the entry
points of the console scripts), so the test needs no installed scripts on PATH.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from atlas_format.testing.vectors import VECTORS_ROOT

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

_FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.M | re.S)
_HEADING = re.compile(r"^#+ (.+)$", re.M)


def snippets() -> list[tuple[str, str, int, str]]:
    """(language, section heading, line number, text) of every fenced block of README.md."""
    text = README.read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        headings = _HEADING.findall(text, 0, match.start())
        found.append((match.group(1), headings[-1] if headings else "", text.count("\n", 0, match.start()) + 1,
                      match.group(2)))
    return found


PYTHON = [s for s in snippets() if s[0] == "python"]
COMMANDS = [s for s in snippets() if s[0] != "python"]
QUICK_START = "Python quick start"

# (section heading, language) -> how the block runs: "quick-start" in the folder where the first quick-start
# snippet ran (it wrote data/train); "v1-dataset" in a folder holding a version 1 dataset `old_dataset` (the
# user's own data in README: here a golden vector written by the original); else why it is skipped.
COMMAND_BLOCKS = {
    ("Two commands (fresh machine, Python 3.11)", "bash"):
        "skipped: each builds a project virtual environment (downloads torch) and run-tests runs this suite "
        "itself; the main job's steps are tested by test_main_job.py",
    ("Validate and test without torch", "bash"):
        "skipped: it makes a virtual environment and installs packages; scripts/run-no-torch does exactly that "
        "install and runs these commands (run by scripts/run-tests and CI)",
    ("Command line", "text"):
        "skipped: a synopsis (PATH, [options] are placeholders); the bash block after it runs the commands",
    ("Command line", "bash"): "quick-start",
    ("Migrating from the original torch-atlas-ds", "bash"): "v1-dataset",
    ("Conformance", "text"):
        "skipped: a transcript of a kit run (a $ prompt, elided output); test_mini_reader.py runs that command",
}

ENTRY_POINTS = {"atlas-ds": [sys.executable, "-m", "torch_atlas_ds.cli"],
                "atlas-validate": [sys.executable, "-m", "atlas_validator"]}


def _run_python(text: str, folder: Path) -> subprocess.CompletedProcess[str]:
    script = folder.parent / f"{folder.name}-snippet.py"  # outside the folder: it starts empty
    script.write_text(text, encoding="utf-8")
    return subprocess.run([sys.executable, str(script)], cwd=folder, capture_output=True, text=True, timeout=600)


FIRST = next(s for s in PYTHON if s[1] == QUICK_START)


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The first quick-start snippet, run once in an empty folder: (the folder, the run)."""
    folder = tmp_path_factory.mktemp("quick-start")
    return folder, _run_python(FIRST[3], folder)


@pytest.mark.parametrize("snippet", PYTHON, ids=[f"line-{s[2]}" for s in PYTHON])
def test_python_snippet_runs_as_copied_in_an_empty_folder(request, tmp_path, snippet):
    if snippet is FIRST:
        done = request.getfixturevalue("quick_start")[1]
    else:
        folder = tmp_path / "empty"
        folder.mkdir()
        done = _run_python(snippet[3], folder)
    assert done.returncode == 0, f"README line {snippet[2]}:\n{done.stderr[-3000:]}"


def test_the_quick_start_prints_what_it_wrote(quick_start):
    done = quick_start[1]
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("5000 {'id': 42, 'text': 'caption 42: ") and "'id': 4999" in done.stdout


def test_every_command_block_is_classified():
    blocks = [(section, language) for language, section, _, _ in COMMANDS]
    for line, block in zip([s[2] for s in COMMANDS], blocks, strict=True):
        assert block in COMMAND_BLOCKS, f"README line {line} {block} is not in COMMAND_BLOCKS: run it or say why not"
    assert len(set(blocks)) == len(blocks) and set(blocks) == set(COMMAND_BLOCKS)


def _command_lines(text: str) -> list[list[str]]:
    lines = [shlex.split(line, comments=True) for line in text.splitlines()]
    commands = [words for words in lines if words]
    for words in commands:
        assert words[0] in ENTRY_POINTS, f"not an Atlas command: {words}"
    return [ENTRY_POINTS[words[0]] + words[1:] for words in commands]


RUN = [s for s in COMMANDS if not COMMAND_BLOCKS.get((s[1], s[0]), "").startswith("skipped")]


@pytest.mark.parametrize("snippet", RUN, ids=[f"line-{s[2]}" for s in RUN])
def test_command_snippet_runs(request, tmp_path, snippet):
    language, section, line, text = snippet
    how = COMMAND_BLOCKS[(section, language)]
    if how == "quick-start":
        folder, done = request.getfixturevalue("quick_start")
        assert done.returncode == 0, done.stderr[-3000:]
    else:
        assert how == "v1-dataset", how
        folder = tmp_path
        shutil.copytree(VECTORS_ROOT / "seed-v1" / "03-s2-shared-dict" / "dataset", folder / "old_dataset")
    for command in _command_lines(text):
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"README line {line}: {shlex.join(command[2:])}\n{done.stderr[-3000:]}"
        assert done.stdout.strip(), command  # every command says what it did
