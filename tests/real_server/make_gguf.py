#!/usr/bin/env python3
"""Write a tiny random-weight Qwen3-architecture GGUF with the real Qwen3 tokenizer.

No torch, no transformers, no downloads: numpy plus the `gguf` package from llama.cpp's
source tree (`--gguf-py`). Weights come from a seeded generator, so the file is the same
on every run. The metadata keys, tensor names and shapes are the ones llama.cpp's
`convert_hf_to_gguf.py` (Qwen3Model -> Qwen2Model -> TextModel, `_set_vocab_gpt2`)
writes for a `Qwen3ForCausalLM`, so `llama-server` loads it as a normal Qwen3 model: BPE
("gpt2") vocabulary with the "qwen2" pre-tokenizer, the 151,669 tokens of tokenizer.json,
its merges, bos/eos/pad ids and the chat template of tokenizer_config.json.

The output head is untied (`output.weight`) and random only in the rows of plain words
(tokens `Ġ[a-z]{3,12}`, e.g. " the", about 24k of them); every other row is zero. With
llama.cpp's default sampling (top-k 40) the model then writes space-separated lowercase
words that re-tokenize to exactly the tokens generated, so the tokenizer-vs-server
agreement of the test measures the client and the server, not the noise of random bytes,
special tokens or broken UTF-8 that a fully random head would emit. The two vocabulary-
sized matrices are stored as Q8_0 (about 10 MiB each); everything else is F16/F32.

Usage: make_gguf.py --gguf-py LLAMA/gguf-py --tokenizer tokenizer.json[.gz]
                    --tokenizer-config tokenizer_config.json --out model.gguf
"""
from __future__ import annotations

import argparse
import gzip
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

# Qwen3 token ids (as in the Hugging Face config of every Qwen3 model).
BOS_ID = 151643  # <|endoftext|>
EOS_ID = 151645  # <|im_end|>


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf-py", required=True, help="llama.cpp's gguf-py folder")
    ap.add_argument("--tokenizer", required=True, help="tokenizer.json or tokenizer.json.gz")
    ap.add_argument("--tokenizer-config", required=True, help="tokenizer_config.json")
    ap.add_argument("--out", required=True)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=32)
    ap.add_argument("--ffn", type=int, default=192)
    ap.add_argument("--ctx", type=int, default=32768, help="training context length written to the file")
    ap.add_argument("--seed", type=int, default=20251126)
    args = ap.parse_args()

    sys.path.insert(0, str(Path(args.gguf_py).resolve()))
    import numpy as np
    import gguf

    tok_path = Path(args.tokenizer)
    opener = gzip.open if tok_path.suffix == ".gz" else open
    with opener(tok_path, "rt", encoding="utf-8") as f:
        tok_json = json.load(f)
    with open(args.tokenizer_config, encoding="utf-8") as f:
        tok_cfg = json.load(f)

    if tok_json["model"]["type"] != "BPE":
        raise SystemExit(f"expected a BPE tokenizer, got {tok_json['model']['type']}")

    # ---- vocabulary, as TextModel.get_vocab_base() builds it (without transformers)
    vocab: dict[str, int] = dict(tok_json["model"]["vocab"])
    added = {t["id"]: t for t in tok_json.get("added_tokens", [])}
    for tid, t in added.items():
        vocab[t["content"]] = tid
    n_vocab = max(vocab.values()) + 1
    reverse = {i: s for s, i in vocab.items()}

    def looks_special(s: str) -> bool:
        return (s.startswith("<|") and s.endswith("|>")) or (s.startswith("<\uff5c") and s.endswith("\uff5c>"))

    tokens: list[str] = []
    toktypes: list[int] = []
    for i in range(n_vocab):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            toktypes.append(gguf.TokenType.UNUSED)
        elif i in added:
            tok = added[i]
            tokens.append(tok["content"])
            if tok.get("special") or looks_special(tok["content"]):
                toktypes.append(gguf.TokenType.CONTROL)
            else:
                toktypes.append(gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(reverse[i])
            toktypes.append(gguf.TokenType.NORMAL)

    # ---- hyperparameters
    L, E, H, KV, D, F = args.layers, args.hidden, args.heads, args.kv_heads, args.head_dim, args.ffn
    if H % KV:
        raise SystemExit("--heads must be a multiple of --kv-heads")

    out = Path(args.out)
    w = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.QWEN3])
    w.add_name("recap-tiny-qwen3")
    w.add_block_count(L)
    w.add_context_length(args.ctx)
    w.add_embedding_length(E)
    w.add_feed_forward_length(F)
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_key_length(D)
    w.add_value_length(D)
    w.add_rope_freq_base(1_000_000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)

    # ---- tokenizer (Qwen2Model.set_vocab -> _set_vocab_gpt2)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(toktypes)
    # SpecialVocab reads merges, special ids, add_*_token and the chat template from a
    # Hugging Face folder; give it one (config.json carries the bos/eos ids as in HF).
    with tempfile.TemporaryDirectory() as tmp:
        with opener(tok_path, "rb") as src, open(Path(tmp) / "tokenizer.json", "wb") as dst:
            shutil.copyfileobj(src, dst)
        shutil.copy(args.tokenizer_config, Path(tmp) / "tokenizer_config.json")
        (Path(tmp) / "config.json").write_text(json.dumps({"bos_token_id": BOS_ID, "eos_token_id": EOS_ID}))
        special = gguf.SpecialVocab(tmp, load_merges=True, n_vocab=n_vocab)
    if not special.merges or not special.chat_template:
        raise SystemExit(f"tokenizer metadata incomplete: {special!r}")
    special.add_to_gguf(w, quiet=True)

    # ---- weights: numpy shape (out, in) == PyTorch layout; GGUF stores it reversed.
    rng = np.random.default_rng(args.seed)

    def mat(rows: int, cols: int) -> "np.ndarray":
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float16)

    def ones(n: int) -> "np.ndarray":
        return np.ones(n, dtype=np.float32)  # 1-D tensors stay F32, as in the converter

    def q8(a: "np.ndarray") -> "np.ndarray":
        return gguf.quants.quantize(a.astype(np.float32), gguf.GGMLQuantizationType.Q8_0)

    name = gguf.TENSOR_NAMES
    T = gguf.MODEL_TENSOR
    q8_0 = gguf.GGMLQuantizationType.Q8_0
    w.add_tensor(name[T.TOKEN_EMBD] + ".weight", q8(mat(n_vocab, E)), raw_dtype=q8_0)
    words = np.array(sorted(i for i, s in reverse.items() if re.fullmatch("\u0120[a-z]{3,12}", s)))
    head = np.zeros((n_vocab, E), dtype=np.float32)
    head[words] = rng.standard_normal((len(words), E), dtype=np.float32) * 0.5
    w.add_tensor(name[T.OUTPUT] + ".weight", q8(head), raw_dtype=q8_0)
    w.add_tensor(name[T.OUTPUT_NORM] + ".weight", ones(E))
    for b in range(L):
        def t(kind: "gguf.MODEL_TENSOR") -> str:
            return name[kind].format(bid=b) + ".weight"
        w.add_tensor(t(T.ATTN_NORM), ones(E))
        w.add_tensor(t(T.ATTN_Q), mat(H * D, E))
        w.add_tensor(t(T.ATTN_K), mat(KV * D, E))
        w.add_tensor(t(T.ATTN_V), mat(KV * D, E))
        w.add_tensor(t(T.ATTN_Q_NORM), ones(D))
        w.add_tensor(t(T.ATTN_K_NORM), ones(D))
        w.add_tensor(t(T.ATTN_OUT), mat(E, H * D))
        w.add_tensor(t(T.FFN_NORM), ones(E))
        w.add_tensor(t(T.FFN_GATE), mat(F, E))
        w.add_tensor(t(T.FFN_UP), mat(F, E))
        w.add_tensor(t(T.FFN_DOWN), mat(E, F))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB): qwen3, {L} layers, hidden {E}, "
          f"{H} heads ({KV} kv) x {D}, ffn {F}, vocab {n_vocab} ({len(words)} in the output head), bos {special.special_token_ids.get('bos')}, "
          f"eos {special.special_token_ids.get('eos')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
