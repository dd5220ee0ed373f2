"""The code sandbox under attack: each case is code a model could write, with the exact outcome asserted and
the judge's process, files outside the sandbox and a loopback listener checked untouched afterwards.

The ``namespaces`` isolation needs root and util-linux (this project's CI has both); elsewhere these tests
skip with the reason, and the ``rlimits`` cases at the end still run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from datakit.config import SandboxConfig
from datakit.sandbox import Sandbox, namespaces_available

WHY_NOT = namespaces_available()
needs_namespaces = pytest.mark.skipif(WHY_NOT is not None, reason=f"namespaces isolation: {WHY_NOT}")
PIDS_CGROUP = Path("/sys/fs/cgroup/pids")


@pytest.fixture(scope="module")
def sandbox():
    if WHY_NOT is not None:
        pytest.skip(f"namespaces isolation: {WHY_NOT}")
    cfg = SandboxConfig(
        isolation="namespaces", timeout_s=3.0, cpu_s=1, memory_mb=256, file_kb=64, processes=8
    )
    with Sandbox(cfg) as box:
        yield box


def run1(box: Sandbox, code: str, *args):
    outcome = box.run(code, "f", [list(args)])
    return outcome, outcome.results[0]


def sandbox_uids_alive(box: Sandbox) -> list[int]:
    """Pids of processes still running as a sandbox slot's uid."""
    uids = range(box.cfg.uid_base, box.cfg.uid_base + box.cfg.workers)
    alive = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid in uids:
                    alive.append(int(entry.name))
            except FileNotFoundError:
                pass
    return alive


@pytest.fixture
def untouched(sandbox, tmp_path):
    """What every attack must leave as it was: a file of the test's, a listener on loopback, the judge."""
    victim = tmp_path / "victim.txt"
    victim.write_text("original")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.2)
    state = {"victim": victim, "port": listener.getsockname()[1]}
    yield state
    assert victim.read_text() == "original"
    with pytest.raises(TimeoutError):
        listener.accept()  # nobody connected
    listener.close()
    assert sandbox_uids_alive(sandbox) == []  # nothing of the candidate outlives it


def test_a_plain_function_runs_and_returns_its_values(sandbox):
    outcome = sandbox.run("def f(x):\n    return [x, x * 2, (x,), {'k': x}]\n", "f", [[1], [2.5]])
    assert outcome.killed is None and outcome.load_error is None
    assert outcome.results == [
        ("value", [1, 2, {"__tuple__": [1]}, {"__map__": {"k": 1}}]),
        ("value", [2.5, 5.0, {"__tuple__": [2.5]}, {"__map__": {"k": 2.5}}]),
    ]


@needs_namespaces
def test_infinite_loop_is_killed_by_the_cpu_limit(sandbox, untouched):
    outcome, result = run1(sandbox, "def f():\n    while True:\n        pass\n")
    assert outcome.killed == "CPU-time limit" and result is None


@needs_namespaces
def test_ignoring_sigxcpu_still_ends_at_the_hard_cpu_limit(sandbox, untouched):
    code = "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\ndef f():\n    while True:\n        pass\n"
    outcome, result = run1(sandbox, code)
    assert outcome.killed == "CPU-time limit" and result is None


@needs_namespaces
def test_sleeping_forever_is_killed_by_the_wall_clock(sandbox, untouched):
    outcome, result = run1(sandbox, "import time\ndef f():\n    time.sleep(1000)\n")
    assert outcome.killed == "wall-clock limit" and result is None
    assert outcome.seconds < sandbox.cfg.timeout_s + 2


@pytest.fixture
def outer_pid_cap():
    """A hard cap set by the test itself: this process (and so everything it starts) goes into a pids
    cgroup of 200 tasks, so a broken sandbox fails the test instead of taking the machine down."""
    if not (PIDS_CGROUP / "cgroup.procs").exists() or not os.access(PIDS_CGROUP, os.W_OK):
        pytest.skip("no writable pids cgroup for the outer cap")
    group = PIDS_CGROUP / f"datakit-test-{os.getpid()}"
    group.mkdir()
    (group / "pids.max").write_text("200")
    (group / "cgroup.procs").write_text(str(os.getpid()))
    try:
        yield group
    finally:
        (PIDS_CGROUP / "cgroup.procs").write_text(str(os.getpid()))
        for pid in (group / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        group.rmdir()


@needs_namespaces
def test_fork_bomb_is_denied_at_the_process_cap(sandbox, untouched, outer_pid_cap):
    code = (
        "import os, time\n"
        "def f():\n"
        "    made = 0\n"
        "    try:\n"
        "        while True:\n"
        "            if os.fork() == 0:\n"
        "                time.sleep(30)\n"
        "                os._exit(0)\n"
        "            made += 1\n"
        "    except OSError as exc:\n"
        "        return [made, exc.errno]\n"
    )
    outcome, result = run1(sandbox, code)
    made, errno = result[1]
    assert result[0] == "value" and errno == 11  # EAGAIN: RLIMIT_NPROC reached
    assert made == sandbox.cfg.processes - 1  # the harness is the first of its uid's processes
    assert int((outer_pid_cap / "pids.events").read_text().split()[1]) == 0  # the outer cap was never hit


@needs_namespaces
def test_endless_fork_bomb_ends_with_its_time_limit_and_leaves_nothing(sandbox, untouched, outer_pid_cap):
    code = "import os\ndef f():\n    while True:\n        try:\n            os.fork()\n        except OSError:\n            pass\n"
    outcome, result = run1(sandbox, code)
    assert outcome.killed in ("CPU-time limit", "wall-clock limit") and result is None
    assert int((outer_pid_cap / "pids.events").read_text().split()[1]) == 0


@needs_namespaces
def test_memory_bomb_is_denied(sandbox, untouched):
    outcome, result = run1(sandbox, "def f():\n    return len(bytearray(10**10))\n")
    assert result == ("raise", "MemoryError: ")


@needs_namespaces
def test_output_flood_is_cut_at_the_file_size_limit(sandbox, untouched):
    outcome, result = run1(
        sandbox, "import sys\ndef f():\n    while True:\n        sys.stdout.write('x' * 4096)\n"
    )
    assert result == ("raise", "OSError: [Errno 27] File too large")
    assert len(outcome.stderr) <= 4000  # the judge keeps a tail, whatever was written


@needs_namespaces
def test_writes_outside_the_working_directory_are_denied_or_vanish(sandbox, untouched):
    escape = Path("/tmp") / f"datakit-escape-{uuid.uuid4().hex}"
    code = (
        "import os\n"
        "def f(paths):\n"
        "    out = []\n"
        "    for p in paths:\n"
        "        try:\n"
        "            with open(p, 'w') as fh:\n"
        "                fh.write('pwned')\n"
        "            out.append('wrote')\n"
        "        except OSError as exc:\n"
        "            out.append(type(exc).__name__)\n"
        "    open('inside.txt', 'w').write('fine')\n"
        "    out.append(os.getcwd())\n"
        "    return out\n"
    )
    victim = str(untouched["victim"])
    outcome, result = run1(sandbox, code, [victim, str(Path.cwd() / "pwned.txt"), "/usr/pwned", str(escape)])
    # the test's file and the project are not in its root at all; /usr is read-only; its own /tmp is not ours
    assert result == ("value", ["FileNotFoundError", "FileNotFoundError", "OSError", "wrote", "/tmp/work"])
    assert not escape.exists() and not (Path.cwd() / "pwned.txt").exists()


@needs_namespaces
def test_the_parents_secrets_are_out_of_reach(sandbox, untouched, monkeypatch):
    monkeypatch.setenv("DATAKIT_TEST_SECRET", "hunter2-secret")
    code = (
        "import os\n"
        "def f(pid):\n"
        "    seen = [repr(dict(os.environ))]\n"
        "    for p in (f'/proc/{pid}/environ', '/proc/1/environ', '/proc/self/environ'):\n"
        "        try:\n"
        "            seen.append(open(p, 'rb').read().decode('latin-1'))\n"
        "        except OSError as exc:\n"
        "            seen.append(type(exc).__name__)\n"
        "    return seen\n"
    )
    outcome, result = run1(sandbox, code, os.getpid())
    assert result[0] == "value"
    env, *files = result[1]
    assert "hunter2" not in repr(result)
    assert eval(env) == {"PATH": "/usr/bin:/bin", "HOME": "/tmp/work", "LANG": "C.UTF-8"}  # noqa: S307
    assert files == ["FileNotFoundError"] * 3  # no /proc in its root


@needs_namespaces
def test_no_network_not_even_loopback(sandbox, untouched):
    code = (
        "import socket\ndef f(port):\n    s = socket.socket()\n    s.settimeout(1)\n"
        "    s.connect(('127.0.0.1', port))\n    return 'connected'\n"
    )
    outcome, result = run1(sandbox, code, untouched["port"])
    assert result == ("raise", "OSError: [Errno 101] Network is unreachable")


@needs_namespaces
def test_signalling_the_judge_or_its_children_fails(sandbox, untouched):
    sentinel = subprocess.Popen(["sleep", "60"])
    try:
        code = (
            "import os, signal\ndef f(pids):\n    out = []\n    for pid in pids:\n        try:\n"
            "            os.kill(pid, signal.SIGKILL)\n            out.append('sent')\n"
            "        except OSError as exc:\n            out.append(type(exc).__name__)\n    return out\n"
        )
        outcome, result = run1(sandbox, code, [os.getpid(), sentinel.pid, os.getppid()])
        assert result == ("value", ["ProcessLookupError"] * 3)  # none of them exists in its PID namespace
        assert sentinel.poll() is None  # still running
    finally:
        sentinel.kill()
        sentinel.wait()


@needs_namespaces
def test_raising_its_own_limits_is_denied(sandbox, untouched):
    code = (
        "import resource\ndef f():\n    out = []\n"
        "    for name in ('RLIMIT_AS', 'RLIMIT_CPU', 'RLIMIT_NPROC', 'RLIMIT_FSIZE'):\n"
        "        try:\n            resource.setrlimit(getattr(resource, name), (resource.RLIM_INFINITY,) * 2)\n"
        "            out.append('raised')\n        except (ValueError, OSError) as exc:\n"
        "            out.append(type(exc).__name__)\n    return out\n"
    )
    outcome, result = run1(sandbox, code)
    assert result == ("value", ["ValueError"] * 4)  # "not allowed to raise maximum limit"


@needs_namespaces
def test_it_runs_as_an_unprivileged_user_without_capabilities(sandbox):
    code = (
        "import os\ndef f():\n    denied = []\n"
        "    for act in (lambda: os.setuid(0), lambda: os.chroot('/tmp'), lambda: os.chown('/tmp', 0, 0),\n"
        "                lambda: os.mknod('/tmp/work/sda', 0o600 | 0o060000, os.makedev(8, 0))):\n"
        "        try:\n            act()\n            denied.append(False)\n"
        "        except PermissionError:\n            denied.append(True)\n"
        "    return [os.getuid(), os.geteuid(), os.getgid(), os.getgroups(), denied]\n"
    )
    outcome, result = run1(sandbox, code)
    uid = result[1][0]
    assert sandbox.cfg.uid_base <= uid < sandbox.cfg.uid_base + sandbox.cfg.workers
    # no capability left: not setuid, chroot, chown or mknod
    assert result[1] == [uid, uid, uid, [], [True, True, True, True]]


@needs_namespaces
def test_system_calls_it_has_no_use_for_are_denied_by_seccomp(sandbox, untouched):
    code = (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "def f():\n    out = []\n"
        "    for call in (lambda: libc.prctl(21, 0, 0, 0, 0), lambda: libc.ptrace(0, 0, 0, 0),\n"
        "                 lambda: libc.syscall(321, 0, 0, 0), lambda: libc.syscall(425, 8, 0)):\n"
        "        ctypes.set_errno(0)\n        out.append([call(), ctypes.get_errno()])\n"
        "    return out\n"
    )
    outcome, result = run1(sandbox, code)
    # PR_GET_SECCOMP says 2 (a filter); PTRACE_TRACEME (0 without the filter), bpf and io_uring_setup fail
    # with EPERM (1)
    assert result == ("value", [[2, 0], [-1, 1], [-1, 1], [-1, 1]])


@needs_namespaces
def test_many_candidates_in_parallel_get_distinct_slots(sandbox):
    jobs = [("import os\ndef f(i):\n    return [i, os.getuid()]\n", "f", [[i]]) for i in range(8)]
    outcomes = sandbox.run_many(jobs)
    assert [o.results[0][1][0] for o in outcomes] == list(range(8))
    assert {o.results[0][1][1] for o in outcomes} <= set(
        range(sandbox.cfg.uid_base, sandbox.cfg.uid_base + 2)
    )


def test_rlimits_isolation_still_limits_cpu_memory_and_output(tmp_path, monkeypatch):
    monkeypatch.setenv("DATAKIT_TEST_SECRET", "hunter2-secret")
    cfg = SandboxConfig(isolation="rlimits", timeout_s=3.0, cpu_s=1, memory_mb=256, file_kb=64)
    with Sandbox(cfg) as box:
        assert box.isolation == "rlimits"
        loop = box.run("def f():\n    while True:\n        pass\n", "f", [[]])
        memory = box.run("def f():\n    return len(bytearray(10**10))\n", "f", [[]])
        env = box.run("import os\ndef f():\n    return sorted(os.environ)\n", "f", [[]])
    assert loop.killed == "CPU-time limit"
    assert memory.results == [("raise", "MemoryError: ")]
    assert env.results == [("value", ["LANG", "PATH"])]  # nothing of the parent's environment


NOT_ROOT = """
import os, sys, tempfile
os.chdir(tempfile.gettempdir())
from datakit.config import SandboxConfig
from datakit.errors import DatakitError
from datakit.sandbox import Sandbox
for cfg in (SandboxConfig(isolation="namespaces", python="/usr/bin/python3"), SandboxConfig(python=sys.argv[1])):
    try:
        Sandbox(cfg)
    except DatakitError as exc:
        print(exc)
box = Sandbox(SandboxConfig(python="/usr/bin/python3", cpu_s=1, timeout_s=5))
print(box.isolation, box.run("import os\\ndef f():\\n    return os.getuid()\\n", "f", [[]]).results)
box.close()
"""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_not_root_namespaces_are_refused_auto_falls_back_and_an_unusable_python_is_named():
    """The judge run by an ordinary user (uid 65534, switched to for real): `namespaces` is refused with the
    reason, `auto` falls back to `rlimits`, and an interpreter that user cannot run is one clear error."""
    locked = "/root/no-such-python" if not os.access("/root", os.X_OK) else "/nonexistent/python"
    done = subprocess.run(
        [
            "setpriv",
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            sys.executable,
            "-c",
            NOT_ROOT,
            locked,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert done.returncode == 0, done.stderr
    refused, unusable, ran = done.stdout.splitlines()
    assert refused == (
        "judge.code.isolation: namespaces cannot run here: not running as root (needed to switch to the "
        "sandbox's own user)"
    )
    assert unusable.startswith(f"judge.code.python: {locked} cannot be run: ")
    assert ran == "rlimits [('value', 65534)]"
