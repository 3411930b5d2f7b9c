"""atlas-ds: every path error of every subcommand exits 2 with one line naming the path, as README says
("2 bad arguments or a missing path"), and creates nothing.

Each subcommand is tried with each way a path can be wrong: missing, under a file, a file where a folder
is expected (or a folder where a file is), unreadable; destinations that exist, lie under a file or
cannot be written. Unreadable and unwritable paths need a process without root's permission override:
as root the cases run in one child process started by ``setpriv`` with CAP_DAC_OVERRIDE and
CAP_DAC_READ_SEARCH dropped (otherwise root reads everything and there is no error to report).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import VECTORS, atlas_ds

V2 = VECTORS / "v2" / "15-user-metadata" / "dataset"

# Subcommands given a path to read: (name, argv with {p} for the bad path and {t} for the test folder,
# whether the path should be a file rather than a folder).
READ_COMMANDS = [
    ("info", ["info", "{p}"], False),
    ("info --json", ["info", "{p}", "--json"], False),
    ("validate", ["validate", "{p}"], False),
    ("show", ["show", "{p}", "0"], False),
    ("head", ["head", "{p}", "-n", "2"], False),
    ("convert SRC", ["convert", "{p}", "{t}/out"], False),
    ("create --from-jsonl", ["create", "{t}/out", "--from-jsonl", "{t}/good.jsonl", "{p}"], True),
    ("create --from-hf", ["create", "{t}/out", "--from-hf", "{p}"], False),
    ("create --from-hf PATH:split", ["create", "{t}/out", "--from-hf", "{p}:train"], False),
    ("gc", ["gc", "{p}"], False),
]
# Subcommands given a path to create.
WRITE_COMMANDS = [
    ("convert DST", ["convert", str(V2), "{p}"]),
    ("create --from-jsonl DST", ["create", "{p}", "--from-jsonl", "{t}/good.jsonl"]),
    ("create --from-hf DST", ["create", "{p}", "--from-hf", "{t}/hf"]),
]


def _setup(tmp: Path) -> None:
    (tmp / "good.jsonl").write_text('{"a": 1}\n')
    (tmp / "hf").mkdir()
    (tmp / "afile").write_text("not a dataset\n")
    (tmp / "afolder").mkdir()
    (tmp / "existing").mkdir()


def _bad_input(tmp: Path, how: str, wants_file: bool) -> Path:
    """A path that is wrong in the way ``how`` says."""
    if how == "missing":
        return tmp / "nope"
    if how == "under a file":
        return tmp / "afile" / "inside"
    if how == "wrong kind":
        return tmp / ("afolder" if wants_file else "afile")
    raise ValueError(how)


def _argv(template: list[str], path: Path, tmp: Path) -> list[str]:
    return [arg.replace("{p}", str(path)).replace("{t}", str(tmp)) for arg in template]


def _check(done: subprocess.CompletedProcess[str] | dict, path: Path, tmp: Path, before: set[str]) -> None:
    code, err = (done["code"], done["stderr"]) if isinstance(done, dict) else (done.returncode, done.stderr)
    assert code == 2, err
    # atlas-ds validate hands every argument to atlas-validate, which reports a bad PATH itself
    assert err.startswith(("atlas-ds: ", "atlas-validate: ")) and err.count("\n") == 1, err
    assert str(path.name) in err and "Errno" not in err and "Traceback" not in err, err
    assert set(os.listdir(tmp)) == before  # nothing created (no destination, no .atlas-tmp-*)


@pytest.mark.parametrize("how", ["missing", "under a file", "wrong kind"])
@pytest.mark.parametrize("name,template,wants_file", READ_COMMANDS, ids=[c[0] for c in READ_COMMANDS])
def test_bad_input_path_exits_2_with_one_line(tmp_path, name, template, wants_file, how):
    _setup(tmp_path)
    path = _bad_input(tmp_path, how, wants_file)
    before = set(os.listdir(tmp_path))
    _check(atlas_ds(*_argv(template, path, tmp_path)), path, tmp_path, before)


@pytest.mark.parametrize("how", ["exists", "exists as a file", "under a file"])
@pytest.mark.parametrize("name,template", WRITE_COMMANDS, ids=[c[0] for c in WRITE_COMMANDS])
def test_bad_destination_exits_2_with_one_line(tmp_path, name, template, how):
    _setup(tmp_path)
    path = {"exists": tmp_path / "existing", "exists as a file": tmp_path / "afile",
            "under a file": tmp_path / "afile" / "out"}[how]
    before = set(os.listdir(tmp_path))
    _check(atlas_ds(*_argv(template, path, tmp_path)), path, tmp_path, before)


# -- unreadable and unwritable paths: one child process without the permission override ---------------------

_DRIVER = """
import contextlib, io, json, sys
from torch_atlas_ds.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    results.append({"code": code, "stderr": err.getvalue()})
print(json.dumps(results))
"""


def _run_unprivileged(argvs: list[list[str]]) -> list[dict]:
    """atlas-ds with each argv, in one child process that file permissions apply to: {code, stderr} each."""
    command = [sys.executable, "-c", _DRIVER, json.dumps(argvs)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: root reads any path, so nothing is unreadable")
        command = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


PERMISSION_CASES = [(name, template, wants_file, "read") for name, template, wants_file in READ_COMMANDS] + \
                   [(name, template, False, "write") for name, template in WRITE_COMMANDS]


@pytest.fixture(scope="module")
def permission_runs(tmp_path_factory):
    """Every case run once in one unprivileged child: {case name: (result, bad path, test folder, before)}."""
    cases = {}
    for name, template, wants_file, kind in PERMISSION_CASES:
        tmp = tmp_path_factory.mktemp("perm")
        _setup(tmp)
        if kind == "read":
            path = tmp / ("locked.jsonl" if wants_file else "locked")
            path.write_text('{"a": 1}\n') if wants_file else shutil.copytree(V2, path)
            path.chmod(0)
        else:
            (tmp / "locked").mkdir()
            path = tmp / "locked" / "out"
        cases[name] = (_argv(template, path, tmp), path, tmp)
    lock_parents = [tmp / "locked" for _, path, tmp in cases.values() if path.parent.name == "locked"]
    for folder in lock_parents:
        folder.chmod(0o555)
    before = {name: set(os.listdir(tmp)) for name, (_, _, tmp) in cases.items()}
    try:
        results = _run_unprivileged([argv for argv, _, _ in cases.values()])
    finally:
        for _, path, _ in cases.values():
            (path.parent if path.parent.name == "locked" else path).chmod(0o755)
    return {name: (result, path, tmp, before[name]) for (name, (_, path, tmp)), result in
            zip(cases.items(), results, strict=True)}


@pytest.mark.parametrize("name", [case[0] for case in PERMISSION_CASES])
def test_unreadable_or_unwritable_path_exits_2_with_one_line(permission_runs, name):
    result, path, tmp, before = permission_runs[name]
    _check(result, path, tmp, before)
    assert "permission" in result["stderr"], result["stderr"]


@pytest.mark.parametrize("locked", ["000000/index.bin", "000000"])
def test_unreadable_file_inside_a_dataset_exits_1_naming_it(tmp_path, locked):
    """Not a path error (the dataset folder is fine) but a failure: one line naming the whole path of the
    file or shard folder, without "[Errno n]"."""
    root = shutil.copytree(V2, tmp_path / "ds")
    (root / locked).chmod(0)
    try:
        results = _run_unprivileged([["info", str(root)], ["head", str(root)], ["show", str(root), "0"]])
    finally:
        (root / locked).chmod(0o755)
    for result in results:
        assert result["code"] == 1 and result["stderr"].count("\n") == 1, result
        assert f"{root / locked}: Permission denied" in result["stderr"], result
        assert "Errno" not in result["stderr"], result
