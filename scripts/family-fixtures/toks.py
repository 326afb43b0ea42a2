"""Small trained tokenizers with each family's special tokens and chat template. The tokenizer is not under test
in the parity fixtures (ids are fed directly); it is there so hf/ is a complete model folder and the converter
writes a real vocabulary."""

import io
import json
import random
from pathlib import Path

import sentencepiece as spm
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

LLAMA_TEMPLATES = Path("/work/llama-src/llama_cpp_python-0.3.36/vendor/llama.cpp/models/templates")

# The real checkpoints' templates where llama.cpp's sdist does not ship them (text-only parts).
INLINE_TEMPLATES = {
    "llama2": (
        "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
        "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
        "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
        "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
        "{% if loop.index0 == 0 and system_message != false %}"
        "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
        "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
        "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
        "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
    ),
    "mistral": (
        "{{ bos_token }}{% for message in messages %}"
        "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
        "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
        "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
        "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
    ),
    "gemma3": (
        "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}"
        "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}{%- set loop_messages = messages[1:] -%}"
        "{%- else -%}{%- set first_user_prefix = \"\" -%}{%- set loop_messages = messages -%}{%- endif -%}"
        "{%- for message in loop_messages -%}{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
        "{{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}"
        "{%- endif -%}{%- if (message['role'] == 'assistant') -%}{%- set role = \"model\" -%}{%- else -%}"
        "{%- set role = message['role'] -%}{%- endif -%}"
        "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}"
        "{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{'<start_of_turn>model\n'}}{%- endif -%}"
    ),
    "phi4mini": (
        "{% for message in messages %}{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% else %}{{ eos_token }}{% endif %}"
    ),
}

WORDS = (
    "the quick brown fox jumps over a lazy dog while models attend to tokens in windows of eight and rope "
    "rotates pairs of dimensions ; bias norm scale soft cap 12 345 6789 ( ) { } fn main return <tag> hello "
    "world Grüße café naïve"
).split()


def _corpus(n=3000, seed=0):
    rnd = random.Random(seed)
    return [" ".join(rnd.choice(WORDS) for _ in range(rnd.randint(4, 16))) for _ in range(n)]


def template(name):
    if name in INLINE_TEMPLATES:
        return INLINE_TEMPLATES[name]
    return (LLAMA_TEMPLATES / name).read_text()


def _spm(out: Path, fam: dict, vocab: int):
    s = fam["specials"]
    gemma = fam["norm"] == "gemma"
    ids = dict(pad_id=0, eos_id=1, bos_id=2, unk_id=3) if gemma else dict(unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
    pieces = {f"{k}_piece": s[k] for k in ("pad", "eos", "bos", "unk") if s.get(k) and (k != "pad" or gemma)}
    # An eos that is not </s> (Phi-3's <|endoftext|>) is a user-defined piece; SentencePiece keeps </s> too.
    if not gemma:
        pieces["eos_piece"] = "</s>"
    user = [t for t in [s["eos"]] + fam["extra_specials"] if t not in pieces.values()]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus()), model_writer=buf, vocab_size=vocab, model_type="bpe",
        user_defined_symbols=user, hard_vocab_limit=False, minloglevel=2, normalization_rule_name="identity",
        **ids, **pieces)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.model").write_bytes(buf.getvalue())
    cls = "GemmaTokenizer" if gemma else "LlamaTokenizer"
    from transformers import GemmaTokenizer, LlamaTokenizer
    kw = dict(bos_token=s["bos"], eos_token=s["eos"], unk_token=s.get("unk"), pad_token=s.get("pad"),
              additional_special_tokens=[t for t in user if t != s["eos"]])
    if gemma:
        kw["mask_token"] = None
    tok = (GemmaTokenizer if gemma else LlamaTokenizer).from_pretrained(out, **kw)
    return tok, cls


def _bpe(fam: dict, vocab: int):
    s = fam["specials"]
    specials = [t for t in [s.get("bos"), s["eos"], s.get("pad")] + fam["extra_specials"] if t]
    specials = list(dict.fromkeys(specials))
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab - len(specials), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(_corpus(), trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=s.get("bos"), eos_token=s["eos"],
                                  pad_token=s.get("pad"), additional_special_tokens=specials)
    return tok, fam.get("tokenizer_class", "PreTrainedTokenizerFast")


def write(out: Path, fam: dict, vocab: int) -> int:
    """Writes the tokenizer files into `out` (hf/); returns the vocabulary size (every id, added ones too) and
    the bos/eos/pad ids for config.json."""
    tok, cls = _spm(out, fam, vocab) if fam["tok"] == "spm" else _bpe(fam, vocab)
    tok.chat_template = template(fam["template"])
    tok.save_pretrained(out)
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    for k in ("vocab_file", "is_local", "local_files_only"):
        cfg.pop(k, None)
    cfg["tokenizer_class"] = cls
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
    back = AutoTokenizer.from_pretrained(out)
    ids = {f"{k}_token_id": back.convert_tokens_to_ids(fam["specials"][k]) if fam["specials"].get(k) else None
           for k in ("bos", "eos", "pad")}
    return len(back), ids
