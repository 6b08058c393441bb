#!/usr/bin/env python
"""Benchmark (not a test) of the Minari export (``dataset_utils.py export-minari``,
``blendrl/interop/minari_export.py``): wall time and private memory at two dataset sizes.

    .venv/bin/python bench/bench_minari_export.py                       # 50k and 200k transitions
    .venv/bin/python bench/bench_minari_export.py --sizes 20000 --directory /big/disk/tmp

For each size an Atari-shaped dataset (8 copies, 4x84x84 uint8 stacks, logic [40, 6], episode
ends, lost lives: ``bench/bench_dataset.py``'s ``atari_stream``) is written by ``DatasetWriter``,
then exported in a fresh process, which reports its wall time and its private (anonymous)
resident memory: after the imports, and the peak during the export (``RssAnon`` sampled every
10 ms; the state pools are memory-mapped page cache, not private). The memory is flat in the
dataset's size when the peaks of the two sizes are alike. Minari stores the stacks raw (no JPEG,
no compression): about 28 KB a transition on disk, so 200k transitions need ~6 GB free there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from blendrl.cli_parse import cli  # noqa: E402


@dataclass
class Args:
    """Benchmark of the Minari export: wall time and private memory at several dataset sizes."""

    sizes: list[int] = field(default_factory=lambda: [50_000, 200_000])
    """transitions of each Atari-shaped dataset exported (the memory goal is stated for 200000)"""
    num_envs: int = 8
    """parallel environment copies of the synthetic stream"""
    episode_length: int = 200
    """mean episode length of the synthetic stream"""
    chunk_size: int = 50_000
    """DatasetWriter chunk_size (the online scripts' default)"""
    directory: Path | None = None
    """where to write the datasets and Minari's folder (default: a temporary folder, removed)"""
    json_out: Path | None = None
    """also write the figures to this JSON file"""
    probe: str | None = None
    """internal: export the dataset described by this JSON in this (fresh) process"""


def _bench_dataset():
    """``bench/bench_dataset.py`` as a module (its stream and memory helpers)."""
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_dataset

    return bench_dataset


def write_source(directory: Path, n: int, args: Args) -> float:
    """An Atari-shaped dataset of about ``n`` transitions (whole steps); returns its MB on disk."""
    from dataset_utils import DatasetWriter

    bd = _bench_dataset()
    meta = {"method": "ppo", "run_id": directory.name, "seed": 0}
    with DatasetWriter(directory, env="kangaroo", num_envs=args.num_envs, logic_shape=(40, 6),
                       neural_shape=(4, 84, 84), neural_dtype="uint8", n_actions=18,
                       chunk_size=args.chunk_size, metadata=meta) as w:
        for step in bd.atari_stream(max(1, n // args.num_envs), args.num_envs, args.episode_length, 0):
            w.add(*step)
        w.finish()
    return sum(p.stat().st_size for p in directory.iterdir()) / 1e6


def probe(job: dict) -> dict:
    """In a fresh process: export ``job["source"]`` as ``job["dataset_id"]``, sampling RssAnon."""
    os.environ["MINARI_DATASETS_PATH"] = job["minari"]
    from blendrl.interop.minari_export import export_minari

    mem = _bench_dataset()._memory
    base = mem()
    peak = [base["RssAnon"]]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], mem()["RssAnon"])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    summary = export_minari(job["source"], job["dataset_id"])
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    end = mem()
    return {**summary, "wall_seconds": wall, "rss_anon_after_imports_mb": base["RssAnon"] / 1e6,
            "rss_anon_peak_mb": max(peak[0], end["RssAnon"]) / 1e6, "vm_hwm_mb": end["VmHWM"] / 1e6}


def bench_size(root: Path, n: int, args: Args) -> dict:
    """Write, export (in a fresh process), measure and remove one size's datasets."""
    source, minari_home = root / f"src_{n}", root / "minari"
    source_mb = write_source(source, n, args)
    job = {"source": str(source), "dataset_id": f"bench/atari-{n}-v0", "minari": str(minari_home)}
    out = subprocess.run([sys.executable, __file__, "--probe", json.dumps(job)], check=True,
                         capture_output=True, text=True, cwd=ROOT)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    minari_mb = sum(p.stat().st_size for p in minari_home.rglob("*") if p.is_file()) / 1e6
    shutil.rmtree(source, ignore_errors=True)
    shutil.rmtree(minari_home, ignore_errors=True)
    return {"transitions": figures["steps"], "episodes": figures["episodes"],
            "source_mb": round(source_mb, 1), "minari_mb": round(minari_mb, 1),
            "wall_seconds": round(figures["wall_seconds"], 2),
            "transitions_per_s": round(figures["steps"] / figures["wall_seconds"]),
            "rss_anon_after_imports_mb": round(figures["rss_anon_after_imports_mb"], 1),
            "rss_anon_peak_mb": round(figures["rss_anon_peak_mb"], 1),
            "vm_hwm_mb (incl. page cache of the mapped pools)": round(figures["vm_hwm_mb"], 1)}


def main(args: Args) -> None:
    if args.probe is not None:
        print(json.dumps(probe(json.loads(args.probe))))
        return
    if not args.sizes or min(args.sizes) < args.num_envs or args.num_envs < 1:
        print("error: --sizes must each be at least --num-envs (>= 1)", file=sys.stderr)
        sys.exit(2)
    tmp = args.directory is None
    root = Path(tempfile.mkdtemp(prefix="bench_minari_")) if tmp else args.directory
    root.mkdir(parents=True, exist_ok=True)
    results = {}
    try:
        for n in args.sizes:
            results[str(n)] = bench_size(root, n, args)
            print(f"[{n} transitions]")
            for k, v in results[str(n)].items():
                print(f"  {k:52s} {v}")
    finally:
        if tmp:
            shutil.rmtree(root, ignore_errors=True)
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(cli(Args))
