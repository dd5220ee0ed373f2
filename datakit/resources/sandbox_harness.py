# The process that runs one model-written candidate inside datakit's sandbox (datakit.sandbox).
#
# Standard library only: it runs as `python -I -S -c <this file>` under an unprivileged user, with the
# project and every site-packages folder out of reach. It reads one JSON payload from stdin
# ({"code", "entry", "calls", "limits"}), sets its own resource limits (hard = soft, so the candidate cannot
# raise them back), closes stdin, points the candidate's stdout at stderr, runs the code, calls `entry` on
# each argument list and writes one JSON line per call to the result file (the original stdout).
#
# It never sees the expected outputs: the judge compares in its own process, so nothing the candidate does
# here (patching builtins, an object whose __eq__ is always true, exiting early, printing "OK") can turn a
# wrong answer into a pass. At worst it garbles its own result lines, which fails it.
import json
import os
import resource
import sys

_dumps, _write, _type, _isinstance, _repr, _len = json.dumps, os.write, type, isinstance, repr, len
_BaseException, _RecursionError = BaseException, RecursionError
_list, _str, _range, _exit = list, str, range, os._exit
_SIMPLE = (bool, int, str, type(None))


def encode(value, depth=0):
    """The value as JSON-safe data, exact built-in types only (a subclass is refused): bool, int, float,
    str, None, list, tuple and dict with str keys, set and frozenset of those."""
    if depth > 50:
        raise ValueError("nested deeper than 50 levels")
    t = _type(value)
    if t in _SIMPLE:
        return value
    if t is float:
        if value != value or value in (float("inf"), float("-inf")):
            return {"__float__": _repr(value)}
        return value
    if t is list:
        return [encode(v, depth + 1) for v in value]
    if t is tuple:
        return {"__tuple__": [encode(v, depth + 1) for v in value]}
    if t in (set, frozenset):
        items = [encode(v, depth + 1) for v in value]
        return {"__set__": sorted(items, key=_dumps)}
    if t is dict:
        if not all(_type(k) is _str for k in value):
            return {"__dict__": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
        return {"__map__": {k: encode(v, depth + 1) for k, v in value.items()}}
    raise TypeError(f"cannot compare a value of type {t.__name__}")


def _emit(fd, record):
    data = (_dumps(record) + "\n").encode()
    while data:
        data = data[_write(fd, data) :]


def main():
    payload = json.loads(sys.stdin.read())
    limits = payload["limits"]
    # stdin closed to the candidate: it reads end-of-file
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    result = os.dup(1)
    os.dup2(2, 1)  # the candidate's prints land in the bounded stderr file
    sys.stdout = sys.stderr
    for name, value in limits.items():
        kind = getattr(resource, name)
        soft, hard = (value, value + 1) if name == "RLIMIT_CPU" else (value, value)
        resource.setrlimit(kind, (soft, hard))
    namespace = {"__name__": "candidate"}
    try:
        exec(compile(payload["code"], "candidate.py", "exec"), namespace)
        fn = namespace[payload["entry"]]
    except _BaseException as exc:
        _emit(result, {"load": f"{_type(exc).__name__}: {exc}"[:500]})
        _exit(0)
    _emit(result, {"load": None})
    for i, args in enumerate(payload["calls"]):
        try:
            got = fn(*args)
        except _BaseException as exc:
            try:
                msg = f"{_type(exc).__name__}: {exc}"[:500]
            except _BaseException:
                msg = "an exception that cannot be printed"
            _emit(result, {"i": i, "raise": msg})
            continue
        try:
            _emit(result, {"i": i, "value": encode(got)})
        except (_BaseException, _RecursionError) as exc:
            _emit(result, {"i": i, "raise": f"unserialisable result: {exc}"[:500]})
    _emit(result, {"done": _len(payload["calls"])})
    _exit(0)


if __name__ == "__main__":
    main()
