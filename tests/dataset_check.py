"""Counts `analyze dataset` rows the way a Python server does, independently of Recap.

Usage: python tests/dataset_check.py ANALYZE_BIN OUT_DIR

Generates datasets with the given `analyze` binary (Qwen3 chat and completions, DeepSeek V3 chat
through its own template, GPT-2 with a
ChatML template file, fixed and distributed lengths, shared prefixes), then counts every row
with Hugging Face `tokenizers` and renders chat rows with `jinja2` configured as transformers'
`apply_chat_template` does (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks), which
is what vLLM and SGLang run. Every row's count must equal its `isl_tokens`. With
`--shared-prefix N`, every two rows of a group must also start with the same token ids up to
and including the N-th token of content (after BOS or the template's opening tokens). Two
tokenizers are derived here, the same way on every run: Llama-3 style (GPT-2's vocabulary
behind Llama-3's split regex, BOS added by a `TemplateProcessing`) and SentencePiece style
(a BPE trained here on the word list, Llama 2's `Prepend("▁")` + `Replace` normalizer, no
pre-tokenizer, `<s>` added). Prints one line per dataset and a closing `exactness:` line;
exits non-zero on any mismatch.
"""
import gzip
import itertools
import json
import pathlib
import random
import subprocess
import sys

import jinja2
import jinja2.ext
import jinja2.sandbox
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

analyze, out = sys.argv[1], pathlib.Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
root = pathlib.Path(__file__).resolve().parent.parent
fixtures = root / "fixtures"


def tokenizer_path(name):
    derived = out / "tokenizers" / name / "tokenizer.json"
    return derived if derived.exists() else fixtures / "tokenizers" / name / "tokenizer.json.gz"


def load_tokenizer(name):
    path = tokenizer_path(name)
    data = path.read_bytes()
    return Tokenizer.from_str((gzip.decompress(data) if path.suffix == ".gz" else data).decode())


def bos_template(bos, bos_id):
    return {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}}}


def derive_tokenizers():
    """Writes the Llama-3-style and SentencePiece-style tokenizers under OUT_DIR/tokenizers."""
    gpt2 = json.loads(gzip.decompress((fixtures / "tokenizers" / "gpt2" / "tokenizer.json.gz").read_bytes()))
    gpt2["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
         "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    gpt2["post_processor"] = {"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        bos_template("<|endoftext|>", 50256)]}
    # SentencePiece style: merges learnt within words only (Metaspace split while training), then
    # Llama 2's layout: `▁` prepended and spaces replaced by the normalizer, no pre-tokenizer.
    words = [w for w in (root / "analyze" / "src" / "dataset" / "words.txt").read_text().splitlines()
             if w and not w.startswith("#")]
    rng = random.Random(7)
    corpus = []
    for _ in range(3000):
        sentence = [rng.choice(words[:1200]) for _ in range(rng.randint(6, 18))]
        corpus.append(" ".join([sentence[0].capitalize(), *sentence[1:]]) + ".")
    sp = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
    sp.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    sp.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=4000, special_tokens=["<unk>", "<s>", "</s>"],
                                                       show_progress=False))
    sp = json.loads(sp.to_str())
    sp["pre_tokenizer"] = None
    sp["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "\u2581"}, {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
    sp["post_processor"] = bos_template("<s>", 1)
    sp["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    for name, data in [("llama3_style", gpt2), ("sentencepiece_style", sp)]:
        folder = out / "tokenizers" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tokenizer.json").write_text(json.dumps(data))


def hf_env():
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                       extensions=[jinja2.ext.loopcontrols])

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env.globals["raise_exception"] = raise_exception
    return env


def template_of(path):
    if path.suffix == ".json":
        config = json.loads(path.read_text())
        # A special token is a string or, in older configs (DeepSeek V3), an AddedToken object.
        text = lambda t: (t.get("content") if isinstance(t, dict) else t) or ""
        return config["chat_template"], text(config.get("bos_token")), text(config.get("eos_token"))
    return path.read_text(), "", ""


def check(name, tokenizer, template_path, args):
    prefix = int(args[args.index("--shared-prefix") + 1]) if "--shared-prefix" in args else 0
    path = out / f"{name}.jsonl"
    cmd = [analyze, "dataset", "synthetic", "--tokenizer", str(tokenizer_path(tokenizer)), "--out", str(path), "-q",
           *args]
    if template_path and template_path.suffix == ".jinja":
        cmd += ["--chat-template", str(template_path)]
    if subprocess.run(cmd).returncode != 0:
        print(f"{name}: analyze failed")
        return False
    tok = load_tokenizer(tokenizer)
    render = None
    if template_path:
        source, bos, eos = template_of(template_path)
        compiled = hf_env().from_string(source)
        render = lambda messages: compiled.render(messages=messages, add_generation_prompt=True,
                                                  bos_token=bos, eos_token=eos)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    bad = []
    groups = {}
    for i, row in enumerate(rows):
        if "messages" in row:
            text = render(row["messages"])
            ids = tok.encode(text, add_special_tokens=False).ids
            # Tokens before the content: the template's opening (its BOS text, role header).
            head = len(tok.encode(text[:text.index(row["messages"][0]["content"])], add_special_tokens=False).ids)
        else:
            enc = tok.encode(row["prompt"], add_special_tokens=True)
            ids = enc.ids
            head = next((k for k, m in enumerate(enc.special_tokens_mask) if not m), len(ids))  # BOS
        if len(ids) != row["isl_tokens"]:
            bad.append((i, len(ids), row["isl_tokens"]))
        if "prefix_group" in row:
            groups.setdefault(row["prefix_group"], []).append((i, ids[:head + prefix]))
    print(f"{name}: {len(rows) - len(bad)} of {len(rows)} rows exact" + (f"; wrong: {bad[:5]}" if bad else ""))
    if prefix:
        # Every two rows of a group: the same ids through the prefix's N-th content token.
        split = [(g, i, j, next(k for k, (x, y) in enumerate(zip(a, b)) if x != y))
                 for g, m in groups.items() for (i, a), (j, b) in itertools.combinations(m, 2) if a != b]
        print(f"{name}: {len(groups)} prefix groups, " + (
            f"first {prefix} content tokens identical within every group" if not split else
            f"{len(split)} row pairs differ within the prefix (group, rows, first differing token): {split[:3]}"))
        bad += split
        if len(groups) < 2:
            bad.append("fewer than 2 prefix groups")
    return not bad


qwen3_config = fixtures / "tokenizers" / "qwen3" / "tokenizer_config.json"
deepseek_config = fixtures / "tokenizers" / "deepseek_v3" / "tokenizer_config.json"
chatml = fixtures / "templates" / "chatml.jinja"
cases = [
    ("qwen3-chat-fixed", "qwen3", qwen3_config, ["--count", "200", "--isl", "512", "--osl", "64"]),
    ("qwen3-chat-normal-prefix", "qwen3", qwen3_config,
     ["--count", "200", "--isl", "800", "--isl-stddev", "200", "--osl", "64", "--shared-prefix", "256",
      "--prefix-groups", "4"]),
    ("qwen3-completions-uniform", "qwen3", None,
     ["--count", "200", "--isl", "uniform:16:1500", "--osl", "8", "--completions"]),
    ("deepseek_v3-chat-normal", "deepseek_v3", deepseek_config,
     ["--count", "200", "--isl", "700", "--isl-stddev", "150", "--osl", "64"]),
    ("gpt2-chatml-normal", "gpt2", chatml, ["--count", "200", "--isl", "600", "--isl-stddev", "150", "--osl", "8"]),
    ("gpt2-completions-prefix", "gpt2", None,
     ["--count", "200", "--isl", "700", "--osl", "8", "--shared-prefix", "300", "--prefix-groups", "3",
      "--completions"]),
]
# Llama-3 style (BOS added) and SentencePiece style, completions: 100 tokens of content after BOS.
prefix_100 = ["--count", "120", "--isl", "uniform:110:600", "--osl", "8", "--shared-prefix", "100",
              "--prefix-groups", "4", "--completions"]
cases += [
    ("llama3_style-completions-prefix", "llama3_style", None, prefix_100),
    ("sentencepiece_style-completions-prefix", "sentencepiece_style", None, prefix_100),
    ("deepseek_v3-chat-prefix", "deepseek_v3", deepseek_config,
     ["--count", "60", "--isl", "500", "--osl", "8", "--shared-prefix", "100", "--prefix-groups", "4"]),
]
derive_tokenizers()
results = [check(*c) for c in cases]
print(f"exactness: {sum(results)} of {len(results)} datasets exact on every row")
sys.exit(0 if all(results) else 1)
