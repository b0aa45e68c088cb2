"""Timed rounds in fresh worker processes: the process, not the round, is the unit of a timed sample.

What a process fixes once -- where the allocator placed the inputs and weights, the page mapping of
those tensors, the state of the allocator and of the thread pool -- never varies between rounds run
inside it, so an interval over one process's rounds describes that process, not the code: measured
here, 11.5% of same-quantity 95% interval pairs from separate runs did not overlap, against about 0.6%
for calibrated intervals. pyperf spawns 20 worker processes for the same reason, and asv's `rounds`
are processes.

Each round therefore runs in a worker forked from a clean fork server: an interpreter, exec'd at the
start of a run, that imports torch and never computes, so a worker starts in milliseconds, its start-up
is never on the clock, and its thread pool is fresh (forking a process whose OpenMP pool has run would
hang a multi-threaded worker). There are `POOL_SIZE` servers, each exec'd on its own, and rounds rotate
across them, so the first look's seven rounds come from seven different address layouts (ASLR: where
libtorch's code and the heap start) and string hash seeds -- what a fork cannot re-draw, and what made
one run's intervals miss the next run's estimates while every round shared one server. A worker:
- rebuilds every tensor and module the timed callables capture (they are sent with cloudpickle), so
  inputs and weights land at new addresses and on new pages;
- first allocates a spacer of random size, so the rebuilt tensors do not fall in the same place in
  every worker;
- has its own allocator state and thread pool, and warms up before it times.
Rounds beyond the pool's size reuse its layouts (round 8 shares server 1's); an exec per round would
cost an interpreter and a torch import (seconds) per sample.

A callable that cannot be pickled (a torch.compile'd function, a weakref) runs in this process; the
decision's method then says so, and its interval covers only what varies within one process.
`REPROBENCH_WORKERS=0` forces in-process rounds (for debugging a timed callable with pdb).
"""
from __future__ import annotations

import atexit
import os
import pickle
import random
import signal
import subprocess
import sys
import threading
import traceback
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

T = TypeVar("T")

IN_WORKERS = "one fresh worker process per round"
IN_PROCESS = "all rounds in this process"
READY = b"ready"  # the server's first message: imports done, workers can be forked
SPACER_MAX_BYTES = 8 << 20  # the random spacer: up to 8 MiB shifts every later allocation, mmap'd ones included

POOL_SIZE = 7  # exec'd fork servers; rounds rotate across them (the sequential sampling's first look is 7 rounds)

_lock = threading.Lock()
_servers: "list[subprocess.Popen | None]" = []
_next_server = 0
_forced_in_process: list[bool] = []


class WorkerError(RuntimeError):
    """A timed round failed inside its worker process; the message carries the worker's traceback."""


def workers_enabled() -> bool:
    if _forced_in_process:
        return not _forced_in_process[-1]
    return os.environ.get("REPROBENCH_WORKERS", "1") != "0" and hasattr(os, "fork")


@contextmanager
def in_process_rounds(enabled: bool = True) -> Iterator[None]:
    """Run every round in this process inside the block (tests of the statistics, debugging)."""
    _forced_in_process.append(enabled)
    try:
        yield
    finally:
        _forced_in_process.pop()


# --- the fork server (runs in its own interpreter) ---------------------------------------------------

def _read_message(stream) -> bytes | None:
    header = stream.read(8)
    if len(header) < 8:
        return None
    size = int.from_bytes(header, "little")
    data = stream.read(size)
    return data if len(data) == size else None


def _write_message(stream, data: bytes) -> None:
    stream.write(len(data).to_bytes(8, "little"))
    stream.write(data)
    stream.flush()


def _run_task(payload: bytes) -> bytes:
    """In a worker: spacer, rebuild the task from its pickle, run it; the pickled ("ok"|"error", value)."""
    import cloudpickle
    import torch

    try:
        spacer = torch.empty(random.SystemRandom().randrange(0, SPACER_MAX_BYTES), dtype=torch.uint8)
        task = cloudpickle.loads(payload)
        result = ("ok", task())
        del spacer, task
    except BaseException as exc:  # the parent re-raises it with this process's traceback
        result = ("error", "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    try:
        return pickle.dumps(result)
    except Exception as exc:  # an unpicklable result is the task's bug: say so instead of hanging the parent
        return pickle.dumps(("error", f"the round's result could not be sent back: {exc!r}"))


def serve(preload: tuple[str, ...] = ()) -> None:
    """The fork server's loop: read a task, fork a worker to run it, send back what the worker wrote.

    `preload`: modules the parent had imported (its components, experiments, plugins), imported here once
    so that a worker unpickling a callable does not import them again on every round. Importing a
    component only registers it (no computation), so the server's thread pool stays unused."""
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a timed callable that prints writes to stderr, never into the protocol
    import importlib

    import cloudpickle  # noqa: F401  (loaded once here, inherited by every worker)
    import torch  # noqa: F401
    import torch.utils.benchmark  # noqa: F401

    for name in preload:
        try:
            importlib.import_module(name)
        except Exception:  # a module that only imports in its parent's context is imported by the worker itself
            pass
    _write_message(replies, READY)  # the parent starts its clocks only after this

    while True:
        payload = _read_message(requests)
        if payload is None:
            return
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            with os.fdopen(write_end, "wb") as out:
                out.write(_run_task(payload))
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as source:
            data = source.read()
        _, status = os.waitpid(pid, 0)
        if not data:
            data = pickle.dumps(("error", f"worker process died without a result (wait status {status})"))
        try:
            _write_message(replies, data)
        except BrokenPipeError:  # the parent gave up on this round (interrupted, timed out) and closed the pipe
            return


# --- the parent's side ---------------------------------------------------------------------------------

def _preload_modules() -> tuple[str, ...]:
    """What the server imports once: every module of the packages the timed code comes from (reprobench, the
    studies and plugins loaded in this process), in the order this process imported them."""
    packages = {"reprobench"} | {name.partition(".")[0] for name in _plugin_modules()}
    return tuple(name for name in list(sys.modules) if name.partition(".")[0] in packages
                 and not name.startswith("reprobench.measure.workers"))


def _plugin_modules() -> list[str]:
    plugins = sys.modules.get("reprobench.plugins")
    return [p.module for p in getattr(plugins, "LOADED_PLUGINS", [])]


def _server_command() -> tuple[list[str], dict]:
    env = dict(os.environ)
    env.pop("PYTHONHASHSEED", None)  # each server draws its own hash seed
    # The parent's import path, so a callable pickled by reference (a test module's function) imports there.
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    preload = ",".join(_preload_modules())
    command = (f"from reprobench.measure.workers import serve; serve(tuple(filter(None, {preload!r}.split(','))))")
    return [sys.executable, "-c", command], env


def _start_servers(count: int) -> list[subprocess.Popen]:
    """Exec `count` fork servers at once (their imports overlap) and wait until each says it is ready."""
    command, env = _server_command()
    started = [subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env) for _ in range(count)]
    for server in started:
        if _read_message(server.stdout) != READY:
            for other in started:
                other.kill()
                other.wait()
            raise WorkerError(f"a fork server did not start (exit code {server.poll()}); see the messages above")
    return started


def _ensure_servers() -> None:
    """The pool of running fork servers, any missing one started (and waited for) now: their start-up is never
    on a decision's clock (per_process calls this before handing out run_once)."""
    global _servers
    with _lock:
        if len(_servers) != POOL_SIZE:
            _servers = [None] * POOL_SIZE
            atexit.register(shutdown)
        missing = [i for i, server in enumerate(_servers) if server is None or server.poll() is not None]
        for i, server in zip(missing, _start_servers(len(missing))):
            _servers[i] = server


def _run_in_worker(payload: bytes) -> Any:
    global _next_server
    _ensure_servers()
    with _lock:
        index = _next_server % POOL_SIZE
        _next_server += 1
        server = _servers[index]
        try:
            _write_message(server.stdin, payload)
            reply = _read_message(server.stdout)
        except BaseException:
            server.kill()  # a half-sent task or half-read reply leaves the protocol out of step
            _servers[index] = None
            raise
        if reply is None:
            _servers[index] = None
            raise WorkerError(f"the fork server exited (code {server.poll()}) without a result")
    status, value = pickle.loads(reply)
    if status != "ok":
        raise WorkerError("a timed round failed in its worker process:\n" + value)
    return value


def shutdown() -> None:
    """Stop the fork servers (each also stops by itself when this process exits and its stdin closes)."""
    global _servers
    with _lock:
        for server in _servers:
            if server is None:
                continue
            if server.poll() is None:
                server.stdin.close()
                try:
                    server.wait(10)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
            for stream in (server.stdin, server.stdout):
                if stream is not None and not stream.closed:
                    stream.close()
        _servers = []


def caller_state() -> dict:
    """The calling thread's torch modes a timed call depends on, which a worker (a fresh process) would not
    have: gradient tracking (`with torch.no_grad()` around a timing), inference mode, the default dtype,
    float32 matmul precision and deterministic algorithms."""
    import torch

    return {"grad": torch.is_grad_enabled(), "inference": torch.is_inference_mode_enabled(),
            "default_dtype": torch.get_default_dtype(), "matmul_precision": torch.get_float32_matmul_precision(),
            "deterministic": torch.are_deterministic_algorithms_enabled()}


class _InCallerState:
    """A task that runs under the caller's torch modes (captured when the task was submitted)."""

    def __init__(self, task: Callable[[], T], state: dict):
        self.task, self.state = task, state

    def __call__(self):
        import torch

        state = self.state
        # Each set only when it differs from the worker's default: the first use_deterministic_algorithms call
        # in a process costs about a second (measured here), which every round would pay before its clock.
        if torch.get_default_dtype() != state["default_dtype"]:
            torch.set_default_dtype(state["default_dtype"])
        if torch.get_float32_matmul_precision() != state["matmul_precision"]:
            torch.set_float32_matmul_precision(state["matmul_precision"])
        if torch.are_deterministic_algorithms_enabled() != state["deterministic"]:
            torch.use_deterministic_algorithms(state["deterministic"])
        with torch.inference_mode(state["inference"]), torch.set_grad_enabled(state["grad"]):
            return self.task()


def per_process(task: Callable[[], T]) -> tuple[Callable[[], T], str]:
    """(run_once, how): every call of `run_once()` runs `task()` in a fresh worker and returns its result.

    `task` is pickled once here; each worker rebuilds it, so every call gets fresh copies of the
    tensors it captures, under the caller's torch modes (`caller_state`: no_grad, inference mode, default
    dtype, ...). When the task cannot be pickled, or workers are disabled, `run_once` is `task` itself and
    `how` says why -- the decision records it in its method.
    """
    if not workers_enabled():
        return task, IN_PROCESS + " (worker processes disabled)"
    import cloudpickle

    try:
        payload = cloudpickle.dumps(_InCallerState(task, caller_state()))
    except Exception as exc:
        return task, f"{IN_PROCESS} (the timed callables cannot be sent to a worker: {type(exc).__name__}: {exc})"

    _ensure_servers()

    def run_once() -> T:
        return _run_in_worker(payload)

    return run_once, IN_WORKERS
