"""Counts `analyze dataset` rows the way a Python server does, independently of Recap.

Usage: python tests/dataset_check.py ANALYZE_BIN OUT_DIR

Generates datasets with the given `analyze` binary (Qwen3 chat and completions, DeepSeek V3 chat
through its own template, GPT-2 with a
ChatML template file, fixed and distributed lengths, shared prefixes), then counts every row
with Hugging Face `tokenizers` and renders chat rows with `jinja2` configured as transformers'
`apply_chat_template` does (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks), which
is what vLLM and SGLang run. Every row's count must equal its `isl_tokens`. Prints one line per
dataset and a closing `exactness:` line; exits non-zero on any mismatch.
"""
import gzip
import json
import pathlib
import subprocess
import sys

import jinja2
import jinja2.ext
import jinja2.sandbox
from tokenizers import Tokenizer

analyze, out = sys.argv[1], pathlib.Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
root = pathlib.Path(__file__).resolve().parent.parent
fixtures = root / "fixtures"


def load_tokenizer(name):
    return Tokenizer.from_str(gzip.decompress((fixtures / "tokenizers" / name / "tokenizer.json.gz").read_bytes()).decode())


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
    path = out / f"{name}.jsonl"
    cmd = [analyze, "dataset", "synthetic", "--tokenizer",
           str(fixtures / "tokenizers" / tokenizer / "tokenizer.json.gz"), "--out", str(path), "-q", *args]
    if template_path and template_path.suffix == ".jinja":
        cmd += ["--chat-template", str(template_path)]
    subprocess.run(cmd, check=True)
    tok = load_tokenizer(tokenizer)
    render = None
    if template_path:
        source, bos, eos = template_of(template_path)
        compiled = hf_env().from_string(source)
        render = lambda messages: compiled.render(messages=messages, add_generation_prompt=True,
                                                  bos_token=bos, eos_token=eos)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    bad = []
    for i, row in enumerate(rows):
        if "messages" in row:
            n = len(tok.encode(render(row["messages"]), add_special_tokens=False).ids)
        else:
            n = len(tok.encode(row["prompt"], add_special_tokens=True).ids)
        if n != row["isl_tokens"]:
            bad.append((i, n, row["isl_tokens"]))
    print(f"{name}: {len(rows) - len(bad)} of {len(rows)} rows exact" + (f"; wrong: {bad[:5]}" if bad else ""))
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
results = [check(*c) for c in cases]
print(f"exactness: {sum(results)} of {len(results)} datasets exact on every row")
sys.exit(0 if all(results) else 1)
