#!/usr/bin/env python
"""Plant deliberate bugs, one at a time, and check that the conformance suite fails on each.

Each bug is a one-line change to a copy of the source tree (the checkout is never touched);
the suite then runs against the copy (``PYTHONPATH`` puts the copy's packages first) and
must fail. Prints a Markdown table: bug, where, how many tests failed and in which files.

    python conformance_tests/plant_bugs.py [--only NAME] [--exitfirst]

``--exitfirst`` stops each bug's run at its first failing test: whether the bug is caught is all
the table then tells (a few times faster than the whole suite per bug).

``test_static_checks.py`` is left out of these runs: it fails on every planted copy (a planted site
no longer reads as it did, and ruff or mypy may object to the planted line), which would count a bug
as caught by no behaviour at all, and with ``--exitfirst`` hide the tests after it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# name, file, exact text, replacement, what the bug is
BUGS = [
    ("off-by-one example in the v2 reader", "reference/torch_atlas_ds/shard_v2.py",
     "b, pos = divmod(i, self.block_size)", "b, pos = divmod(i + 1, self.block_size)",
     "example i is read from the position of example i+1"),
    ("off-by-one block offset in the v2 index", "reference/torch_atlas_ds/writer.py",
     "self.entries.append((self.data_size, len(stored)", "self.entries.append((self.data_size + 1, len(stored)",
     "every index entry points one byte late"),
    ("last block dropped (v2 writer)", "reference/torch_atlas_ds/writer.py",
     "        self._flush()\n        trained: bytes | None = None", "        trained: bytes | None = None",
     "the pending partial block is never written at close"),
    ("last block dropped (v1 writer)", "reference/torch_atlas_ds/writer.py",
     '        """Finish the shard; returns (strategy written in meta.json, trained dictionary or None)."""\n'
     "        self._flush()",
     '        """Finish the shard; returns (strategy written in meta.json, trained dictionary or None)."""',
     "the pending partial block is never written at close"),
    ("shard dictionary swapped for the root's (v1 reader)", "reference/torch_atlas_ds/shard_v1.py",
     "        if self.strategy == CompressionStrategy.DICTIONARY_COMPRESSION:\n"
     "            self._dict_source = location / DICT_FILE",
     "        if self.strategy == CompressionStrategy.DICTIONARY_COMPRESSION:\n"
     "            self._dict_source = shared_dictionary(location)",
     "a strategy-3 shard is decoded with the dataset's root dictionary instead of its own"),
    ("shard dictionary swapped for the root's (v2 reader)", "reference/torch_atlas_ds/shard_v2.py",
     "        path, record = self._dict_source\n", "        path, record = self._dict_source\n"
     "        path = shared_dictionary(self.location) if path.name == DICT_FILE else path\n",
     "a shard-dictionary shard loads the dataset's root dictionary instead of its own"),
    ("example read from its neighbour's offsets (v2 reader, framings block and example)",
     "reference/torch_atlas_ds/framing.py",
     "        start, end = read_span(data, SPAN_AT + OFFSET_SIZE * pos)\n",
     "        start, end = read_span(data, SPAN_AT + OFFSET_SIZE * min(pos + 1, count - 1))\n",
     "a random read unpickles the next example's slice (framing example: decodes the next example's frame)"),
    ("grouped random read takes the next group (v2 reader)", "reference/torch_atlas_ds/framing_grouped.py",
     "        q, k = divmod(pos, size)\n", "        q, k = divmod(min(pos + size, n - 1), size)\n",
     "a random read of a one-frame grouped block unpickles the group after the example's"),
    ("grouped part's example count not checked (v2 reader)", "reference/torch_atlas_ds/framing_grouped.py",
     "        if type(items) is not list or len(items) != expected:", "        if type(items) is not list:",
     "a crafted group or frame holding more examples than it should is read as if it were right"),
    ("grouped group size ignored (v2 reader)", "reference/torch_atlas_ds/framing_grouped.py",
     "        self.group = group\n", "        self.group = grouped.FRAME_GROUP\n",
     "a shard in groups of 1, 2 or 4 is read with groups of 8: its head is misread"),
    ("typed array size not checked (v2 reader)", "reference/torch_atlas_ds/typed_codec.py",
     "    if len(payload) - head - pad != expected:\n", "    if False:\n",
     "an array whose payload holds more or fewer bytes than its shape needs is read anyway"),
    ("typed fast path trusts the payload size alone (v2 reader)", "reference/torch_atlas_ds/typed_codec.py",
     "                        if buf.startswith(head):\n", "                        if True:\n",
     "an array of a size seen before is built with that array's shape and dtype, whatever its header says"),
    ("grouped preamble shares mutable objects (v2 writer)", "reference/torch_atlas_ds/grouped_writer.py",
     "    if isinstance(obj, (str, bytes)):\n", "    if True:\n",
     "a dict the first block shares is memoized in the preamble: later blocks read its first-block state"),
    ("framing example written without its index flag", "reference/torch_atlas_ds/writer.py",
     "flags=shard_flags(self.framing, self._encoder.group, self.encoding))",
     "flags=shard_flags(Framing.BLOCK if self.framing is Framing.EXAMPLE else self.framing, self._encoder.group, "
     "self.encoding))",
     "index.bin says block framing while the blocks hold one frame per example"),
    ("framing list hands out an example without marking it taken (v2 reader)", "reference/torch_atlas_ds/framing.py",
     "            values[pos] = TAKEN\n            out.append(value)\n", "            out.append(value)\n",
     "a repeated read of a list block returns the object the caller already got (and may have mutated)"),
    ("in-order run hands out an example without marking it taken (dataset)", "reference/torch_atlas_ds/dataset.py",
     "                values[i - first] = TAKEN\n", "",
     "an in-order ds[i] served from the block's run returns the same object again on a repeat"),
    ("block read from its neighbour's bytes (v2 reader, the one read of a stored block)",
     "reference/torch_atlas_ds/shard_v2.py",
     "            maps.data.read(maps.offsets[b], maps.stored[b])",
     "            maps.data.read(maps.offsets[max(b - 1, 0)], maps.stored[b])",
     "a block is read (checksummed, decoded) from the previous block's place in data.bin"),
    ("framing list validated without the example count (validator)", "validator/atlas_validator/checks_v2.py",
     "            expected = min(block_size, num_examples - b * block_size)",
     "            expected = None",
     "a list-framed block holding the wrong number of examples passes validation"),
    ("validator skips block checksums", "validator/atlas_validator/checks_v2.py",
     "if digest(data) != checksum:", "if False and digest(data) != checksum:",
     "corrupt v2 blocks pass validation"),
    ("index dtype rule off by one", "spec/atlas_format/npy.py",
     "if maximum >= last_entry:", "if maximum > last_entry:",
     "a last offset of exactly 255 gets a uint16 index (the original writes uint8)"),
    ("os.system in the pickle policy", "spec/atlas_format/pickle_policy.py",
     '       PolicyEntry("builtins", "Ellipsis", "the ... singleton"),',
     '       PolicyEntry("builtins", "Ellipsis", "the ... singleton"), PolicyEntry("posix", "system", "planted"),',
     "a code-running global is a value of the policy"),
    ("safe loader drops the memo rule", "reference/torch_atlas_ds/safe_opcodes.py",
     "        if index > len(memo):", "        if False and index > len(memo):",
     "safe loading accepts memo indices out of order (the C unpickler's 4 GiB memo)"),
    ("safe loader lets call-only globals into the result", "reference/torch_atlas_ds/safe_pickle.py",
     "        if not (self.shared or self.markers or self.containers",
     "        if not (self.shared or self.containers",
     "a call-only function object (torch's rebuild, _load_from_bytes) is handed to the caller"),
    ("validator drops the dict-key rule", "validator/atlas_validator/pickle_scan.py",
     "            elif not isinstance(node, (Ref, Trusted)):", "            elif False:",
     "the validator passes lists and dicts as dict keys, which safe loading refuses"),
    ("validator drops the BUILD rule for dtypes", "spec/atlas_format/pickle_checks.py",
     "    if not ok:\n        refuse(f\"numpy.dtype state", "    if False:\n        refuse(f\"numpy.dtype state",
     "a dtype state with object flags passes both engines (shared check: the attack vectors catch it)"),
    ("dataset files used whatever their kind (atlas_format.files)", "spec/atlas_format/files.py",
     "    if not test(mode):\n", "    if False and not test(mode):\n",
     "a FIFO, device or symlinked file is opened or read instead of refused"),
    ("open shards never closed (reader)", "reference/torch_atlas_ds/shard_state.py",
     "                old.release()\n", "                pass\n",
     "every shard keeps its maps: 10,000 shards exhaust 256 descriptors"),
    ("block cache ignores its byte budget (reader)", "reference/torch_atlas_ds/block_cache.py",
     "        if len(items) * self._largest > self._limit:\n            self._fit()\n", "",
     "16 huge decoded blocks stay in memory whatever block_cache_bytes says"),
    ("append takes no lock (writer)", "reference/torch_atlas_ds/writer.py",
     "            lock.acquire()  # before reading anything", "            pass  # before reading anything",
     "a second concurrent append does all its work and fails only at its commit"),
    ("a killed append's shard folders are not cleared (writer)", "reference/torch_atlas_ds/writer.py",
     '        self.recovered = clear_root(root, {s["name"] for s in doc["shards"]})',
     "        self.recovered = []",
     "every append after a killed append's commit step fails on the orphan shard folders"),
    ("abort writes the failed buffer again (writer)", "reference/torch_atlas_ds/writer.py",
     '        getattr(f, "raw", f).close()  # the raw file first', "        f.flush()  # the raw file first",
     "on a full disk the abort fails again and leaves the temporary folder behind"),
    ("a running writer's lock is not seen (locking)", "reference/torch_atlas_ds/locking.py",
     "            return _read_fd(fd) or Holder(None)", "            return None",
     "a live writer's files are listed as a dead writer's leftovers (gc is still refused by the lock)"),
    ("an unfinished write reads as a missing path (reader)", "reference/torch_atlas_ds/dataset.py",
     "the user named it\n            _refuse_unfinished(self.root)\n",
     "the user named it\n",
     "a SIGKILLed write says 'no dataset folder' instead of IncompleteDatasetError naming its leftover"),
    ("reader names a bad example by its number in the shard (dataset)", "reference/torch_atlas_ds/dataset.py",
     "        return exc.relocated(index=self._starts[k] + exc.example)", "        return exc",
     "the reader's error and the validator's finding number the same example differently"),
    ("validator numbers examples from the wrong shard start (validator)", "validator/atlas_validator/example_index.py",
     "            f = dataclasses.replace(f, index=starts[f.shard] + f.example)",
     "            f = dataclasses.replace(f, index=f.example)",
     "a finding's dataset index is the example's number in its shard"),
    ("a sub-folder of a version 1 root only noted (validator)", "validator/atlas_validator/layout.py",
     "        elif _is_dir(entry) and not _is_link(entry):\n            leftover",
     "        elif False:\n            leftover",
     "a dataset the original cannot open (an extra sub-folder) is reported valid"),
    ("slice memo rule skipped (grouped validator)", "validator/atlas_validator/slice_scan.py",
     "            s.memo = dict(preamble_memo)\n", "",
     "a part keeps the memo of the parts before it: a slice that reads another group's entry (two readings) passes"),
    ("group offset between the wrong examples accepted (grouped validator)", "validator/atlas_validator/slice_scan.py",
     "or len(s.stack) != part.count:", "or len(s.stack) < 0:",
     "a group or frame that ends on an opcode boundary with too few or too many examples passes"),
    ("grouped group size ignored (grouped validator)", "validator/atlas_validator/checks_v2.py",
     "num_examples, grouped.group_of_flags(header.flags),", "num_examples, grouped.FRAME_GROUP,",
     "the blocks of a shard in groups of 1, 2 or 4 are checked as groups of 8: a valid dataset fails"),
    ("typed grouped group offsets not checked (validator)", "validator/atlas_validator/typed_scan.py",
     "            if k >= min(frame * (j + 1), n) or base + value != bounds[k]:",
     "            if k >= min(frame * (j + 1), n):",
     "a typed grouped block whose group offset points inside an example passes validation"),
    ("typed grouped array header not skipped (reader)", "reference/torch_atlas_ds/framing_grouped_typed.py",
     "        return len(typed.array_header(n))", "        return 0",
     "a random read of frame 0 takes its groups one header too early"),
    ("a resumed epoch starts over (sampler)", "reference/torch_atlas_ds/sampler.py",
     "self.history, self._resume_at = [], taken", "self.history, self._resume_at = [], 0",
     "load_state_dict forgets what the ranks took: a resumed epoch reads its first examples again"),
    ("a dead attempt's folder is published (dask and ray writers)", "reference/torch_atlas_ds/engines.py",
     "        shutil.rmtree(leftover, ignore_errors=True)", "        pass",
     "the folder of a task attempt that died is published inside the dataset"),
    ("a remote block verified once only (reader)", "reference/torch_atlas_ds/shard_v2.py",
     "self._keep_verified = 1 if data.verified_once else 0", "self._keep_verified = 1",
     "a block fetched again from a store is not verified again: bytes changed since the first read are returned"),
    ("a local cache returns what its disk holds (reader)", "reference/torch_atlas_ds/local_cache.py",
     "        if XXH3_64.of(data) != checksum:", "        if False:",
     "a cached block is not verified when it is read back: a failing local disk's bytes are decoded"),
    ("typed array size not checked (validator)", "validator/atlas_validator/typed_scan.py",
     "        if end - start != expected:\n", "        if False:\n",
     "a typed array whose payload does not match its shape is reported valid"),
    ("standard zstd frame accepted in a grouped shard (grouped validator)", "validator/atlas_validator/blocks.py",
     "        if info.magicless and bytes(data[:len(_ZSTD_MAGIC_BYTES)]) == _ZSTD_MAGIC_BYTES:",
     "        if False:",
     "a frame with the zstd magic number is not named as such (it fails later as an undecodable frame)"),
]


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line]


def run(name: str, rel: str, old: str, new: str, exitfirst: bool = False) -> tuple[bool, str, float]:
    with tempfile.TemporaryDirectory(prefix="planted-") as tmp:
        copy = Path(tmp)
        for f in tracked_files():
            (copy / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, copy / f)
        target = copy / rel
        text = target.read_text()
        if text.count(old) != 1:
            return False, f"the planting site was not found exactly once in {rel} (update plant_bugs.py)", 0.0
        target.write_text(text.replace(old, new))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(copy / p) for p in ("spec", "reference", "validator")),
               "HYPOTHESIS_PROFILE": "ci"}
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:warnings",
                               *(["-x"] if exitfirst else []), "--ignore=conformance_tests/test_static_checks.py",
                               "conformance_tests"],
                              cwd=copy, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        check = subprocess.run([sys.executable, "-c", "import atlas_format, torch_atlas_ds, atlas_validator; "
                                "print(atlas_format.__file__, torch_atlas_ds.__file__, atlas_validator.__file__)"],
                               cwd=copy, env=env, capture_output=True, text=True)
        if str(copy) not in check.stdout:
            return False, "the copy's packages were not the ones imported", seconds
        failed = re.findall(r"^FAILED (\S+)", done.stdout, re.M) + re.findall(r"^ERROR (\S+)", done.stdout, re.M)
        caught = done.returncode != 0
        files = sorted({f.split("::")[0].removeprefix("conformance_tests/") for f in failed})
        summary = f"{len(failed)} tests in {len(files)} files: {', '.join(files)}" if failed else \
            done.stdout.strip().splitlines()[-1]
        return caught, summary, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run only bugs whose name contains this text")
    parser.add_argument("--exitfirst", action="store_true", help="stop each bug's run at its first failing test")
    args = parser.parse_args()
    print("| planted bug | where | caught | failing tests | seconds |")
    print("|---|---|---|---|---|")
    all_caught = True
    for name, rel, old, new, _ in BUGS:
        if args.only not in name:
            continue
        caught, first, seconds = run(name, rel, old, new, args.exitfirst)
        all_caught &= caught
        print(f"| {name} | `{rel}` | {'yes' if caught else 'NO'} | {first} | {seconds:.0f} |", flush=True)
    return 0 if all_caught else 1


if __name__ == "__main__":
    raise SystemExit(main())
