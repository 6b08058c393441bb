"""The feeds' CUDA discipline (on CPU, through fakes), the host feed's sampling workers, the
per-interval ``--dataset_device auto`` and the GPU memory claims of jobs sharing a GPU
(issue 29, items 3, 5 and 6)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dataset_utils import Batch, DatasetError, DatasetReader, DatasetWriter
from helpers_dataset import assert_bits_equal, flatten, make_stream, write_steps, writer_kwargs

from blendrl.datasets import claims as claims_module
from blendrl.datasets import cuda_sync, device_pool
from blendrl.datasets import feed as feed_module
from blendrl.datasets.claims import DeviceClaims, headroom_bytes
from blendrl.datasets.cuda_sync import CudaSync
from blendrl.datasets.device_pool import DevicePool, device_bytes_needed
from blendrl.datasets.feed import AutoFeed, DirectFeed, PrefetchFeed

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
GIB = 1 << 30


def _dataset(tmp_path: Path, kind: str = "tinyframes", n: int = 3, t: int = 60, chunk: int = 25):
    steps = make_stream(kind, n, t, seed=29, glitch=0.05, life_lost=True)
    d = tmp_path / f"feed_{kind}"
    with DatasetWriter(d, chunk_size=chunk, **writer_kwargs(kind, n)) as w:
        write_steps(w, steps)
    return d, flatten(steps)


def _assert_batch(tb: Batch, exp: dict, rows: np.ndarray) -> None:
    for k, name in (("logic", "logic_state"), ("neural", "neural_state"), ("next_logic", "next_logic_state"),
                    ("next_neural", "next_neural_state")):
        assert_bits_equal(getattr(tb, name).cpu().numpy(), exp[k][rows], name)
    assert tb.action.dtype == torch.int64 and tb.action.tolist() == exp["action"][rows].tolist()
    for k in ("reward", "terminated", "truncated", "life_lost"):
        got = getattr(tb, k)
        assert got.dtype == torch.float32, k
        assert got.tolist() == exp[k][rows].astype(np.float32).tolist(), k


def _clone(b: Batch) -> Batch:
    return Batch(*(x.clone() for x in b))


def _run_feed(feed, rng, limits=(30, 75, 140), per=7) -> tuple[list[Batch], list]:
    got, states = [], []
    for limit in limits:
        feed.set_limit(limit)
        for _ in range(per):
            got.append(_clone(feed.next()))
            states.append(rng.bit_generator.state)
    feed.close()
    return got, states


def _expected_positions(d: Path, seed: int, limits=(30, 75, 140), per=7, batch=16) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    r = DatasetReader(d)
    out = []
    for limit in limits:
        r.extend(limit)
        out += [r.draw(batch, rng) for _ in range(per)]
    return out


# --------------------------------------------------------------------------- item 3: one device


class FakeCuda:
    """Stands for ``torch.cuda``'s stream, event and device guard; logs every call with the
    device current in the calling thread."""

    def __init__(self):
        self.log: list[tuple] = []
        self.local = threading.local()
        self.streams: dict[str, object] = {}
        self.events: list[FakeEvent] = []
        self.lock = threading.Lock()

    def current(self):
        return getattr(self.local, "device", None)

    @contextlib.contextmanager
    def guard(self, device):
        previous = self.current()
        self.local.device = torch.device(device)
        with self.lock:
            self.log.append(("guard", torch.device(device)))
        try:
            yield
        finally:
            self.local.device = previous

    def stream_of(self, device):
        with self.lock:
            self.log.append(("stream_of", torch.device(device)))
            return self.streams.setdefault(str(torch.device(device)), object())

    def new_event(self):
        ev = FakeEvent(self)
        with self.lock:
            self.events.append(ev)
        return ev

    def sync(self, device) -> CudaSync:
        return CudaSync(torch.device(device), stream_of=self.stream_of, new_event=self.new_event, guard=self.guard)


class FakeEvent:
    def __init__(self, cuda: FakeCuda):
        self.cuda = cuda
        self.created_under = cuda.current()
        self.recorded: list[tuple] = []
        self.waited_under: list = []

    def record(self, stream=None):
        self.recorded.append((stream, self.cuda.current()))

    def synchronize(self):
        self.waited_under.append(self.cuda.current())

    @property
    def done(self) -> bool:
        return bool(self.waited_under)


def _only_device(fake: FakeCuda, device: torch.device) -> None:
    assert fake.log and {d for _, d in fake.log} == {device}, set(fake.log)
    stream = fake.streams[str(device)]
    for ev in fake.events:
        assert ev.created_under == device
        assert ev.recorded == [(stream, device)]  # on the target device's stream, under it
        assert all(w == device for w in ev.waited_under)


def test_host_feed_records_and_waits_on_the_training_devices_stream_only(tmp_path):
    """``--device cuda:1``: each copy's event is created under cuda:1 and recorded on cuda:1's
    stream (not the current device's, GPU 0), waited for under cuda:1 by the workers, and no
    buffer is gathered into again before the event of the copy out of it was waited for."""
    d, exp = _dataset(tmp_path)
    fake = FakeCuda()
    dev1 = torch.device("cuda", 1)
    reader = DatasetReader(d, limit=30)
    rng = np.random.default_rng(5)
    feed = PrefetchFeed(reader, CPU, 16, rng, workers=2, depth=3, sync=fake.sync(dev1))
    real_sample = reader.sample
    refills = []

    def checked(batch_size, rng, out):
        slot = next(s for s in feed._slots if s.host.logic_state is out.logic_state)
        refills.append(slot.event)
        assert slot.event is None or slot.event.done, "a buffer refilled before its copy was done"
        return real_sample(batch_size, rng, out=out)

    reader.sample = checked
    got, _ = _run_feed(feed, rng, limits=(30, 140), per=10)
    for b, rows in zip(got, _expected_positions(d, 5, limits=(30, 140), per=10)):
        _assert_batch(b, exp, rows)
    assert len(fake.events) == 20  # one per batch handed out
    assert sum(e is not None for e in refills) >= 20 - 2 * 3  # buffers were reused, after waiting
    _only_device(fake, dev1)


def test_device_pool_positions_ring_records_on_the_training_devices_stream(tmp_path):
    d, exp = _dataset(tmp_path)
    fake = FakeCuda()
    dev1 = torch.device("cuda", 1)
    rng = np.random.default_rng(6)
    pool = DevicePool(DatasetReader(d, limit=30), CPU, 16, rng, capacity=140, sync=fake.sync(dev1))
    got, _ = _run_feed(pool, rng, limits=(30, 140), per=10)
    for b, rows in zip(got, _expected_positions(d, 6, limits=(30, 140), per=10)):
        _assert_batch(b, exp, rows)
    assert len(fake.events) == 20
    assert sum(e.done for e in fake.events) == 20 - 8  # a ring of 8: each reuse waits first
    _only_device(fake, dev1)


def test_feeds_make_their_sync_for_the_training_device():
    sync = cuda_sync.sync_for(torch.device("cuda", 1))
    assert isinstance(sync, CudaSync) and sync.device == torch.device("cuda", 1)
    assert cuda_sync.sync_for(CPU) is None
    import ast
    calls = [n for module in (feed_module, device_pool, cuda_sync)
             for n in ast.walk(ast.parse(Path(module.__file__).read_text()))
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
    records = [n for n in calls if n.func.attr == "record"]
    assert records and all(n.args for n in records)  # never on whatever stream is current
    assert not [n for n in calls if ast.unparse(n.func).endswith("cuda.Event")]  # only CudaSync.new_event


# --------------------------------------------------------------------------- item 6: workers


def _jittery(reader: DatasetReader, seed: int):
    """``reader.sample`` with random delays: the workers finish out of order."""
    real = reader.sample
    lock = threading.Lock()
    delays = np.random.default_rng(seed)
    threads: set[str] = set()

    def sample(batch_size, rng, out=None):
        with lock:
            pause = float(delays.random()) * 0.004
            threads.add(threading.current_thread().name)
        time.sleep(pause)
        return real(batch_size, rng, out=out)

    reader.sample = sample
    return threads


@pytest.mark.parametrize("kind", ["tinyframes", "classic"])
def test_host_feed_gives_the_same_batches_in_the_same_order_whatever_its_workers(tmp_path, kind):
    d, exp = _dataset(tmp_path, kind)
    want = _expected_positions(d, 5)
    rng = np.random.default_rng(5)
    _, direct_states = _run_feed(DirectFeed(DatasetReader(d, limit=30), CPU, 16, rng), rng)
    for workers in (1, 2, 3, 5):
        rng = np.random.default_rng(5)
        reader = DatasetReader(d, limit=30)
        used = _jittery(reader, workers)
        got, states = _run_feed(PrefetchFeed(reader, CPU, 16, rng, workers=workers, pin=False), rng)
        assert len(got) == len(want)
        for b, rows in zip(got, want):
            _assert_batch(b, exp, rows)
        assert states == direct_states, workers  # the caller's generator: as if it sampled itself
        assert len(used) == workers or workers > 3, (workers, used)  # they all gathered


def test_host_feed_batches_stay_valid_for_one_more_step(tmp_path):
    """On CPU the host buffers are handed out without a copy, valid until the next-but-one
    ``next`` (as the direct feed's), also across a new limit."""
    d, exp = _dataset(tmp_path)
    reader = DatasetReader(d, limit=30)
    _jittery(reader, 1)
    rng = np.random.default_rng(8)
    feed = PrefetchFeed(reader, CPU, 32, rng, workers=3, pin=False)
    want = iter(_expected_positions(d, 8, limits=(30, 140), per=6, batch=32))
    previous = None
    for limit in (30, 140):
        feed.set_limit(limit)
        for _ in range(6):
            batch = feed.next()
            rows = next(want)
            time.sleep(0.01)  # the workers run ahead meanwhile
            _assert_batch(batch, exp, rows)
            if previous is not None:
                _assert_batch(*previous)
            previous = (batch, exp, rows)
    feed.close()


def test_a_workers_error_is_raised_by_its_own_batch(tmp_path):
    d, exp = _dataset(tmp_path)
    reader = DatasetReader(d, limit=140)
    rng = np.random.default_rng(3)
    check = np.random.default_rng(3)
    states = []
    for _ in range(6):
        states.append(check.bit_generator.state)
        reader.draw(16, check)
    real = reader.sample

    def broken(batch_size, g, out=None):
        if g.bit_generator.state == states[4]:
            raise DatasetError("the disk went away")
        time.sleep(0.002)
        return real(batch_size, g, out=out)

    reader.sample = broken
    feed = PrefetchFeed(reader, CPU, 16, rng, workers=3, pin=False)
    feed.set_limit(140)
    want = _expected_positions(d, 3, limits=(140,), per=4)
    for rows in want:
        _assert_batch(feed.next(), exp, rows)
    assert rng.bit_generator.state == states[4]  # four batches consumed
    with pytest.raises(DatasetError, match="the disk went away"):
        feed.next()
    feed.close()


def test_default_feed_workers_follow_the_jobs_cpus(monkeypatch):
    for cpus, want in (("1", 1), ("2", 1), ("4", 3), ("64", 8)):
        monkeypatch.setenv("SLURM_CPUS_PER_TASK", cpus)
        assert feed_module.default_feed_workers() == want
    with pytest.raises(ValueError, match="workers must be >= 1"):
        PrefetchFeed(None, CPU, 4, np.random.default_rng(0), workers=0)


# --------------------------------------------------------------------------- item 5: claims


class Gpu:
    """A fake GPU: free memory = total - used - what claims marked allocated hold."""

    def __init__(self, free: int, total: int, directory: Path, key: str = "gpu-test"):
        self.base_free, self.total, self.path = free, total, directory / f"{key}.json"

    def __call__(self) -> tuple[int, int]:
        try:
            claims = json.loads(self.path.read_text())
        except FileNotFoundError:
            claims = {}
        return self.base_free - sum(c["bytes"] for c in claims.values() if c["allocated"]), self.total


def _jobs(tmp_path: Path, gpu, pids=(101, 102)):
    live = set(pids)
    alive = lambda pid, start: pid in live  # noqa: E731
    return [DeviceClaims("gpu-test", gpu, tmp_path, pid=p, alive=alive) for p in pids], live


def test_two_jobs_cannot_claim_the_same_memory(tmp_path):
    gpu = Gpu(70 * GIB, 80 * GIB, tmp_path)  # 12 GiB headroom a job
    (a, b), live = _jobs(tmp_path, gpu)
    ca, room = a.claim([60 * GIB, 40 * GIB])
    assert ca is not None and ca.index == 1 and ca.bytes == 40 * GIB and room.held == 0
    # A has not allocated yet: its 40 GiB and its 12 GiB headroom count against B
    assert b.claim([10 * GIB])[0] is None
    assert b.claim([6 * GIB])[0] is not None  # 6 + 12 + 52 = 70
    assert b.claim([1])[0] is None and a.claim([1])[0] is None  # nothing left
    ca.allocated()  # now the device shows A's pool; A's headroom still counts
    assert a.room() == (30 * GIB, 80 * GIB, 12 * GIB, 6 * GIB + 12 * GIB + 12 * GIB)
    ca.release()
    assert b.room().held == 6 * GIB + 12 * GIB and b.room().free == 70 * GIB
    live.discard(102)  # B died without releasing: its claim is dropped
    assert a.room().held == 0
    assert json.loads((tmp_path / "gpu-test.json").read_text()) == {}


def test_claims_of_dead_or_reused_pids_are_dropped(tmp_path):
    gpu = Gpu(70 * GIB, 80 * GIB, tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = DeviceClaims("gpu-test", gpu, tmp_path, pid=dead.pid)
    assert gone.claim([30 * GIB])[0] is not None
    me = DeviceClaims("gpu-test", gpu, tmp_path)
    assert me.room().held == 0  # the dead pid's claim went
    reused = DeviceClaims("gpu-test", gpu, tmp_path, pid=os.getppid())
    assert reused.claim([30 * GIB])[0] is not None
    assert me.room().held == 30 * GIB + 12 * GIB  # the parent is alive: its claim counts
    data = json.loads(me.path.read_text())
    for c in data.values():
        c["start"] = "1"  # as if the pid had been reused by a process started later
    me.path.write_text(json.dumps(data))
    assert me.room().held == 0


_RACER = """
import sys, time
from pathlib import Path
from blendrl.datasets.claims import DeviceClaims
directory, go = Path(sys.argv[1]), Path(sys.argv[2])
claims = DeviceClaims("gpu-race", lambda: (70 << 30, 80 << 30), directory)
while not go.exists():
    time.sleep(0.001)
claim, room = claims.claim([40 << 30])
print("granted" if claim is not None else "refused", flush=True)
while not (directory / "done").exists():
    time.sleep(0.01)
"""


def test_jobs_started_together_do_not_both_get_the_memory(tmp_path):
    """Two processes claim 40 GiB of a 70 GiB-free GPU at the same moment: one gets it."""
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(tmp_path), str(go)], env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    time.sleep(3.0)  # both imported and waiting
    go.touch()
    try:
        lines = [p.stdout.readline().strip() for p in procs]
    finally:
        (tmp_path / "done").touch()
        for p in procs:
            p.wait(timeout=60)
    assert sorted(lines) == ["granted", "refused"]


def test_claims_without_a_usable_folder_decide_from_the_free_memory(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    claims = DeviceClaims("gpu-test", lambda: (70 * GIB, 80 * GIB), blocker / "sub")
    assert claims.claim([60 * GIB])[0] is None
    claim, room = claims.claim([50 * GIB])
    assert claim is not None and room.held == 0
    claim.allocated()
    claim.release()
    assert capsys.readouterr().err.count("warning: GPU memory claims unavailable") == 1


# --------------------------------------------------------------------------- item 5: auto


def _auto(d: Path, tmp_path: Path, gpu, rng, pid=None, limits=(30, 75, 140), said=None):
    claims = DeviceClaims("gpu-test", gpu, tmp_path / "claims", pid=pid,
                          alive=lambda p, s: True)
    return AutoFeed(DatasetReader(d, limit=limits[0]), CPU, 16, rng, limits, 2, claims,
                    say=(said.append if said is not None else None))


def test_auto_keeps_the_prefix_on_the_device_while_it_fits_then_samples_on_the_host(tmp_path):
    d, exp = _dataset(tmp_path)
    m = DatasetReader(d).manifest
    total = 8 * GIB
    free = headroom_bytes(total) + device_bytes_needed(m, 75) + 1  # 75 fits, 140 does not
    (tmp_path / "claims").mkdir()
    gpu = Gpu(free, total, tmp_path / "claims")
    rng = np.random.default_rng(5)
    said: list[str] = []
    feed = _auto(d, tmp_path, gpu, rng, said=said)
    got, states = _run_feed(feed, rng)
    assert feed.history == [(30, "pool"), (75, "pool"), (140, "host")]
    assert "device pool of" in said[0] and "sampled on the host by 2 worker(s)" in said[1]
    assert "claimed" not in said[1] and "the prefix needs" in said[1]
    for b, rows in zip(got, _expected_positions(d, 5)):
        _assert_batch(b, exp, rows)
    rng2 = np.random.default_rng(5)
    _, direct = _run_feed(DirectFeed(DatasetReader(d, limit=30), CPU, 16, rng2), rng2)
    assert states == direct
    assert json.loads((tmp_path / "claims" / "gpu-test.json").read_text()) == {}  # given back


def test_auto_goes_back_to_the_device_when_memory_frees_up(tmp_path):
    d, exp = _dataset(tmp_path)
    m = DatasetReader(d).manifest
    total = 8 * GIB
    room = {"free": headroom_bytes(total)}  # nothing fits at first
    gpu = lambda: (room["free"], total)  # noqa: E731
    rng = np.random.default_rng(7)
    feed = _auto(d, tmp_path, gpu, rng)
    got = []
    for limit in (30, 75, 140):
        feed.set_limit(limit)
        for _ in range(7):
            got.append(_clone(feed.next()))
        room["free"] = headroom_bytes(total) + device_bytes_needed(m, 140)
    feed.close()
    assert feed.history == [(30, "host"), (75, "pool"), (140, "pool")]
    for b, rows in zip(got, _expected_positions(d, 7)):
        _assert_batch(b, exp, rows)


def test_auto_jobs_sharing_a_gpu_count_each_others_claims(tmp_path):
    d, exp = _dataset(tmp_path)
    m = DatasetReader(d).manifest
    total = 8 * GIB
    keep = headroom_bytes(total)
    (tmp_path / "claims").mkdir()
    # room for one job's pool of everything and its headroom, and another's headroom only
    assert device_bytes_needed(m, 30) > 1
    gpu = Gpu(keep + device_bytes_needed(m, 140) + keep + 1, total, tmp_path / "claims")
    said_a, said_b = [], []
    a = _auto(d, tmp_path, gpu, np.random.default_rng(1), pid=os.getpid(), said=said_a)
    b = _auto(d, tmp_path, gpu, np.random.default_rng(1), pid=os.getppid(), said=said_b)
    a.set_limit(30)
    b.set_limit(30)
    assert a.history == [(30, "pool")] and b.history[-1] == (30, "host")
    assert "claimed by other jobs on this GPU" in said_b[0]
    a.close()
    b.set_limit(75)  # A is gone: B takes the device
    assert b.history[-1] == (75, "pool")
    b.close()


# --------------------------------------------------------------------------- the offline run


def test_feed_workers_zero_is_one_line_and_exit_2(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "train_iql.py"), "--dataset", str(tmp_path),
                          "--runs_dir", str(tmp_path / "runs"), "--feed_workers", "0"],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().count("\n") == 0 and "--feed_workers must be in [1, inf), got 0" in res.stderr
    assert not (tmp_path / "runs").exists()


def test_feed_workers_is_resume_free():
    import typing
    from blendrl.offline import OfflineArgs
    from blendrl.checkpoints import RESUME_FREE
    hint = typing.get_type_hints(OfflineArgs, include_extras=True)["feed_workers"]
    assert any(m is RESUME_FREE for m in hint.__metadata__)
    assert OfflineArgs.feed_workers is None


def test_forced_cuda_claims_before_any_work_and_counts_other_jobs(tmp_path, monkeypatch):
    """``--dataset_device cuda`` (CUDA faked): the prefix's memory is claimed up front, a GPU
    whose free memory other jobs claimed is refused (one line, naming them), and the claim is
    given back by the placement."""
    from blendrl.offline import OfflineArgs, choose_dataset_device
    from blendrl.exits import UsageError
    d, _ = _dataset(tmp_path)
    m = DatasetReader(d).manifest
    need = device_bytes_needed(m, 140)
    total = 16 * GIB
    claims_dir = tmp_path / "claims"
    monkeypatch.setenv(claims_module.CLAIMS_DIR_ENV, str(claims_dir))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(claims_module, "gpu_key", lambda device: "gpu-test")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (4 * GIB + need + 10, total))

    class Info:
        manifest = m

    args = OfflineArgs(dataset=d, dataset_device="cuda")
    cuda = torch.device("cuda", 0)
    placement = choose_dataset_device(args, cuda, Info, [30, 140])
    assert placement.where == "cuda" and placement.claim.bytes == need
    assert len(json.loads((claims_dir / "gpu-test.json").read_text())) == 1
    other = DeviceClaims("gpu-test", lambda: (4 * GIB + need + 10, total), claims_dir, pid=os.getppid())
    assert other.claim([1])[0] is None  # the memory is taken
    placement.release()
    placement.release()
    assert json.loads((claims_dir / "gpu-test.json").read_text()) == {}
    theirs, _ = other.claim([need])  # another job took it first: this one is refused, saying why
    assert theirs is not None
    with pytest.raises(UsageError) as e:
        choose_dataset_device(args, cuda, Info, [30, 140])
    assert "\n" not in str(e.value) and "claimed by other jobs on this GPU" in str(e.value)
    assert str(e.value).startswith("--dataset_device cuda: the dataset prefix needs")
    theirs.release()
    auto = choose_dataset_device(OfflineArgs(dataset=d), cuda, Info, [30, 140])
    assert auto.where == "auto" and auto.claim is None and auto.claims.key == "gpu-test"
    assert choose_dataset_device(OfflineArgs(dataset=d, dataset_device="cpu"), cuda, Info, [140]).where == "cpu"


def _cartpole_dataset(path: Path, marks: list[int], steps: int, chunk_size: int) -> Path:
    """A cartpole-shaped dataset (2 envs, finite states) with evaluation marks."""
    from helpers_dataset import cartpole_offline_dataset
    return cartpole_offline_dataset(path, marks, steps, chunk_size)


def _tensors(obj) -> list:
    """The tensors of a (nested) state dict as lists, in order."""
    if isinstance(obj, torch.Tensor):
        return [obj.tolist()]
    if isinstance(obj, dict):
        return [x for k in obj for x in _tensors(obj[k])]
    if isinstance(obj, (list, tuple)):
        return [x for v in obj for x in _tensors(v)]
    return [obj]


def test_an_offline_run_trains_the_same_whatever_feed_serves_it(tmp_path, monkeypatch):
    """The whole run (losses logged, returns, the checkpointed sampler) is the same with the direct
    feed, the host feed with 3 workers, and auto switching from a device pool to the host feed
    between intervals (on CPU: the pool on device='cpu', the GPU's free memory faked)."""
    from blendrl.offline import OfflineArgs, run_offline
    from blendrl.checkpoints import load_checkpoint
    from blendrl.file_io import load_training_log
    from blendrl.run_dir import RunDir
    data = _cartpole_dataset(tmp_path / "ds", [40, 80, 120], steps=60, chunk_size=30)
    m = DatasetReader(data).manifest
    real = feed_module.make_feed
    kinds: list[list] = []

    def host(reader, device, where, batch_size, rng, capacity, **kw):
        return PrefetchFeed(reader, device, batch_size, rng, workers=3, pin=False)

    def auto(reader, device, where, batch_size, rng, capacity, limits=None, **kw):
        total = 8 * GIB
        claims = DeviceClaims("gpu-test", lambda: (headroom_bytes(total) + device_bytes_needed(m, 80), total),
                              tmp_path / "claims")
        f = AutoFeed(reader, device, batch_size, rng, limits, 2, claims)
        kinds.append(f.history)
        return f

    outcomes = {}
    threads = torch.get_num_threads()
    try:
        for name, make in (("direct", real), ("host", host), ("auto", auto)):
            monkeypatch.setattr(feed_module, "make_feed", make)
            args = OfflineArgs(dataset=data, run_id=name, runs_dir=tmp_path / "runs", epochs=2, batch_size=16,
                               eval_episodes=1, eval_envs=1, threads=1, device="cpu", hidden=8,
                               critic_hidden=8, log_every=3, progress_seconds=1e9)
            assert run_offline(args, "iql") == 0
            run = tmp_path / "runs" / name
            log = load_training_log(run / "training_log.pkl")["updates"]
            results = json.loads((run / "results.json").read_text())
            ckpt = load_checkpoint(RunDir(tmp_path / "runs", name).latest_checkpoint, map_location="cpu")
            outcomes[name] = (log, [(r["data_limit"], r["grad_steps"], r["mean_return"]) for r in results],
                              ckpt["sampler"], _tensors(ckpt["trainer"]))
    finally:
        torch.set_num_threads(threads)
    assert kinds == [[(40, "pool"), (80, "pool"), (120, "host")]]
    assert len(outcomes["direct"][0]) > 5 and len(outcomes["direct"][3]) > 10
    assert outcomes["host"] == outcomes["direct"]
    assert outcomes["auto"] == outcomes["direct"]
