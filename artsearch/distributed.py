"""Indexing on a Ray cluster (`artsearch index --engine ray`): Ray Data decodes and embeds in
a pool of extractor actors; this process plans the run and writes SQLite and FAISS.

The driver does what a local run does — scan, compare with the index, decide what to embed —
and hands the list of files to a Ray Data pipeline: `map_batches` with a callable class,
whose instances (actors, on CPUs or GPUs) each load the backbone once and turn a batch of
paths into vectors, sizes, content hashes and one-line reasons for bad files. The batches
stream back to the driver, which records each in one SQLite transaction as a local run does.
So the guarantees are the local run's: a killed actor's batch is retried by Ray (the actor is
restarted), a killed driver loses only the batches in flight and the next run resumes from
what was committed, nothing is embedded twice. Ray does the scheduling, retries and data
movement; artsearch has no cluster code of its own. The workers read the files by the paths
the driver gives, so on a multi-machine cluster the collection must be on a shared path.

Large IVF-PQ indexes can also encode their shards in Ray tasks (`ray_shard_runner`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from artsearch.errors import ArtsearchError

if TYPE_CHECKING:
    from artsearch.backbones import BackboneSpec
    from artsearch.extract import EmbeddedBatch, Extractor

__all__ = ["RayExtractor", "RayOptions", "ray_shard_runner", "require_ray"]

INSTALL = "pip install 'artsearch[ray]'"


@dataclass
class RayOptions:
    """Where and how wide: `address` None starts a local cluster for the run; "auto" joins
    the one `ray start --head` made on this machine; HOST:PORT joins another."""

    address: str | None = None
    actors: int | None = None  # None: the cluster's CPUs (or GPUs) / one actor's share
    gpus_per_actor: float = 0.0
    cpus_per_actor: float = 1.0
    # torch threads per actor. An actor alternates decoding (one thread) and inference, so
    # two threads per CPU it holds keep the cores busy: 2 actors on the 2-core dev machine
    # embedded the dev set at 55-59 images/s with 2 threads each, 45 with 1, 56 with 3.
    threads: int | None = None


def require_ray() -> None:
    """Refuse `--engine ray` before any work when Ray is not installed."""
    _ray()


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ArtsearchError(f"--engine ray needs Ray: {INSTALL}") from None
    return ray


def connect(address: str | None, cpus: int | None = None) -> bool:
    """Join (or start) a cluster; returns whether this call started it (and must stop it)."""
    ray = _ray()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": "ERROR",
                              "include_dashboard": False}
    try:
        if address is None:
            ray.init(num_cpus=cpus or os.cpu_count() or 1, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except ConnectionError as e:
        raise ArtsearchError(f"--address {address}: no Ray cluster there ({e}); start one "
                             "with `ray start --head`, or leave --address out to start a "
                             "local one for this run") from e
    return True


class _EmbedActor:
    """One extractor in a Ray actor: paths in, vectors and what was read out."""

    def __init__(self, spec: BackboneSpec, layers: tuple[str, ...], pooling: str,
                 params: dict[str, np.ndarray], device: str, precision: str,
                 max_pixels: int, max_bytes: int, threads: int) -> None:
        import torch

        from artsearch.extract import Extractor

        torch.set_num_threads(max(1, threads))  # this actor's share of the machine
        self.extractor = Extractor(spec, layer=layers, pooling=pooling, params=params,
                                   device=device, precision=precision,  # type: ignore[arg-type]
                                   num_workers=0, max_pixels=max_pixels, max_bytes=max_bytes)
        self.extractor.spec.weights.verified_path()
        _ = self.extractor.model

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = [Path(p) for p in batch["path"]]
        n, dims = len(paths), self.extractor.dims
        out = {"i": batch["i"], "ok": np.zeros(n, bool),
               "vector": np.zeros((n, dims), np.float32), "width": np.zeros(n, np.int64),
               "height": np.zeros(n, np.int64), "sha256": np.array([""] * n, object),
               "size": np.zeros(n, np.int64), "mtime": np.zeros(n, np.float64),
               "reason": np.array([""] * n, object)}
        for got in self.extractor.iter_files(paths):  # one batch: num_workers=0, in-actor
            rows = np.array(got.indices, np.int64)
            if len(rows):
                out["ok"][rows] = True
                out["vector"][rows] = got.vectors
                out["width"][rows] = [w for w, _ in got.sizes]
                out["height"][rows] = [h for _, h in got.sizes]
                out["sha256"][rows] = [r.sha256 for r in got.reads]
                out["size"][rows] = [r.size for r in got.reads]
                out["mtime"][rows] = [r.mtime for r in got.reads]
            for j, reason in got.failures:
                out["reason"][j] = reason
        return out


class RayExtractor:
    """What `indexer._embed` needs of an extractor, with the embedding done by Ray actors.

    A fitted pooling's centre is learnt here, on the driver, from the same sample a local run
    would use; the actors get the fitted parameters.
    """

    def __init__(self, local: Extractor, options: RayOptions) -> None:
        self.local = local
        self.options = options
        self.pool = local.pool
        self.started = False
        self.actors = 0

    @property
    def params(self) -> dict[str, np.ndarray]:
        return self.local.params

    @params.setter
    def params(self, value: dict[str, np.ndarray]) -> None:
        self.local.params = value

    def fit(self, paths: Sequence[Path]) -> dict[str, np.ndarray]:
        return self.local.fit(paths)

    def describe(self) -> dict[str, Any]:
        return {**self.local.describe(), "engine": "ray",
                "actors": self.actors or self.options.actors or "auto",
                "device": "cuda" if self.options.gpus_per_actor else "cpu",
                "workers": 0}

    def _actors(self, ray: Any) -> int:
        if self.options.actors:
            return self.options.actors
        res = ray.cluster_resources()
        if self.options.gpus_per_actor:
            return max(1, int(res.get("GPU", 0) / self.options.gpus_per_actor))
        return max(1, int(res.get("CPU", 1) / self.options.cpus_per_actor))

    def iter_files(self, paths: Sequence[Path]) -> Iterator[EmbeddedBatch]:
        from artsearch.extract import EmbeddedBatch
        from artsearch.images import FileRead

        if not paths:
            return
        ray = _ray()
        self.local.spec.weights.verified_path()  # a missing file fails here, not in actors
        self.started = connect(self.options.address)
        try:
            import ray.data

            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = False
            ctx.print_on_execution_start = False
            self.actors = self._actors(ray)
            gpu = self.options.gpus_per_actor > 0
            batch = self.local.batch_size
            items = [{"i": i, "path": str(p)} for i, p in enumerate(paths)]
            # Blocks of about one batch, and at least two per actor, so every actor has work.
            blocks = min(len(items), max(2 * self.actors, -(-len(items) // batch)))
            ds = ray.data.from_items(items, override_num_blocks=blocks)
            # Ray Data restarts a killed actor and runs its batches again (its defaults for
            # actor pools: max_restarts=-1, max_task_retries=-1).
            ds = ds.map_batches(
                _EmbedActor, batch_size=batch, batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=self.actors),
                num_gpus=self.options.gpus_per_actor or None,
                num_cpus=self.options.cpus_per_actor,
                fn_constructor_kwargs={
                    "spec": self.local.spec, "layers": self.local.layers,
                    "pooling": self.local.pooling, "params": self.local.params,
                    "device": "cuda" if gpu else "cpu", "precision": self.local.precision,
                    "max_pixels": self.local.max_pixels, "max_bytes": self.local.max_bytes,
                    "threads": self.options.threads
                    or max(2, round(2 * self.options.cpus_per_actor))})
            for out in ds.iter_batches(batch_size=None, batch_format="numpy",
                                       prefetch_batches=2):
                ok = np.flatnonzero(out["ok"])
                yield EmbeddedBatch(
                    indices=[int(i) for i in out["i"][ok]],
                    vectors=np.ascontiguousarray(out["vector"][ok], np.float32),
                    sizes=[(int(w), int(h)) for w, h in zip(out["width"][ok],
                                                            out["height"][ok], strict=True)],
                    failures=[(int(i), str(r)) for i, r, good in zip(
                        out["i"], out["reason"], out["ok"], strict=True) if not good],
                    reads=[FileRead(str(s), int(z), float(m)) for s, z, m in zip(
                        out["sha256"][ok], out["size"][ok], out["mtime"][ok], strict=True)])
        finally:
            if self.started:
                ray.shutdown()
                self.started = False


def ray_shard_runner(address: str | None = None, cpus: int | None = None,
                     in_flight: int | None = None) -> Any:
    """An `ann.build_sharded` runner that encodes each shard in a Ray task.

    At most `in_flight` shards (default: the cluster's CPUs) are in the object store at
    once: the driver puts a shard there for its task, and a shard put is memory this machine
    holds until the task is done. On one machine this buys nothing (bench_shards.py, 2M x
    1280-d on 2 cores: 318 s and 12.2 GiB peak with 2 tasks, 12.9 GiB with all four shards
    put at once, against 260 s and 9.1 GiB encoding here); it is for clusters whose other
    machines bring their own cores."""
    from artsearch.index.ann import fill_shard

    def run(trained: bytes, shard: Any, bounds: list[tuple[int, int]]) -> Iterator[bytes]:
        ray = _ray()
        started = connect(address, cpus)
        try:
            task = ray.remote(num_cpus=1)(fill_shard)
            blob = ray.put(trained)
            window = in_flight or max(1, int(ray.cluster_resources().get("CPU", 1)))
            pending: list[Any] = []
            todo = list(bounds)
            while todo or pending:
                while todo and len(pending) < window:
                    lo, hi = todo.pop(0)
                    ids, vectors = shard(lo, hi)
                    pending.append(task.remote(blob, ray.put(ids), ray.put(vectors)))
                    del ids, vectors
                # In order: each part is merged (by the caller) before the next is taken.
                yield ray.get(pending.pop(0))
        finally:
            if started:
                ray.shutdown()

    return run
