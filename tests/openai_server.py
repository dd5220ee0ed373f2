"""A real OpenAI-compatible server for tests: ``transformers serve`` in a subprocess, on CPU, offline.

Usage::

    with serve_openai(model_dir) as (base_url, model_name):
        client = openai.OpenAI(base_url=base_url, api_key="unused")
        client.chat.completions.create(model=model_name, messages=[...], max_tokens=8, temperature=0)

The command it runs (transformers 5.23, with HF_HUB_OFFLINE=1 and HF_HUB_DISABLE_UPDATE_CHECK=1)::

    .venv/bin/transformers serve /abs/model_dir --device cpu --host 127.0.0.1 --port PORT

What was checked against the tiny llama of ``tests/tiny.py`` (transformers 5.23, openai 3.54):

- The positional FORCE_MODEL preloads the local folder before the server listens, so ``/health``
  answering 200 means the model is loaded. ``/v1/models`` is no readiness probe: it only lists the
  hub cache (never the forced folder) and answers 500 when ``~/.cache/huggingface/hub`` is missing.
- ``model`` must be exactly the FORCE_MODEL string (the absolute folder path yielded here); anything
  else, even ``<path>@main`` or a trailing slash, is a 400 "Server is pinned to ...". The response's
  ``model`` field reads ``<path>@main``. A path containing ``@`` cannot be served (``@`` means revision).
- ``max_tokens`` and ``max_completion_tokens`` (which wins) are honoured exactly; without either the
  server generates up to 1024 new tokens.
- ``finish_reason`` is ``"length"`` when the limit is hit, else ``"stop"`` (EOS, or a ``stop`` string,
  which is *not* stripped from the content). ``usage.completion_tokens`` counts generated tokens
  including the EOS token (EOS at once: content ``""``, completion_tokens 1); ``prompt_tokens`` is the
  chat-templated prompt length.
- ``temperature=0`` sets ``do_sample=False``: greedy and deterministic. Note a temperature > 0 does
  *not* switch sampling on: it only happens if the model's generation_config has ``do_sample=True``
  (the tiny model's has not, so its output is greedy whatever the temperature).
- Greedy output equals local ``model.generate(**tok.apply_chat_template(messages,
  add_generation_prompt=True, return_dict=True, return_tensors="pt"), do_sample=False)`` decoded with
  ``skip_special_tokens=True`` (10/10 prompts, 16 new tokens, on a tiny llama with perturbed weights:
  the stock tiny model's greedy output is only ``"\\n"`` repeated, so equal by construction).
- Concurrent requests work (4 and 16 threads give the same texts as sequential calls); without
  ``--continuous-batching`` they run one at a time on one inference thread; with it (also works
  on CPU) the texts are the same.
- ``n``, ``logprobs``, ``response_format``, ... are accepted and silently ignored (one choice, no
  logprobs); a field outside the OpenAI schema is a 422 (per the source). ``logit_bias`` values must be floats (an int gives a 500).
- Start-up until ``/health`` answers: about 8 s on this CPU machine (mostly imports); SIGTERM stops
  it in about 2 s.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

_TAIL_CHARS = 4000


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_command() -> list[str]:
    """``transformers serve`` of the running interpreter's environment."""
    exe = Path(sys.executable).parent / ("transformers.exe" if os.name == "nt" else "transformers")
    if exe.exists():
        return [str(exe), "serve"]
    return [sys.executable, "-m", "transformers.cli.transformers", "serve"]


def _log_tail(log_path: Path) -> str:
    try:
        text = log_path.read_text(errors="replace")
    except OSError as e:
        return f"<could not read {log_path}: {e}>"
    lines = [ln for ln in text.splitlines() if "Offline mode: forcing local_files_only" not in ln]
    return "\n".join(lines)[-_TAIL_CHARS:]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace)


@contextlib.contextmanager
def serve_openai(
    model_dir: Path,
    port: int | None = None,
    timeout: float = 120,
    *,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[tuple[str, str]]:
    """Serve ``model_dir`` with ``transformers serve`` on 127.0.0.1 (CPU, offline); yield ``(base_url, model_name)``.

    ``base_url`` is ``http://127.0.0.1:PORT/v1`` and ``model_name`` the string to pass as ``model``.
    ``port=None`` picks a free port (retried on a lost bind race). ``extra_args`` go to ``transformers
    serve`` (e.g. ``["--continuous-batching"]``), ``env`` overrides the server's environment. Raises
    ``RuntimeError`` with the tail of the server log if it exits or does not answer ``/health`` within
    ``timeout`` seconds. The log is a temp file, removed on a clean exit and kept (its path added as a
    note to the exception) when the ``with`` body raises.
    """
    model_path = Path(model_dir).absolute()
    if not (model_path / "config.json").is_file():
        raise FileNotFoundError(f"no config.json in {model_path}")
    model_name = str(model_path)
    if "@" in model_name:
        raise ValueError(
            f"transformers serve reads '@' as a revision separator; move the model: {model_name}"
        )

    server_env = dict(os.environ)
    server_env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HUB_DISABLE_UPDATE_CHECK="1",  # the CLI otherwise asks PyPI for a newer transformers
        HF_HUB_DISABLE_TELEMETRY="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
    )
    if env:
        server_env.update(env)

    log_fd, log_name = tempfile.mkstemp(prefix="transformers-serve-", suffix=".log")
    os.close(log_fd)
    log_path = Path(log_name)

    attempts = 1 if port is not None else 3
    proc: subprocess.Popen | None = None
    base_url = ""
    t0 = time.monotonic()
    for attempt in range(attempts):
        use_port = port if port is not None else _free_port()
        cmd = [
            *_serve_command(),
            model_name,
            "--device",
            "cpu",
            "--host",
            "127.0.0.1",
            "--port",
            str(use_port),
            *extra_args,
        ]
        with open(log_path, "ab") as log:
            log.write(f"$ {' '.join(cmd)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=server_env
            )
        health = f"http://127.0.0.1:{use_port}/health"
        deadline = t0 + timeout
        while True:
            if proc.poll() is not None:
                break
            if _healthy(health):
                base_url = f"http://127.0.0.1:{use_port}/v1"
                break
            if time.monotonic() > deadline:
                _stop(proc)
                tail = _log_tail(log_path)
                log_path.unlink(missing_ok=True)
                raise RuntimeError(
                    f"transformers serve did not answer {health} within {timeout:.0f} s; log tail:\n{tail}"
                )
            time.sleep(0.2)
        if base_url:
            break
        tail = _log_tail(log_path)
        lost_race = "address already in use" in tail.lower() and port is None
        if not lost_race or attempt == attempts - 1:
            log_path.unlink(missing_ok=True)
            raise RuntimeError(f"transformers serve exited with code {proc.returncode}; log tail:\n{tail}")

    assert proc is not None
    keep_log = False
    try:
        yield base_url, model_name
    except BaseException as e:
        keep_log = True
        if hasattr(e, "add_note"):
            e.add_note(f"transformers serve log: {log_path}\n{_log_tail(log_path)[-1500:]}")
        raise
    finally:
        _stop(proc)
        if not keep_log:
            log_path.unlink(missing_ok=True)
