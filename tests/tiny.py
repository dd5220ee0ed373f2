"""A tiny random llama with a small byte-level BPE tokenizer and a ChatML chat template.

Built from scratch (no hub): the tokenizer is trained in milliseconds on a few sentences, the model has
two layers and a hidden size of 32, so generation and training steps take milliseconds on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = [
    "Tom has 3 boxes with 12 apples each. How many apples does he have?",
    "The answer is 36. #### 36",
    "Convert 5 kilometres to metres. Reverse the string 'hello'.",
    "Score the response from 1 to 5. [RESULT] 4",
    "What is the capital of France? Paris is the capital.",
] * 4


def build_tiny_model(path: str | Path, seed: int = 0, vocab_size: int = 384, head_dim: int = 8) -> Path:
    """Write a tiny random LlamaForCausalLM and its tokenizer to ``path``; return ``path``."""
    path = Path(path)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(path)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=head_dim,  # vLLM's CPU attention needs 32 or more
        max_position_embeddings=1024,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
        # A wider init than the default 0.02, so greedy outputs differ from prompt to prompt (with 0.02
        # every prompt decodes to the same repeated newline and equality checks would pass trivially).
        initializer_range=0.3,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = fast.eos_token_id
    model.generation_config.pad_token_id = fast.pad_token_id
    model.save_pretrained(path)
    return path


def train_to_answer(path: str | Path, prompts: list[str], answer: str, steps: int = 60) -> Path:
    """Teach the tiny model at ``path`` to reply ``answer`` to any chat prompt like ``prompts``; save it.

    A few dozen Adam steps on one padded batch are enough for a 2-layer model to learn the reply (about
    8 s on a CPU), which gives tests a real model that writes a parsable judge answer.
    """
    return train_to_answers(path, [([{"role": "user", "content": p}], answer) for p in prompts], steps)


def train_to_answers(path: str | Path, cases: list[tuple[list[dict], str]], steps: int = 60) -> Path:
    """Teach the tiny model at ``path`` each case's reply to its conversation; save it. A conversation that
    ends with an assistant message is continued (a prefilled answer), else a new answer is opened."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    heads, replies = [], []
    for conv, answer in cases:
        prefilled = conv[-1]["role"] == "assistant"
        text = tok.apply_chat_template(
            conv, tokenize=False, add_generation_prompt=not prefilled, continue_final_message=prefilled
        )
        heads.append(tok(text, add_special_tokens=False)["input_ids"])
        replies.append(tok(answer + tok.eos_token, add_special_tokens=False)["input_ids"])
    width = max(len(h) + len(r) for h, r in zip(heads, replies, strict=True))
    ids = torch.full((len(heads), width), tok.pad_token_id)
    labels = torch.full((len(heads), width), -100)
    mask = torch.zeros((len(heads), width), dtype=torch.long)
    for i, (head, reply) in enumerate(zip(heads, replies, strict=True)):
        n = len(head) + len(reply)
        ids[i, :n] = torch.tensor(head + reply)
        labels[i, len(head) : n] = torch.tensor(reply)
        mask[i, :n] = 1
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(steps):
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(path)
    return Path(path)
