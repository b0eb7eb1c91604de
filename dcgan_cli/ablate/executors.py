"""Where a study's runs execute: as separate processes on this machine (local), or as Ray tasks on a local Ray
instance or an existing cluster (ray). Either way each run is a worker command (`dcgan ablate-run DIR`, or
`dcgan tune-run DIR` for a tuning trial) in its own process, its threads capped so that parallel runs do not
oversubscribe the cores. Runs are taken from their iterable only when a place is free, so a tuning study asks its
sampler for the next trial as late as it can.

Ray tasks may run on other machines: a task receives the run's directory as a tar archive (config, run.json and
any checkpoints of an interrupted attempt), runs it in a temporary directory, and sends the directory back, which
replaces the local one. Nothing here imports Keras.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Protocol

from dcgan_cli.ablate.design import AblationError
from dcgan_cli.ablate.study import LOG

BUSY = 3  # the exit code of a worker whose run directory another process holds
POLL_S = 0.2


class Job(Protocol):
    """What an executor runs: a directory the worker command takes (an ablation's run, a tuning trial)."""

    directory: Path


Finished = Callable[[Job, int], None]  # (job, the worker's exit code)
WORKER = "ablate-run"


def thread_env(threads: int) -> dict[str, str]:
    """Environment variables that cap a worker's compute threads (TensorFlow's intra- and inter-op pools, OpenMP
    and BLAS for torch and NumPy, XLA's CPU pool for JAX), read when those libraries start."""
    count = str(threads)
    env = {name: count for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS",
                                    "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    if threads == 1:
        flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        env["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()
    return env


def cores() -> int:
    """The CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def worker_command(directory: Path, threads: int, command: str = WORKER) -> list[str]:
    return [sys.executable, "-m", "dcgan_cli", command, str(directory), "--threads", str(threads)]


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run_local(runs: Iterable[Job], *, jobs: int, threads: int, finished: Finished, command: str = WORKER) -> None:
    """Run `runs`, `jobs` at a time, each a process writing its output to its log.txt. Ctrl-C or SIGTERM asks
    every running worker (once, by SIGTERM) to checkpoint and stop, waits for them, and raises KeyboardInterrupt.
    SIGTERM, not SIGINT: a shell starts background jobs with SIGINT ignored, and that would be inherited."""
    waiting, more = iter(runs), True
    running: dict[subprocess.Popen, tuple[Job, object]] = {}
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        while more or running:
            while more and len(running) < jobs:
                run = next(waiting, None)
                if run is None:
                    more = False
                    break
                log = open(run.directory / LOG, "ab")
                # A session of its own: a Ctrl-C at the terminal reaches only this process, which passes it on once.
                process = subprocess.Popen(worker_command(run.directory, threads, command), stdout=log,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           env={**os.environ, **thread_env(threads)}, start_new_session=True)
                running[process] = (run, log)
            time.sleep(POLL_S)
            for process in [p for p in running if p.poll() is not None]:
                run, log = running.pop(process)
                log.close()
                finished(run, process.returncode)
    finally:
        signal.signal(signal.SIGTERM, previous)
        for process in running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, (_, log) in running.items():
            process.wait()
            log.close()


def run(jobs: Iterable[Job], *, executor: str, at_once: int | None, threads: int, address: str | None, cpus: float,
        gpus: float, finished: Finished, command: str = WORKER) -> None:
    """Run `jobs` with the executor named (local: `at_once` at a time, 1 when None; ray: see run_ray)."""
    if executor == "ray":
        run_ray(jobs, address=address, cpus=cpus, gpus=gpus, threads=threads, jobs=at_once, finished=finished,
                command=command)
    else:
        run_local(jobs, jobs=at_once or 1, threads=threads, finished=finished, command=command)


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def run_ray(runs: Iterable[Job], *, address: str | None, cpus: float, gpus: float, threads: int, jobs: int | None,
            finished: Finished, command: str = WORKER) -> None:
    """Run `runs` as Ray tasks of `cpus` CPUs and `gpus` GPUs each, at most `jobs` at once (None: as many as the
    cluster's resources allow). Without `address`, a local Ray instance is started whose servers listen on
    127.0.0.1 only, without its dashboard."""
    if not ray_available():
        raise AblationError('--executor ray: Ray is not installed; pip install "dcgan-cli[ray]". Received: ray')
    import ray

    if address is None:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # Ray then binds its servers to the loopback address
        ray.init(num_cpus=cores(), include_dashboard=False, log_to_driver=False, configure_logging=False)
    else:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(_ray_run)
    waiting, more = iter(runs), True
    pending: dict = {}
    try:
        while more or pending:
            while more and (jobs is None or len(pending) < jobs):
                run = next(waiting, None)
                if run is None:
                    more = False
                    break
                pending[task.remote(pack(run.directory), run.directory.name, threads, command)] = run
            if not pending:
                break
            (ready,), _ = ray.wait(list(pending), num_returns=1)
            run = pending.pop(ready)
            try:
                code, archive = ray.get(ready)
            except ray.exceptions.RayError as error:
                with open(run.directory / LOG, "a", encoding="utf-8") as log:
                    log.write(f"Ray task failed: {error}\n")
                finished(run, 1)
                continue
            unpack(archive, run.directory)
            finished(run, code)
    finally:
        for ref in pending:
            ray.cancel(ref)
        ray.shutdown()


def _ray_run(archive: bytes, name: str, threads: int, command: str) -> tuple[int, bytes]:
    """A Ray task: unpack a run directory into a temporary one, run the worker on it, send the directory back."""
    with tempfile.TemporaryDirectory(prefix="dcgan-ablate-") as scratch:
        directory = Path(scratch) / name
        unpack(archive, directory)
        with open(directory / LOG, "ab") as log:
            code = subprocess.run(worker_command(directory, threads, command), stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, env={**os.environ, **thread_env(threads)}).returncode
        return code, pack(directory)


def pack(directory: Path) -> bytes:
    """A run directory as a gzipped tar archive (its lock file left out)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as archive:
        for path in sorted(directory.rglob("*")):
            if not path.name.endswith(".lock"):
                archive.add(path, arcname=path.relative_to(directory).as_posix(), recursive=False)
    return buffer.getvalue()


def unpack(archive: bytes, directory: Path) -> None:
    """Replace `directory` with the archive's contents: extracted beside it first (tarfile's "data" filter: no
    absolute paths, links out or special files), then swapped in, so a failure leaves the old one."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    incoming = directory.with_name(f".incoming-{directory.name}")
    shutil.rmtree(incoming, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as opened:
        opened.extractall(incoming, filter="data")
    old = directory.with_name(f".old-{directory.name}")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    incoming.rename(directory)
    shutil.rmtree(old, ignore_errors=True)
