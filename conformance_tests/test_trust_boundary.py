"""Issue 15's acceptance: the attack classes are stopped by both engines, and what the validator passes is safe.

* every attack (attacks.py), sealed into a checksummed dataset: ``atlas-validate`` exits 1 with its
  finding; safe loading refuses it with the project's error, in a process limited to 3 GiB of address
  space and 60 s, and the process is unchanged afterwards (numpy's dtypes, torch's rebuild functions,
  a tensor round trip, a ``torch.load(weights_only=True)`` checkpoint);
* a dataset the validator passes, read in trusted mode, resolves no global outside the policy and runs
  no command (an audit hook watches ``pickle.find_class``, ``os.system``, ``subprocess.Popen``, spawns,
  sockets, file removals);
* datasets the original writer makes (``format_version=1``) holding masked arrays, pure paths, range,
  slice, Ellipsis, datetime, Decimal, UUID and Fraction load exactly in safe mode and validate clean.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import fractions
import json
import pathlib
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest
from attacks import ATTACKS, MARKER
from validator_vectors import write_v2

from atlas_validator import validate
from torch_atlas_ds import AtlasDataset, AtlasDatasetWriter

HERE = Path(__file__).resolve().parent
ATTACK_AT = 3  # the example of each dataset that holds the attack


@pytest.fixture(scope="module")
def attack_datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("attacks")
    roots = {}
    for attack in ATTACKS:
        payload = attack.build()

        def hook(shard, block, position, pickled, payload=payload):
            return payload if (shard, block, position) == (0, 0, ATTACK_AT) else pickled

        roots[attack.name] = write_v2(base / attack.name, [{"id": i} for i in range(8)], codec="zstd",
                                      shard_size=8, block_size=4, pickle_hook=hook)
    return roots


def test_validator_refuses_every_attack_with_its_finding(attack_datasets, tmp_path):
    paths = [str(attack_datasets[a.name]) for a in ATTACKS]
    done = subprocess.run([sys.executable, "-m", "atlas_validator", "--format", "json", "--jobs", "1", *paths],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 1, done.stderr
    reports = {Path(r["path"]).name: r for r in json.loads(done.stdout)["reports"]}
    for attack in ATTACKS:
        report = reports[attack.name]
        ids = {f["id"] for f in report["findings"]}
        assert not report["ok"] and attack.finding in ids, (attack.name, ids)
        [finding] = [f for f in report["findings"] if f["id"] == attack.finding]
        assert finding["example"] == ATTACK_AT and finding["block"] == 0, finding
    assert not (tmp_path / MARKER).exists()


_SAFE_LOADING = textwrap.dedent("""
    import io, json, resource, sys, time
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
    import numpy as np, torch
    from torch_atlas_ds import AtlasDataset, AtlasError

    defaults = torch._utils._rebuild_tensor_v2.__defaults__
    checkpoint = io.BytesIO()
    torch.save({"w": torch.arange(4.0)}, checkpoint)
    results = {}
    for name, root in json.loads(sys.argv[1]).items():
        started = time.perf_counter()
        ds = AtlasDataset(root, safe=True)
        outcome = None
        for i in range(len(ds)):
            try:
                value = ds[i]
            except AtlasError as exc:
                outcome = [i, type(exc).__name__, exc.rule, exc.example, str(exc)]
            except BaseException as exc:
                outcome = [i, "NOT THE PROJECT'S ERROR: " + type(exc).__name__, None, None, str(exc)[:300]]
            else:
                assert value == {"id": i}, value
        unchanged = (np.dtype("f8").hasobject is False and np.dtype("f8").itemsize == 8
                     and torch._utils._rebuild_tensor_v2.__defaults__ == defaults
                     and torch.equal(__import__("pickle").loads(__import__("pickle").dumps(torch.ones(3))),
                                     torch.ones(3))
                     and torch.equal(torch.load(io.BytesIO(checkpoint.getvalue()), weights_only=True)["w"],
                                     torch.arange(4.0)))
        results[name] = {"outcome": outcome, "seconds": time.perf_counter() - started, "unchanged": unchanged}
    print(json.dumps(results))
""")


def test_safe_loading_refuses_every_attack_within_bounds(attack_datasets, tmp_path):
    roots = {name: str(root) for name, root in attack_datasets.items()}
    done = subprocess.run([sys.executable, "-c", _SAFE_LOADING, json.dumps(roots)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60 * len(ATTACKS))
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    for attack in ATTACKS:
        result = results[attack.name]
        position, error, rule, example, message = result["outcome"]
        assert (position, error, rule) == (ATTACK_AT, attack.error, attack.rule), (attack.name, result)
        assert example == ATTACK_AT and "data.bin" in message and "block 0" in message, message
        assert result["seconds"] < 60 and result["unchanged"], (attack.name, result)
    assert not (tmp_path / MARKER).exists()


# -- what the validator passes is safe in trusted mode --------------------------------------------------------


def policy_examples() -> list[object]:
    """One example of every kind of value the policy admits (torch included)."""
    import torch

    masked = np.ma.masked_array([1.5, 2.0, 3.0], mask=[False, True, False], fill_value=-1.0)
    return [
        {"masked": masked, "plain": np.ma.masked_array(np.arange(4, dtype=np.int32).reshape(2, 2))},
        {"paths": [pathlib.PurePosixPath("a/b.txt"), pathlib.PureWindowsPath("C:/x/y")]},
        {"range": range(2, 20, 3), "slice": slice(1, None, 2), "ellipsis": ..., "none": None},
        {"when": datetime.datetime(2026, 12, 4, 21, 30, 5, 123, tzinfo=datetime.timezone(datetime.timedelta(hours=1),
                                                                                          "CET")),
         "day": datetime.date(2026, 2, 28), "time": datetime.time(23, 59, 59), "delta": datetime.timedelta(-3, 5)},
        {"money": decimal.Decimal("-1234.5678"), "nan": decimal.Decimal("NaN"), "ratio": fractions.Fraction(-22, 7)},
        {"id": uuid.UUID("12345678-1234-5678-1234-567812345678"), "set": {1, 2}, "frozen": frozenset({"a"})},
        {"counts": collections.Counter("abracadabra"), "ordered": collections.OrderedDict(b=1, a=2),
         "lists": collections.defaultdict(list, x=[1]), "queue": collections.deque([1, 2, 3], maxlen=5)},
        {"array": np.arange(12, dtype=np.float32).reshape(3, 4), "labels": np.array(["cat", "dog"]),
         "stamps": np.array(["2026-01-01"], dtype="M8[D]"), "scalar": np.float64(2.5), np.int64(7): "numpy key"},
        {"tensor": torch.arange(6, dtype=torch.float32).reshape(2, 3), "param": torch.nn.Parameter(torch.ones(2)),
         "size": torch.Size([2, 3]), "device": torch.device("cpu"), "dtype": torch.bfloat16,
         "view": torch.arange(10)[2:5], "bytes": bytearray(b"xy"), "complex": complex(1, -2)},
    ]


def _same(a: object, b: object) -> bool:
    from test_pickle_differential import same

    return same(a, b)


@pytest.mark.parametrize("format_version", [1, 2])
def test_datasets_of_policy_types_load_exactly_in_safe_mode_and_validate_clean(tmp_path, format_version):
    examples = policy_examples()
    root = tmp_path / "d"
    with AtlasDatasetWriter(root, shard_size=4, block_size=2, format_version=format_version) as writer:
        for example in examples:
            writer.add_example(example)
    report = validate(root)
    assert report.ok and not report.errors and not report.warnings, [f.to_dict() for f in report.findings]
    safe = AtlasDataset(root, safe=True)
    assert len(safe) == len(examples)
    for i, example in enumerate(examples):
        assert _same(safe[i], example), (i, safe[i], example)


_TRUSTED = textwrap.dedent("""
    import json, sys
    events = []
    def audit(event, args):
        if event == "pickle.find_class":
            events.append(["global", args[0], args[1]])
        elif event in ("os.system", "subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                       "socket.connect", "ctypes.dlopen", "os.remove", "os.rename", "shutil.rmtree"):
            events.append(["run", event])  # ("exec" and "compile" are also raised by every module import)
    from torch_atlas_ds import AtlasDataset
    ds = AtlasDataset(sys.argv[1])
    sys.addaudithook(audit)
    values = [ds[i] for i in range(len(ds))]
    print(json.dumps(events))
""")


def test_trusted_mode_stays_inside_the_policy_on_a_validated_dataset(tmp_path):
    from atlas_format.pickle_policy import POLICY, resolve_name

    root = tmp_path / "d"
    with AtlasDatasetWriter(root, shard_size=4, block_size=2) as writer:
        for example in policy_examples():
            writer.add_example(example)
    assert validate(root).ok
    done = subprocess.run([sys.executable, "-c", _TRUSTED, str(root)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    events = json.loads(done.stdout)
    assert not [e for e in events if e[0] == "run"], events
    resolved = {(e[1], e[2]) for e in events if e[0] == "global"}
    assert resolved, "the audit hook saw no global: the test would pass vacuously"
    outside = {g for g in resolved if resolve_name(*g, 2) not in POLICY and g not in POLICY}
    assert not outside, outside
