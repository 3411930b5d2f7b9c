"""atlas-ds: every subcommand, exit codes, JSON outputs against their schemas, one-line errors;
write_dataset in parallel; create --from-jsonl on malformed input publishes nothing."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from atlas_format.testing.vectors import VECTORS_ROOT
from torch_atlas_ds import AtlasDataset, AtlasDatasetWriter, Codec, CompressionStrategy
from torch_atlas_ds.cli import main
from torch_atlas_ds.parallel import write_dataset

VECTORS = VECTORS_ROOT
V1 = VECTORS / "seed-v1" / "03-s2-shared-dict" / "dataset"
V2 = VECTORS / "v2" / "15-user-metadata" / "dataset"
INFO_SCHEMA = json.loads(resources.files("torch_atlas_ds").joinpath("info.schema.json").read_text())


def atlas_ds(*args: str) -> subprocess.CompletedProcess[str]:
    """Run atlas-ds in this process (torch is imported once) and capture what it prints."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def test_console_script_end_to_end(tmp_path):
    """The installed entry point itself: exit codes and streams of a real process."""
    done = subprocess.run([sys.executable, "-m", "torch_atlas_ds.cli", "info", str(V2), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and json.loads(done.stdout)["num_examples"] == 20
    missing = subprocess.run([sys.executable, "-m", "torch_atlas_ds.cli", "head", str(tmp_path / "nope")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and missing.stderr == f"atlas-ds: error: no such path: {tmp_path / 'nope'}\n"


def digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("path", [V1, V2, VECTORS / "v2" / "05-lz4" / "dataset",
                                  VECTORS / "v2" / "07-empty" / "dataset",
                                  VECTORS / "seed-v1" / "04-s3-own-dicts-7-block-boundary" / "dataset"])
def test_info_json_follows_its_schema(path):
    done = atlas_ds("info", path, "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    jsonschema.validate(info, INFO_SCHEMA)
    assert info["num_examples"] == len(AtlasDataset(path))
    human = atlas_ds("info", path)
    assert human.returncode == 0 and f"{info['num_examples']:,}" in human.stdout


def test_info_reports_dictionaries_ratio_and_user_metadata():
    info = json.loads(atlas_ds("info", V2, "--json").stdout)
    assert info["user_metadata"]["license"] == "CC0" and info["format_version"] == 2
    v1 = json.loads(atlas_ds("info", V1, "--json").stdout)
    assert v1["dictionary"] == "shared" and len(v1["dictionary_ids"]) == 1 and v1["compression_ratio"] > 1


def test_info_does_not_import_torch():
    code = ("import sys; from torch_atlas_ds.cli import dataset_info; import pathlib; "
            f"dataset_info(pathlib.Path({str(V1)!r})); dataset_info(pathlib.Path({str(V2)!r})); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_validate_passes_through_options_and_exit_codes(tmp_path):
    ok = atlas_ds("validate", V2, "--format", "json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"] is True
    bad = VECTORS / "invalid" / "v2-block-byte-flip" / "dataset"
    done = atlas_ds("validate", bad)
    assert done.returncode == 1 and "ATL506" in done.stdout


def test_show_and_head_print_examples_with_safe_loading():
    done = atlas_ds("show", V2, "0", "-1")
    assert done.returncode == 0 and done.stdout.startswith("[0] ") and "[-1] " in done.stdout
    head = atlas_ds("head", V1, "-n", "3")
    assert head.returncode == 0 and "[2] " in head.stdout and "[3] " not in head.stdout
    malicious = VECTORS / "invalid" / "v2-malicious-os-system" / "dataset"
    refused = atlas_ds("show", malicious, "3")
    assert refused.returncode == 1 and "refused global posix.system" in refused.stderr
    assert "example 3" in refused.stderr


def test_show_out_of_range_and_missing_paths_exit_2_with_one_line(tmp_path):
    done = atlas_ds("show", V2, "999")
    assert done.returncode == 2 and "out of range" in done.stderr and done.stderr.count("\n") == 1
    for args in (["info", tmp_path / "nope"], ["show", tmp_path / "nope", "0"], ["head", tmp_path / "nope"],
                 ["validate", tmp_path / "nope"], ["convert", tmp_path / "nope", tmp_path / "out"],
                 ["create", tmp_path / "out", "--from-jsonl", tmp_path / "nope.jsonl"]):
        done = atlas_ds(*args)
        assert done.returncode == 2, args
        assert "nope" in done.stderr and done.stderr.count("\n") == 1, done.stderr


@pytest.mark.parametrize("args", [[], ["frob"], ["info"], ["info", str(V2), "--bogus"], ["head", str(V2), "-n", "x"],
                                  ["convert", str(V2)], ["create", "out"], ["show", str(V2)]])
def test_bad_arguments_give_one_line_and_exit_2(args):
    done = atlas_ds(*args)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("atlas-ds")


def test_help_explains_every_subcommand():
    done = atlas_ds("--help")
    assert done.returncode == 0
    for command in ("info", "validate", "show", "head", "convert", "create"):
        assert command in done.stdout
        sub = atlas_ds(command, "--help")
        assert sub.returncode == 0 and len(sub.stdout) > 200
    assert "examples:" in done.stdout


def test_convert_v1_to_v2_and_back_and_codec_changes(tmp_path):
    done = atlas_ds("convert", V1, tmp_path / "v2", "--jobs", "2", "--no-progress")
    assert done.returncode == 0, done.stderr
    expected = list(AtlasDataset(V1))
    assert json.loads((tmp_path / "v2" / "meta.json").read_text())["version"] == 2
    assert list(AtlasDataset(tmp_path / "v2")) == expected
    done = atlas_ds("convert", tmp_path / "v2", tmp_path / "back", "--format-version", "1")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "back" / "meta.json").read_text())["version"] == 1
    assert list(AtlasDataset(tmp_path / "back")) == expected
    done = atlas_ds("convert", tmp_path / "v2", tmp_path / "lz4", "--codec", "lz4", "--block-size", "4",
                    "--shard-size", "50")
    assert done.returncode == 0, done.stderr
    info = json.loads(atlas_ds("info", tmp_path / "lz4", "--json").stdout)
    assert (info["codec"], info["block_size"], info["num_shards"]) == ("lz4", 4, 3)
    assert list(AtlasDataset(tmp_path / "lz4")) == expected
    refused = atlas_ds("convert", tmp_path / "v2", tmp_path / "lz4")
    assert refused.returncode == 2 and "exists" in refused.stderr
    refused = atlas_ds("convert", tmp_path / "v2", tmp_path / "x", "--codec", "lz4", "--format-version", "1")
    assert refused.returncode == 2 and not (tmp_path / "x").exists()


def test_convert_to_and_from_example_framing(tmp_path):
    expected = list(AtlasDataset(V1))
    done = atlas_ds("convert", V1, tmp_path / "frames", "--framing", "example", "--block-size", "16")
    assert done.returncode == 0, done.stderr
    info = json.loads(atlas_ds("info", tmp_path / "frames", "--json").stdout)
    jsonschema.validate(info, INFO_SCHEMA)
    assert (info["framing"], info["codec"], info["block_size"]) == ("example", "zstd", 16)
    assert "one codec frame per example" in atlas_ds("info", tmp_path / "frames").stdout
    assert list(AtlasDataset(tmp_path / "frames")) == expected
    kept = atlas_ds("convert", tmp_path / "frames", tmp_path / "lz4", "--codec", "lz4")  # framing kept
    assert kept.returncode == 0, kept.stderr
    assert json.loads(atlas_ds("info", tmp_path / "lz4", "--json").stdout)["framing"] == "example"
    back = atlas_ds("convert", tmp_path / "lz4", tmp_path / "blocks", "--framing", "block")
    assert back.returncode == 0, back.stderr
    assert json.loads(atlas_ds("info", tmp_path / "blocks", "--json").stdout)["framing"] == "block"
    assert list(AtlasDataset(tmp_path / "blocks")) == expected
    for args in (("--codec", "none"), ("--format-version", "1")):
        refused = atlas_ds("convert", tmp_path / "frames", tmp_path / "x", "--framing", "example", *args)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and not (tmp_path / "x").exists()


def test_convert_to_and_from_list_framing(tmp_path):
    expected = list(AtlasDataset(V1))
    done = atlas_ds("convert", V1, tmp_path / "list", "--framing", "list", "--block-size", "16")
    assert done.returncode == 0, done.stderr
    info = json.loads(atlas_ds("info", tmp_path / "list", "--json").stdout)
    jsonschema.validate(info, INFO_SCHEMA)
    assert (info["framing"], info["codec"], info["block_size"]) == ("list", "zstd", 16)
    assert "pickled list" in atlas_ds("info", tmp_path / "list").stdout
    assert list(AtlasDataset(tmp_path / "list")) == expected
    kept = atlas_ds("convert", tmp_path / "list", tmp_path / "none", "--codec", "none")  # framing kept, any codec
    assert kept.returncode == 0, kept.stderr
    assert json.loads(atlas_ds("info", tmp_path / "none", "--json").stdout)["framing"] == "list"
    assert list(AtlasDataset(tmp_path / "none")) == expected
    refused = atlas_ds("convert", tmp_path / "list", tmp_path / "x", "--framing", "list", "--format-version", "1")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and not (tmp_path / "x").exists()


def test_convert_keeps_user_metadata_and_refuses_invalid_sources(tmp_path):
    assert atlas_ds("convert", V2, tmp_path / "copy").returncode == 0
    assert json.loads(atlas_ds("info", tmp_path / "copy", "--json").stdout)["user_metadata"]["license"] == "CC0"
    broken = atlas_ds("convert", VECTORS / "invalid" / "v2-block-byte-flip" / "dataset", tmp_path / "c2")
    assert broken.returncode == 1 and "checksum" in broken.stderr.lower()
    assert not (tmp_path / "c2").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".atlas-tmp")]


def test_create_from_jsonl_in_order_and_in_parallel(tmp_path):
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"i": i, "s": "x" * i}) + "\n" for i in range(50)))
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps([i]) for i in range(50, 75)) + "\n\n")
    done = atlas_ds("create", tmp_path / "ds", "--from-jsonl", tmp_path / "a.jsonl", tmp_path / "b.jsonl",
                    "--shard-size", "20", "--block-size", "4", "--jobs", "2", "--no-progress")
    assert done.returncode == 0, done.stderr
    expected = [{"i": i, "s": "x" * i} for i in range(50)] + [[i] for i in range(50, 75)]
    assert list(AtlasDataset(tmp_path / "ds")) == expected
    assert atlas_ds("validate", tmp_path / "ds").returncode == 0


def test_create_from_jsonl_malformed_line_names_file_and_line_and_publishes_nothing(tmp_path):
    (tmp_path / "good.jsonl").write_text('{"a": 1}\n' * 30)
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{"a": 2}\n{"a": \n')
    done = atlas_ds("create", tmp_path / "ds", "--from-jsonl", tmp_path / "good.jsonl", tmp_path / "bad.jsonl",
                    "--shard-size", "10", "--jobs", "2")
    assert done.returncode == 1
    assert "bad.jsonl" in done.stderr and "line 3" in done.stderr and done.stderr.count("\n") == 1
    assert not (tmp_path / "ds").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "good.jsonl"]


S = CompressionStrategy


@pytest.mark.parametrize("version,kwargs", [(2, dict(compression_strategy=S.SHARED_DICTIONARY_COMPRESSION)),
                                            (2, dict(compression_strategy=S.DICTIONARY_COMPRESSION)),
                                            (2, dict(codec=Codec.LZ4)),
                                            (2, dict(compression_strategy=S.SHARED_DICTIONARY_COMPRESSION,
                                                     framing="example")),
                                            (2, dict(codec=Codec.LZ4, framing="example")),
                                            (2, dict(compression_strategy=S.SHARED_DICTIONARY_COMPRESSION,
                                                     framing="list")),
                                            (1, dict(compression_strategy=S.SHARED_DICTIONARY_COMPRESSION)),
                                            (1, dict(compression_strategy=S.NO_COMPRESSION))])
def test_write_dataset_two_workers_equals_one_and_the_sequential_writer(tmp_path, version, kwargs):
    examples = [{"i": i, "t": "word " * (i % 13)} for i in range(700)]
    for workers in (1, 2):
        write_dataset(iter(examples) if workers == 1 else examples, tmp_path / f"w{workers}", shard_size=90,
                      block_size=8, format_version=version, num_workers=workers, progress=False, **kwargs)
    with AtlasDatasetWriter(tmp_path / "seq", 90, 8, format_version=version, **kwargs) as writer:
        for example in examples:
            writer.add_example(example)
    assert list(AtlasDataset(tmp_path / "w2")) == examples
    assert digest(tmp_path / "w1") == digest(tmp_path / "w2") == digest(tmp_path / "seq")


def test_write_dataset_failure_publishes_nothing(tmp_path):
    def source():
        yield from range(300)
        raise RuntimeError("the source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        write_dataset(source(), tmp_path / "ds", shard_size=50, block_size=8, num_workers=2, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_create_from_hf_saved_dataset_and_splits(tmp_path):
    datasets = pytest.importorskip("datasets", reason="the hf extra is installed by scripts/run-tests")
    rows = {"text": [f"row {i}" for i in range(130)], "label": list(range(130))}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "hf"))
    done = atlas_ds("create", tmp_path / "ds", "--from-hf", tmp_path / "hf", "--shard-size", "50", "--jobs", "2",
                    "--no-progress")
    assert done.returncode == 0, done.stderr
    assert list(AtlasDataset(tmp_path / "ds")) == [{"text": f"row {i}", "label": i} for i in range(130)]
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows)}).save_to_disk(str(tmp_path / "dict"))
    no_split = atlas_ds("create", tmp_path / "x", "--from-hf", tmp_path / "dict")
    assert no_split.returncode == 1 and "train" in no_split.stderr and not (tmp_path / "x").exists()
    split = atlas_ds("create", tmp_path / "y", "--from-hf", f"{tmp_path / 'dict'}:train", "--no-progress")
    assert split.returncode == 0 and len(AtlasDataset(tmp_path / "y")) == 130


# -- typed examples (spec 3.12) ------------------------------------------------------------------------------


def test_create_from_jsonl_writes_typed_examples_by_default(tmp_path):
    rows = [{"text": f"row {i}", "n": i, "tags": ["a", "b"], "score": i / 3, "none": None} for i in range(50)]
    src = tmp_path / "a.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = atlas_ds("create", str(tmp_path / "out"), "--from-jsonl", str(src), "--block-size", "8",
                    "--no-progress")
    assert done.returncode == 0, done.stderr
    assert [AtlasDataset(tmp_path / "out")[i] for i in range(50)] == rows
    info = atlas_ds("info", str(tmp_path / "out"), "--json")
    assert json.loads(info.stdout)["encoding"] == "typed"
    assert "encoding           typed" in atlas_ds("info", str(tmp_path / "out")).stdout
    pickled = atlas_ds("create", str(tmp_path / "p"), "--from-jsonl", str(src), "--encoding", "pickle",
                       "--no-progress")
    assert pickled.returncode == 0 and json.loads(atlas_ds("info", str(tmp_path / "p"), "--json").stdout)[
        "encoding"] == "pickle"


def test_convert_to_typed_names_the_first_value_it_cannot_encode_and_publishes_nothing(tmp_path):
    import datetime

    src = tmp_path / "src"
    with AtlasDatasetWriter(src, 100, 8) as w:  # the default: pickles, framing grouped
        for i in range(30):
            w.add_example({"i": i, "meta": {"when": datetime.date(2020, 1, 1) if i == 17 else "never"}})
    done = atlas_ds("convert", str(src), str(tmp_path / "dst"), "--encoding", "typed", "--trust", "--no-progress")
    assert done.returncode == 1
    assert "example 17: ['meta']['when']: datetime.date is not encodable" in done.stderr
    assert not (tmp_path / "dst").exists()


def test_convert_keeps_a_typed_source_typed_and_the_framing(tmp_path):
    src = tmp_path / "src"
    with AtlasDatasetWriter(src, 100, 8) as w:
        for i in range(30):
            w.add_example({"i": i, "t": (i, "x")})
    typed_dst = tmp_path / "typed"
    done = atlas_ds("convert", str(src), str(typed_dst), "--encoding", "typed", "--no-progress")
    assert done.returncode == 0, done.stderr
    info = json.loads(atlas_ds("info", str(typed_dst), "--json").stdout)
    assert (info["encoding"], info["framing"]) == ("typed", "grouped")  # TYPED-7
    again = tmp_path / "again"
    assert atlas_ds("convert", str(typed_dst), str(again), "--block-size", "4", "--no-progress").returncode == 0
    assert json.loads(atlas_ds("info", str(again), "--json").stdout)["encoding"] == "typed"
    assert [AtlasDataset(again)[i] for i in range(30)] == [{"i": i, "t": (i, "x")} for i in range(30)]
    listed = tmp_path / "listed"
    assert atlas_ds("convert", str(typed_dst), str(listed), "--framing", "list", "--no-progress").returncode == 0
    assert json.loads(atlas_ds("info", str(listed), "--json").stdout)["framing"] == "list"
    assert [AtlasDataset(listed)[i] for i in range(30)] == [{"i": i, "t": (i, "x")} for i in range(30)]
