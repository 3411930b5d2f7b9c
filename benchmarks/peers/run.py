"""torch_atlas_ds side by side with its peers, in one run (issue 9, deliverable 1).

    bash benchmarks/peers/setup.sh                                         # once: the venvs
    benchmarks/.work/venvs/atlas/bin/python benchmarks/peers/run.py --quick   # a few minutes
    benchmarks/.work/venvs/atlas/bin/python benchmarks/peers/run.py           # full (text 100k, image 20k)

Writes both deterministic workloads (the generators of benchmarks/bench_reference.py) with
this project (v1 and v2 layouts) and with each peer, then measures every read in a fresh
process (benchmarks/peers/systems.py, run with the peer's own venv). Outputs
benchmarks/peers/results.json, benchmarks/RESULTS-peers.md and benchmarks/peers/chart.png.
Datasets go to benchmarks/.work/data (git-ignored).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pickle
import platform
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
WORK = ROOT / "benchmarks" / ".work"
VENVS = WORK / "venvs"
DATA = WORK / "data"
sys.path.insert(0, str(ROOT / "benchmarks"))

READ_TASKS = ("open", "random", "batched", "seq", "iter", "loader_random")


def atlas_systems(blocks: tuple[int, ...]) -> list[dict[str, Any]]:
    out = []
    for b in (64, 8):
        out.append({"id": f"atlas-v1-zstd-b{b}", "group": "atlas", "adapter": "atlas",
                    "label": f"this project v1 (original layout), zstd shared dict, block {b}",
                    "params": {"version": 1, "codec": "zstd", "block": b}})
    for codec, what in (("zstd", "zstd shared dict"), ("lz4", "LZ4"), ("none", "no compression")):
        for b in blocks:
            out.append({"id": f"atlas-v2-{codec}-b{b}", "group": "atlas", "adapter": "atlas",
                        "label": f"this project v2, {what} ({'grouped' if codec == 'zstd' else 'block'} framing, the "
                                 f"default), block {b}",
                        "params": {"version": 2, "codec": codec, "block": b}})
    for codec, what in (("zstd", "zstd shared dict"), ("lz4", "LZ4")):
        for b in blocks:
            out.append({"id": f"atlas-v2-{codec}-frames-b{b}", "group": "atlas", "adapter": "atlas",
                        "label": f"this project v2, {what}, a frame per example, block {b}",
                        "params": {"version": 2, "codec": codec, "block": b, "framing": "example"}})
    for codec, what in (("zstd", "zstd shared dict"), ("lz4", "LZ4"), ("none", "no compression")):
        for b in (b for b in blocks if b <= 64):
            out.append({"id": f"atlas-v2-{codec}-list-b{b}", "group": "atlas", "adapter": "atlas",
                        "label": f"this project v2, {what}, a pickled list per block, block {b}",
                        "params": {"version": 2, "codec": codec, "block": b, "framing": "list"}})
    return out


PEERS: list[dict[str, Any]] = [
    {"id": "memory", "group": "atlas", "adapter": "memory",
     "label": "reference: in-memory Python list (no storage; DataLoader reference)"},
    {"id": "hf", "group": "hf", "adapter": "hf", "label": "HuggingFace datasets (Arrow, save_to_disk)"},
    {"id": "mds", "group": "mds", "adapter": "mds", "label": "MosaicML Streaming (MDS), no compression"},
    {"id": "litdata", "group": "litdata", "adapter": "litdata", "label": "litdata, no compression"},
    {"id": "lance", "group": "lance", "adapter": "lance", "label": "Lance (pylance defaults)"},
    {"id": "arrayrecord", "group": "arrayrecord", "adapter": "arrayrecord",
     "label": "ArrayRecord, group_size 1, uncompressed (pickled examples)",
     "params": {"options": "group_size:1,uncompressed"}},
]

CACHING = {
    "reference (in-memory list)": "everything in memory: not a format, the cost of the loop and the DataLoader alone",
    "atlas": "in-process LRU of 16 decoded blocks per dataset (default); data.bin and index.bin memory-mapped; "
             "v2 none reads an example straight from the map",
    "hf": "Arrow files memory-mapped; no decoded-row cache",
    "mds": "no compression: shard files read in place; with compression MDS decompresses whole shards to disk "
           "beside the data",
    "litdata": "local chunks read in place; the reader keeps the chunk it is reading",
    "lance": "pylance defaults (metadata/index caches); no decoded-row cache",
    "arrayrecord": "none in the data source (one pread per record with group_size 1)",
}


def python_of(group: str) -> Path:
    return VENVS / group / "bin" / "python"


def run_worker(group: str, task: dict[str, Any], timeout: float) -> dict[str, Any]:
    py = python_of(group)
    if not py.exists():
        return {"ok": False, "error": f"venv {group} missing (run benchmarks/peers/setup.sh)"}
    env = dict(os.environ, PYTHONHASHSEED="0", TOKENIZERS_PARALLELISM="false")
    try:
        proc = subprocess.run([str(py), str(HERE / "systems.py"), json.dumps(task)], capture_output=True,
                              text=True, timeout=timeout, env=env, cwd=str(WORK))
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout:.0f} s"}
    marker = "@@RESULT@@"
    if marker not in proc.stdout:
        return {"ok": False, "error": f"exit {proc.returncode}: {proc.stderr.strip()[-600:]}"}
    return json.loads(proc.stdout.rsplit(marker, 1)[1].strip().splitlines()[0])


def dir_size(*roots: str | Path) -> int:
    total = 0
    for root in roots:
        p = Path(root)
        if p.is_file():
            total += p.stat().st_size
        elif p.is_dir():
            total += sum(q.stat().st_size for q in p.rglob("*") if q.is_file())
    return total


def make_workloads(n_text: int, n_img: int, n_rand: int) -> dict[str, dict[str, Any]]:
    from bench_reference import image_examples, text_examples

    DATA.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, n, gen in (("text", n_text, text_examples), ("image", n_img, image_examples)):
        pkl = DATA / f"{name}-{n}.pkl"
        if not pkl.exists():
            examples = gen(n)
            with open(pkl, "wb") as f:
                pickle.dump(examples, f, protocol=5)
        rng = random.Random(99)
        indices = [rng.randrange(n) for _ in range(n_rand)]
        idx_file = DATA / f"{name}-{n}-indices-{n_rand}.json"
        idx_file.write_text(json.dumps(indices))
        out[name] = {"n": n, "examples": str(pkl), "indices_file": str(idx_file), "pickled_bytes": None}
        with open(pkl, "rb") as f:
            out[name]["pickled_bytes"] = sum(len(pickle.dumps(ex, protocol=5)) for ex in pickle.load(f))
    return out


def measure(system: dict[str, Any], wname: str, wl: dict[str, Any], args: argparse.Namespace,
            log: Any) -> dict[str, Any]:
    path = DATA / f"{wname}-{wl['n']}" / system["id"]
    row: dict[str, Any] = {"system": system["id"], "label": system["label"], "group": system["group"],
                           "workload": wname, "params": system.get("params", {}), "errors": {}}
    base = {"adapter": system["adapter"], "params": system.get("params", {}), "workload": wname,
            "path": str(path), "n": wl["n"]}
    if path.exists():
        shutil.rmtree(path)
    for extra in (str(path) + ".gen-cache",):
        shutil.rmtree(extra, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    res = run_worker(system["group"], dict(base, task="write", examples=wl["examples"]), args.timeout)
    if not res.get("ok"):
        row["errors"]["write"] = res.get("error")
        log(f"  {system['id']:24} write FAILED: {res.get('error')}")
        return row
    row["write"] = res["value"]
    row["bytes"] = res["bytes"]
    row["peak_rss_write_mb"] = res["peak_rss_mb"]
    tasks = list(READ_TASKS)
    if system["adapter"] == "atlas":
        tasks.append("loader_block")
    if system["adapter"] in ("mds", "litdata"):
        tasks.append("loader_native")
    peaks = []
    for t in tasks:
        task = dict(base, task=t)
        if t in ("random", "batched"):
            task["indices_file"] = wl["indices_file"]
        if t.startswith("loader"):
            task["sampler"] = {"loader_block": "block", "loader_native": "native"}.get(t, "random")
        values, last = [], {}
        more = {"random": args.repeat_random, "batched": args.repeat_random, "seq": args.repeat_seq,
                "iter": args.repeat_seq}.get(t, 1)
        repeat = 1 if t == "open" else max(args.repeat, more)
        for _ in range(repeat):
            last = run_worker(system["group"], task, args.timeout)
            if not last.get("ok"):
                break
            values.append(last.get("value", last.get("open_s")))
        if not last.get("ok"):
            row["errors"][t] = last.get("error")
            log(f"  {system['id']:24} {t} FAILED: {str(last.get('error'))[:300]}")
            continue
        values.sort()
        if t == "open":
            row["open_s"] = last["open_s"]
            row["first_read_s"] = last["first_read_s"]
            row["import_s"] = last["import_s"]
            row["rss_after_imports_mb"] = last["rss_start_mb"]
        else:
            row[t] = values[len(values) // 2]
            if last.get("capped"):
                row[t + "_capped"] = last["count"]
        if t == "random":
            row["peak_rss_random_mb"] = last["peak_rss_mb"]
        peaks.append(max(last["peak_rss_mb"], last.get("peak_rss_children_mb", 0)))
    row["peak_rss_mb"] = max(peaks) if peaks else None
    extras = [str(path) + ".gen-cache"]
    if system["adapter"] == "litdata":
        extras.append(str(Path.home() / ".lightning" / "chunks"))
    row["bytes_after"] = dir_size(path, *extras)
    log(f"  {system['id']:24} write {row.get('write', 0):>9,.0f}/s  {row['bytes'] / 1e6:6.1f} MB  "
        f"open {row.get('open_s', float('nan')) * 1e3:6.1f} ms  random {row.get('random', 0):>9,.0f}/s  "
        f"batched {row.get('batched', 0):>9,.0f}/s  seq {row.get('seq', 0):>9,.0f}/s  "
        f"iter {row.get('iter', 0):>9,.0f}/s  loader {row.get('loader_random', 0):>8,.0f}/s"
        + (f"  loader(block) {row['loader_block']:>8,.0f}/s" if "loader_block" in row else "")
        + (f"  loader(native) {row['loader_native']:>8,.0f}/s" if "loader_native" in row else ""))
    if not args.keep:
        shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(str(path) + ".gen-cache", ignore_errors=True)
    return row


def limits(wname: str, wl: dict[str, Any], blocks: tuple[int, ...], args: argparse.Namespace,
           log: Any) -> dict[str, Any]:
    """Physical limits on this project's own blocks: written here (v1 zstd, v2 zstd/lz4/none), measured in a worker."""
    out = {}
    for b in blocks:
        layouts = {}
        for sysid, params in (("v1", {"version": 1, "codec": "zstd", "block": b}),
                              # framing block: the limit is "read, decode the block, unpickle one" (the
                              # default with zstd is framing grouped since 0.3.0, whose frames it cannot time)
                              ("zstd", {"version": 2, "codec": "zstd", "block": b, "framing": "block"}),
                              ("lz4", {"version": 2, "codec": "lz4", "block": b}),
                              ("none", {"version": 2, "codec": "none", "block": b})):
            path = DATA / f"{wname}-{wl['n']}" / f"limits-{sysid}-b{b}"
            shutil.rmtree(path, ignore_errors=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            res = run_worker("atlas", {"adapter": "atlas", "params": params, "workload": wname, "path": str(path),
                                       "n": wl["n"], "task": "write", "examples": wl["examples"]}, args.timeout)
            if not res.get("ok"):
                log(f"  limits write {sysid} b{b} FAILED: {res.get('error')}")
            layouts[sysid] = str(path)
        res = run_worker("atlas", {"adapter": "atlas", "workload": wname, "path": "", "n": wl["n"],
                                   "task": "limits", "layouts": layouts}, args.timeout)
        if res.get("ok"):
            out[str(b)] = res["limits"]
            lim = res["limits"]
            log(f"  limits {wname} block {b}: " + ", ".join(f"{k} {v:.2f}" for k, v in lim.items()))
        else:
            out[str(b)] = {"error": res.get("error")}
            log(f"  limits {wname} block {b} FAILED: {res.get('error')}")
        for p in layouts.values():
            shutil.rmtree(p, ignore_errors=True)
    return out


def machine() -> dict[str, Any]:
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / 1024 / 1024:.0f} GB RAM"
    except OSError:
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "memory": mem, "os": f"{platform.system()} {platform.release()}",
            "python": sys.version.split()[0]}


def versions(groups: list[str], timeout: float) -> dict[str, dict[str, str]]:
    out = {}
    adapters = {"atlas": "atlas", "hf": "hf", "mds": "mds", "litdata": "litdata", "lance": "lance",
                "arrayrecord": "arrayrecord"}
    for g in groups:
        res = run_worker(g, {"adapter": adapters[g], "workload": "text", "path": "", "n": 0, "task": "versions"},
                         timeout)
        v = dict(res.get("versions", {})) if res.get("ok") else {"error": str(res.get("error"))[:200]}
        freeze = VENVS / g / "versions.txt"
        if freeze.exists():
            for line in freeze.read_text().splitlines():
                if line.lower().startswith(("torch==", "numpy==")):
                    k, _, val = line.partition("==")
                    v[k.lower()] = val
        out[g] = v
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20k text, 5k images, 5k random indices")
    parser.add_argument("--blocks", default=None, help="v2 block sizes, comma separated (default 8,64; full: 8,64,256)")
    parser.add_argument("--only", default=None, help="comma separated system ids or prefixes (e.g. atlas-v2,hf)")
    parser.add_argument("--workloads", default="text,image")
    parser.add_argument("--repeat", type=int, default=1, help="fresh processes per measurement (median)")
    parser.add_argument("--repeat-random", type=int, default=3,
                        help="fresh processes for random and batched reads (median; they decide most targets)")
    parser.add_argument("--repeat-seq", type=int, default=3,
                        help="fresh processes for in-order ds[i] and iteration (median; the sequential targets)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per measurement process")
    parser.add_argument("--time-cap", type=float, default=None, help="seconds per sequential/iteration pass")
    parser.add_argument("--keep", action="store_true", help="keep the written datasets")
    parser.add_argument("--json", default=str(HERE / "results.json"))
    parser.add_argument("--md", default=str(ROOT / "benchmarks" / "RESULTS-peers.md"))
    parser.add_argument("--chart", default=str(HERE / "chart.png"))
    args = parser.parse_args()
    if args.time_cap:
        os.environ["PEERS_TIME_CAP"] = str(args.time_cap)
    n_text, n_img, n_rand = (20_000, 5_000, 5_000) if args.quick else (100_000, 20_000, 20_000)
    blocks = tuple(int(b) for b in args.blocks.split(",")) if args.blocks else ((8, 64) if args.quick else
                                                                                  (8, 64, 256))
    core = atlas_systems(tuple(b for b in blocks if b in (8, 64)))
    systems = core + PEERS + [s for s in atlas_systems(blocks) if s not in core]  # block 256 last
    if args.only:
        keys = args.only.split(",")
        systems = [s for s in systems if any(s["id"].startswith(k) for k in keys)]
    started = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - started:7.1f}s] {msg}", flush=True)

    load_start = os.getloadavg()[0]
    log(f"workloads: text {n_text}, image {n_img}, random indices {n_rand}; systems: {[s['id'] for s in systems]}")
    wls = make_workloads(n_text, n_img, n_rand)
    groups = sorted({s["group"] for s in systems} | {"atlas"})
    vers = versions(groups, args.timeout)
    log(f"versions: {vers}")
    rows: list[dict[str, Any]] = []
    lims: dict[str, Any] = {}

    def save(final: bool) -> None:
        result = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "quick" if args.quick else "full", "command": " ".join(sys.argv[1:]),
        "machine": machine(), "load_avg_start": load_start, "load_avg_end": os.getloadavg()[0],
        "elapsed_s": time.time() - started, "workloads": {k: {"n": v["n"], "pickled_bytes": v["pickled_bytes"]}
                                                        for k, v in wls.items()},
        "n_random": n_rand, "batch": 256, "time_cap_s": float(os.environ.get("PEERS_TIME_CAP", "15")),
        "repeat": args.repeat, "repeat_random": max(args.repeat, args.repeat_random),
        "repeat_seq": max(args.repeat, args.repeat_seq), "versions": vers,
        "caching": CACHING, "limits": lims, "rows": rows,
        "complete": final,
        }
        Path(args.json).write_text(json.dumps(result, indent=1))
        if final:
            from report import chart, render

            Path(args.md).write_text(render(result), encoding="utf-8")
            chart(result, args.chart)
            log(f"wrote {args.json}, {args.md}, {args.chart}")

    for wname in args.workloads.split(","):
        wl = wls[wname]
        log(f"== {wname}: {wl['n']} examples, {wl['pickled_bytes'] / 1e6:.1f} MB pickled")
        lims[wname] = limits(wname, wl, tuple(sorted({64, *blocks})), args, log)
        for system in systems:
            rows.append(measure(system, wname, wl, args, log))
            save(False)
    save(True)


if __name__ == "__main__":
    main()
