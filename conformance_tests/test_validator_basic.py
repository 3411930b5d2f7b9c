"""atlas_validator: golden datasets validate clean, the CLI contract, the JSON schema, the catalog document."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from validator_vectors import examples, write_v1, write_v2

from atlas_validator import validate
from atlas_validator.catalog import CATALOG, markdown
from atlas_validator.cli import main

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "validator" / "atlas_validator"
REPORT_SCHEMA = json.loads((PACKAGE / "report.schema.json").read_text())


def test_seed_v1_validates_clean_full_and_quick(seed_v1):
    root, _expected = seed_v1
    for quick in (False, True):
        report = validate(root, quick=quick)
        assert report.format_version == 1
        assert report.ok, [f.to_dict() for f in report.findings]
        assert not report.errors and not report.warnings, [f.to_dict() for f in report.findings]
        assert report.ids() == {"ATL590"}  # the "not verifiable in version 1" note, nothing else
        assert report.not_verifiable


@pytest.mark.parametrize("config", [
    {"compression_strategy": 0}, {"compression_strategy": 1}, {"compression_strategy": 2},
    {"compression_strategy": 3}, {"codec": "lz4"},
    {"compression_strategy": 2, "format_version": 1}, {"compression_strategy": 3, "format_version": 1},
    {"compression_strategy": 0, "format_version": 1},
], ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_reference_writer_datasets_validate_clean(tmp_path, config):
    from torch_atlas_ds import AtlasDatasetWriter

    path = tmp_path / "ds"
    with AtlasDatasetWriter(path, shard_size=64, block_size=4, **config) as writer:
        for ex in examples(150):
            writer.add_example(ex)
    for jobs in (1, 2):
        report = validate(path, jobs=jobs)
        assert report.ok and not report.errors and not report.warnings, [f.to_dict() for f in report.findings]
        assert report.stats.blocks == 16 + 16 + 6
    assert validate(path, quick=True).stats.blocks == 0


@pytest.mark.parametrize("codec,dictionary", [("none", "none"), ("zstd", "none"), ("zstd", "shared"),
                                              ("zstd", "shard"), ("lz4", "none")])
def test_test_writer_datasets_validate_clean(tmp_path, codec, dictionary):
    root = write_v2(tmp_path / "ds", examples(150), codec=codec, dictionary=dictionary, shard_size=64)
    report = validate(root)
    assert report.ok and not report.findings, [f.to_dict() for f in report.findings]


def test_import_leaves_torch_and_reference_out():
    code = ("import sys, atlas_validator, atlas_validator.cli, atlas_validator.runner; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torch_atlas_ds', 'pickle')))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    mods = eval(out)  # noqa: S307 - our own subprocess output, a list literal
    assert not [m for m in mods if m.split(".")[0] in ("torch", "torch_atlas_ds")]


def test_package_never_unpickles():
    for source in PACKAGE.glob("*.py"):
        text = source.read_text()
        for forbidden in ("pickle.load", "Unpickler", "import torch", "from torch", "import torch_atlas_ds",
                          "from torch_atlas_ds", " eval(", " exec("):
            assert forbidden not in text, (source.name, forbidden)


def test_findings_md_is_current():
    assert (REPO / "validator" / "FINDINGS.md").read_text() == markdown(), \
        "run: python -m atlas_validator --catalog-markdown > validator/FINDINGS.md"
    for entry in CATALOG.values():
        assert entry.severity in ("error", "warning", "info")
        assert entry.clause


def test_every_clause_the_catalog_cites_is_in_format_md():
    text = (REPO / "spec" / "FORMAT.md").read_text("utf-8")
    defined = set(re.findall(r"\*\*([A-Z0-9]+(?:-[A-Z]+)?-\d+)\.\*\*", text))
    cited = {clause.strip() for entry in CATALOG.values() for clause in entry.clause.split(",")}
    assert cited <= defined, sorted(cited - defined)


def _cli(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_exit_codes_and_human_output(tmp_path, capsys):
    good = write_v2(tmp_path / "good", examples(20))
    code, out, _ = _cli([good], capsys)
    assert code == 0 and "VALID" in out and "MB/s" in out
    bad = write_v2(tmp_path / "bad", examples(20))
    (bad / "000000" / "index.bin").unlink()
    code, out, _ = _cli([bad], capsys)
    assert code == 1
    line = next(x for x in out.splitlines() if "ATL103" in x)
    assert line.startswith("ERROR") and "000000/index.bin" in line and "V2-LAYOUT-2" in line
    code, _, err = _cli([tmp_path / "missing"], capsys)
    assert code == 2 and "missing" in err
    (tmp_path / "afile").write_text("x")
    code, _, err = _cli([tmp_path / "afile"], capsys)
    assert code == 2 and "afile" in err
    code, _, _ = _cli([good, tmp_path / "missing"], capsys)
    assert code == 2
    code, _, _ = _cli([], capsys)
    assert code == 2
    code, out, err = _cli(["--quiet", bad], capsys)
    assert code == 1 and out == "" and err == ""


def test_cli_strict_turns_warnings_into_failures(tmp_path, capsys):
    root = write_v2(tmp_path / "ds", examples(20))
    (root / "notes.txt").write_text("hello")
    assert _cli([root], capsys)[0] == 0
    code, out, _ = _cli(["--strict", root], capsys)
    assert code == 1 and "ATL105" in out


def test_cli_json_output_follows_shipped_schema(tmp_path, capsys):
    jsonschema.Draft202012Validator.check_schema(REPORT_SCHEMA)
    good = write_v2(tmp_path / "good", examples(20))
    bad = write_v1(tmp_path / "bad", examples(20))
    (bad / "0" / "data.bin").write_bytes(b"garbage")
    code, out, _ = _cli(["--format", "json", good, bad, tmp_path / "nope"], capsys)
    doc = json.loads(out)
    jsonschema.validate(doc, REPORT_SCHEMA)
    assert code == 2 and doc["exit_code"] == 2 and not doc["ok"]
    assert [r["ok"] for r in doc["reports"]] == [True, False, False]
    assert doc["reports"][1]["format_version"] == 1 and doc["reports"][1]["not_verifiable"]
    jsonschema.validate(json.loads(validate(bad).to_json()), {**REPORT_SCHEMA["$defs"]["report"],
                                                              "$defs": REPORT_SCHEMA["$defs"]})


def test_python_dash_m_and_console_script(tmp_path):
    root = write_v2(tmp_path / "ds", examples(10))
    out = subprocess.run([sys.executable, "-m", "atlas_validator", "--quick", str(root)], capture_output=True,
                         text=True)
    assert out.returncode == 0 and "VALID" in out.stdout and out.stderr == ""  # no progress bar when piped
    script = Path(sys.executable).parent / "atlas-validate"
    if script.exists():
        out = subprocess.run([str(script), str(tmp_path / "nope")], capture_output=True, text=True)
        assert out.returncode == 2 and "nope" in out.stderr


def test_jobs_give_identical_findings(tmp_path):
    root = write_v2(tmp_path / "ds", examples(100), shard_size=16)
    (root / "000002" / "data.bin").write_bytes(b"\0" * 10)
    (root / "000004" / "meta.json").write_bytes(b"{}")
    one = validate(root, jobs=1)
    two = validate(root, jobs=2)
    assert [f.to_dict() for f in one.findings] == [f.to_dict() for f in two.findings]
    assert not one.ok


class _Bar:
    def __init__(self, total: int) -> None:
        self.total, self.done, self.closed = total, 0, False

    def update(self, n: int) -> None:
        self.done += n

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("jobs", [1, 2])
def test_progress_reports_every_data_byte(tmp_path, jobs):
    root = write_v2(tmp_path / "ds", examples(60), shard_size=16)
    bars: list[_Bar] = []

    def factory(total: int) -> _Bar:
        bars.append(_Bar(total))
        return bars[-1]

    report = validate(root, jobs=jobs, progress_factory=factory)
    size = sum((root / d / "data.bin").stat().st_size for d in ("000000", "000001", "000002", "000003"))
    assert report.ok and len(bars) == 1 and bars[0].total == size == bars[0].done and bars[0].closed
    assert report.stats.bytes_read == size
    bars.clear()
    validate(root, quick=True, progress_factory=factory)
    assert not bars  # no bar for --quick


def test_quick_reads_no_block_but_checks_index_and_metadata(tmp_path):
    root = write_v2(tmp_path / "ds", examples(60), shard_size=16)
    data = root / "000001" / "data.bin"
    data.write_bytes(bytes(len(data.read_bytes())))  # same size, every block corrupt
    quick = validate(root, quick=True)
    assert quick.ok and quick.stats.blocks == 0 and quick.stats.bytes_read == 0
    assert "ATL506" in validate(root).ids()
    index = root / "000002" / "index.bin"
    raw = bytearray(index.read_bytes())
    raw[70] ^= 1
    index.write_bytes(bytes(raw))
    assert "ATL503" in validate(root, quick=True).ids()


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_progress_bar_only_on_a_terminal(tmp_path):
    import fcntl
    import os
    import pty
    import select
    import struct
    import termios

    root = write_v2(tmp_path / "ds", examples(60), shard_size=16)
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal 100 columns wide
    try:
        proc = subprocess.run([sys.executable, "-m", "atlas_validator", "--jobs", "1", str(root)],
                              stdout=subprocess.PIPE, stderr=follower, timeout=120)
        chunks = []
        while select.select([leader], [], [], 0.5)[0]:  # read while the follower is still open
            chunk = os.read(leader, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.returncode == 0
        assert b"validating" in b"".join(chunks)  # tqdm drew on the terminal
    finally:
        os.close(follower)
        os.close(leader)
    piped = subprocess.run([sys.executable, "-m", "atlas_validator", str(root)], capture_output=True, timeout=120)
    assert piped.returncode == 0 and piped.stderr == b""
