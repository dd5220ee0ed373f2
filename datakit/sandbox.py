"""Run untrusted, model-written Python in a fresh, locked-down process per candidate.

One candidate = one process tree, started fresh and killed whole. The harness that runs inside
(``resources/sandbox_harness.py``, standard library only) reads the code and the argument lists from stdin,
sets its own resource limits, calls the entry function on each argument list and writes each result as
JSON; expected outputs never enter the sandbox, and results are compared in the judge's process
(``datakit.code_judge.judge_code``).

Isolation (``judge.code.isolation``):

- ``namespaces`` (``auto`` picks it when running as root on Linux with util-linux): new PID, network, mount,
  IPC and UTS namespaces (``unshare``). In the mount namespace a new root is built on a size-capped tmpfs:
  read-only binds of ``/usr``, the interpreter's prefix and ``binds``, the ``/bin``-style links, four device
  nodes (null, zero, random, urandom) and an empty ``/tmp`` with the working directory ``/tmp/work``; no
  ``/proc``, no project, no home, no ``/etc``. The candidate then chroots into it, drops the whole capability
  bounding set, and becomes an unprivileged user of the worker slot's own (uid ``uid_base + slot``, no
  groups, ``no_new_privs``) with an empty environment (``resources/sandbox_setup.py``, one process, no
  shell). The network namespace has only a loopback that is down, and the PID namespace holds only the
  candidate (its first process is the set-up, waiting; when it ends, the kernel kills every process left).
  The process cap is ``RLIMIT_NPROC`` on the slot's uid (root is not bound by it; this user is).
- ``rlimits`` (the fallback; ``auto`` picks it when not root or when namespaces fail): the same resource
  limits, an empty environment, closed stdin, a fresh temporary working directory and a kill of the whole
  process group, but the candidate runs as the judge's user and sees its files and network. That is not a
  security boundary: use it for trusted code, or inside a container or VM that is one.

Limits in both: wall clock (the judge kills the process group; in ``namespaces`` killing the namespace's
first process kills every process in it), CPU time (``RLIMIT_CPU``: SIGXCPU), address space
(``RLIMIT_AS``: MemoryError), file size (``RLIMIT_FSIZE``, which also bounds the candidate's output: a write
past it fails with EFBIG, as Python ignores SIGXFSZ),
open files (``RLIMIT_NOFILE``), core dumps off. In ``namespaces`` a seccomp filter (``judge.code.seccomp``,
libseccomp through ctypes) also makes the system calls a candidate has no use for fail with EPERM: ptrace,
bpf, perf events, userfaultfd, io_uring, module and kexec loading, mount, chroot, unshare and setns,
keyrings (``resources/sandbox_setup.py`` lists them). It is a deny-list: the rest of the kernel's system
calls stay reachable from the unprivileged user.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from datakit.config import SandboxConfig
from datakit.errors import DatakitError

HARNESS = resources.files("datakit").joinpath("resources/sandbox_harness.py").read_text()
SETUP = resources.files("datakit").joinpath("resources/sandbox_setup.py").read_text()
SETUP_FAILED = 121  # exit status of resources/sandbox_setup.py when a mount or the privilege drop fails
_SIGNAL_LIMITS = {signal.SIGXCPU: "CPU-time limit", signal.SIGXFSZ: "file-size limit"}


def _harness_namespace() -> dict[str, Any]:
    ns: dict[str, Any] = {"__name__": "datakit_sandbox_harness"}
    exec(compile(HARNESS, "sandbox_harness.py", "exec"), ns)  # our own file: defines encode, runs nothing
    return ns


encode = _harness_namespace()["encode"]  # the harness's own encoder, so synth's expected values match it


@dataclass
class Outcome:
    """What one candidate did. ``results[i]`` is ``("value", v)`` (v in the harness's encoding), ``("raise",
    message)``, or ``None`` when the call never returned (killed, or the process ended first)."""

    results: list[tuple[str, Any] | None]
    load_error: str | None = None  # the code did not compile or run, or has no such function
    killed: str | None = None  # which limit ended it: "wall-clock limit", "CPU-time limit", "signal SIGSEGV"
    exit_code: int = 0
    stderr: str = ""  # the tail of what it printed (stdout and stderr)
    seconds: float = 0.0
    garbled: int = 0  # result lines that were not the harness's JSON
    extra: dict[str, Any] = field(default_factory=dict)


def namespaces_available() -> str | None:
    """None when the ``namespaces`` isolation can run here, else why not."""
    if not sys.platform.startswith("linux"):
        return "not Linux"
    if os.geteuid() != 0:
        return "not running as root (needed to switch to the sandbox's own user)"
    for tool in ("unshare",):
        if shutil.which(tool) is None:
            return f"'{tool}' (util-linux) is not installed"
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--net", "--mount", "--propagation", "private", "true"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return f"unshare failed: {probe.stderr.strip()}"
    return None


class Sandbox:
    """Runs candidates under ``cfg``; ``run`` for one, ``run_many`` for a batch on ``cfg.workers`` slots."""

    def __init__(self, cfg: SandboxConfig) -> None:
        self.cfg = cfg
        why = namespaces_available() if cfg.isolation != "rlimits" else "rlimits asked for"
        if cfg.isolation == "namespaces" and why:
            raise DatakitError(f"judge.code.isolation: namespaces cannot run here: {why}")
        self.isolation = "namespaces" if why is None else "rlimits"
        self.why_not_namespaces = why
        self.python, self.prefix = self._interpreter()
        self.seccomp = ""  # the libseccomp library the set-up loads ('' = no filter)
        if self.isolation == "namespaces" and cfg.seccomp:
            self.seccomp = ctypes.util.find_library("seccomp") or ""
            if not self.seccomp:
                raise DatakitError(
                    "judge.code.seccomp: libseccomp is not installed (Debian: apt install libseccomp2); "
                    "set judge.code.seccomp: false to run without the system-call filter"
                )
        self.scratch = Path(tempfile.mkdtemp(prefix="datakit-sandbox-"))  # last: a refused set-up leaves none
        # /bin, /lib...: a merged-/usr link is made again inside the root; a real folder is bound read-only
        self._links = [
            [name, os.readlink(f"/{name}") if os.path.islink(f"/{name}") else None]
            for name in ("bin", "lib", "lib32", "lib64", "sbin")
            if os.path.lexists(f"/{name}")
        ]
        self._slots = list(range(cfg.workers))
        self._lock = threading.Lock()

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _interpreter(self) -> tuple[str, str]:
        """The harness's Python (``cfg.python``, else this one) and its installation prefix, which the
        ``namespaces`` root mounts read-only next to ``/usr``."""
        python = os.path.realpath(self.cfg.python or sys.executable)
        try:
            found = subprocess.run(
                [python, "-I", "-S", "-c", "import sys; print(sys.base_prefix)"],
                capture_output=True,
                text=True,
            )
        except OSError as exc:  # not there, or not executable by this user
            raise DatakitError(f"judge.code.python: {python} cannot be run: {exc.strerror}") from exc
        if found.returncode != 0:
            raise DatakitError(f"judge.code.python: {python} does not run: {found.stderr.strip()[-300:]}")
        return python, found.stdout.strip()

    # --------------------------------------------------------------------------------------------- limits
    def _limits(self) -> dict[str, int]:
        c = self.cfg
        limits = {
            "RLIMIT_CPU": c.cpu_s,
            "RLIMIT_AS": c.memory_mb * 2**20,
            "RLIMIT_FSIZE": c.file_kb * 1024,
            "RLIMIT_NOFILE": c.open_files,
            "RLIMIT_CORE": 0,
        }
        if self.isolation == "namespaces":  # the slot's own uid: the count starts at the harness itself
            limits["RLIMIT_NPROC"] = c.processes
        return limits

    def _command(self, slot: int) -> list[str]:
        harness = [self.python, "-I", "-S", "-c", HARNESS]
        if self.isolation == "rlimits":
            return harness
        setup = {
            "root": str(self.scratch / f"root{slot}"),
            "uid": self.cfg.uid_base + slot,
            "tmpfs_mb": self.cfg.tmpfs_mb,
            "binds": list(dict.fromkeys(("/usr", self.prefix, *self.cfg.binds))),
            "links": self._links,
            "python": self.python,
            "harness": HARNESS,
            "seccomp": self.seccomp,
        }
        namespaces = ["--pid", "--fork", "--kill-child", "--net", "--ipc", "--uts", "--mount"]
        return [
            "unshare",
            *namespaces,
            "--propagation",
            "private",
            "--",
            self.python,
            "-I",
            "-S",
            "-c",
            SETUP,
            json.dumps(setup),
        ]

    # ---------------------------------------------------------------------------------------------- run
    def run(self, code: str, entry: str, calls: Sequence[Sequence[Any]], slot: int = 0) -> Outcome:
        """Run ``code``, then ``entry(*args)`` for each of ``calls``, in a fresh sandboxed process.

        Raises:
            DatakitError: the sandbox itself could not start (a mount or the interpreter failed), which is
                no fault of the candidate.
        """
        payload = json.dumps(
            {"code": code, "entry": entry, "calls": [list(a) for a in calls], "limits": self._limits()}
        ).encode()
        work = Path(tempfile.mkdtemp(dir=self.scratch, prefix=f"slot{slot}-"))
        started = time.perf_counter()
        try:
            with open(work / "result", "w+b") as out, open(work / "stderr", "w+b") as err:
                cwd = work if self.isolation == "rlimits" else "/"
                proc = subprocess.Popen(
                    self._command(slot),
                    stdin=subprocess.PIPE,
                    stdout=out,
                    stderr=err,
                    cwd=cwd,
                    env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
                    start_new_session=True,  # its own process group, killed whole
                    close_fds=True,
                )
                killed = None
                try:
                    proc.communicate(payload, timeout=self.cfg.timeout_s)
                except subprocess.TimeoutExpired:
                    killed = "wall-clock limit"
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    if self.isolation == "namespaces":
                        self._wait_gone(self.cfg.uid_base + slot)
                except BrokenPipeError:  # it died before reading its payload; the exit status says why
                    proc.wait()
                if self.isolation == "rlimits":  # a child it left behind in the group goes too
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                seconds = time.perf_counter() - started
                out.seek(0)
                raw = out.read()
                err.seek(0, os.SEEK_END)
                size = err.tell()
                err.seek(max(0, size - 4000))
                tail = err.read().decode("utf-8", "replace")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return self._outcome(raw, proc.returncode, killed, tail, seconds, len(calls))

    @staticmethod
    def _wait_gone(uid: int, seconds: float = 5.0) -> None:
        """Wait until no process runs as ``uid``: killing ``unshare`` kills the namespace's first process
        through a parent-death signal, and the kernel then kills the rest, a moment after ``wait`` returned.
        The slot's next candidate must start with its process count at zero."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            alive = False
            for entry in os.scandir("/proc"):
                if entry.name.isdigit():
                    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                        if entry.stat().st_uid == uid:
                            alive = True
                            break
            if not alive:
                return
            time.sleep(0.01)

    def _outcome(self, raw: bytes, rc: int, killed: str | None, tail: str, seconds: float, n: int) -> Outcome:
        if self.isolation == "namespaces" and rc == SETUP_FAILED:
            raise DatakitError(f"the code sandbox could not be set up: {tail.strip()[-500:]}")
        sig = -rc if rc < 0 else rc - 128 if self.isolation == "namespaces" and rc > 128 else None
        if killed is None and sig:
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
            killed = _SIGNAL_LIMITS.get(sig, f"signal {name}")
            if sig == signal.SIGKILL and seconds >= 0.9 * self.cfg.cpu_s:
                killed = "CPU-time limit"  # the hard limit (soft + 1 s), for a candidate that ignores SIGXCPU
        outcome = Outcome(results=[None] * n, exit_code=rc, killed=killed, stderr=tail, seconds=seconds)
        loaded = False
        for line in raw.decode("utf-8", "replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                outcome.garbled += 1
                continue
            if not isinstance(record, dict):
                outcome.garbled += 1
            elif "load" in record and not loaded:
                loaded = True
                outcome.load_error = record["load"] if isinstance(record["load"], str) else None
            elif loaded and isinstance(record.get("i"), int) and 0 <= record["i"] < n:
                i = record["i"]
                if outcome.results[i] is not None:
                    outcome.garbled += 1  # a second answer to the same call: not the harness's
                    outcome.results[i] = None
                elif "value" in record:
                    outcome.results[i] = ("value", record["value"])
                elif isinstance(record.get("raise"), str):
                    outcome.results[i] = ("raise", record["raise"])
            elif "done" not in record:
                outcome.garbled += 1
        if not loaded and rc in (126, 127):  # env could not run the interpreter: not the candidate's doing
            raise DatakitError(f"the code sandbox could not start Python: {tail.strip()[-500:]}")
        if not loaded and outcome.load_error is None:
            outcome.load_error = f"the harness never started the code ({killed or f'exit status {rc}'})"
        return outcome

    def run_many(
        self,
        jobs: Sequence[tuple[str, str, Sequence[Sequence[Any]]]],
        on_done: Callable[[], None] | None = None,
    ) -> list[Outcome]:
        """``run`` for each ``(code, entry, calls)``, ``cfg.workers`` at a time, each on a free slot (so no two
        running candidates share a uid); outcomes in the jobs' order."""

        def one(job):
            with self._lock:
                slot = self._slots.pop()
            try:
                return self.run(*job, slot=slot)
            finally:
                with self._lock:
                    self._slots.append(slot)
                if on_done is not None:
                    on_done()

        with ThreadPoolExecutor(self.cfg.workers) as pool:
            return list(pool.map(one, jobs))
