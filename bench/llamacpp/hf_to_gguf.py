#!/usr/bin/python3
"""Writes a Hugging Face Llama checkpoint (safetensors, F32/F16/BF16) as an F32 GGUF for llama.cpp,
so that llama.cpp can be measured on the same model as spqr (bench/llamacpp/compare.sh).

Needs numpy and the gguf-py package of a llama.cpp checkout (--gguf-py DIR). The tokenizer is the
Llama-2 SentencePiece vocabulary; its GGUF fields are copied from a vocab-only GGUF (--vocab), as
evalmodel uses that tokenizer. Q and K rows are permuted from HF's rotate-half order to the
interleaved order llama.cpp's RoPE expects (what llama.cpp's own converter does for Llama).

usage: hf_to_gguf.py MODEL_DIR OUT.gguf --gguf-py LLAMA_CPP/gguf-py --vocab VOCAB.gguf
"""
import argparse
import json
import os
import struct
import sys

import numpy as np


def read_safetensors(path):
    """{name: float32 array} of one safetensors file."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            a, b = info["data_offsets"]
            f.seek(base + a)
            raw = f.read(b - a)
            dt = info["dtype"]
            if dt == "F32":
                x = np.frombuffer(raw, dtype="<f4")
            elif dt == "F16":
                x = np.frombuffer(raw, dtype="<f2").astype(np.float32)
            elif dt == "BF16":
                x = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
            else:
                sys.exit(f"{path}: tensor {name}: dtype {dt} not supported")
            out[name] = x.reshape(info["shape"]).copy()
        return out


def permute(w, n_head):
    """HF rotate-half rows -> interleaved pairs, per head (llama.cpp's convention)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--gguf-py", required=True)
    ap.add_argument("--vocab", required=True)
    a = ap.parse_args()
    sys.path.insert(0, a.gguf_py)
    import gguf  # noqa: E402

    cfg = json.load(open(os.path.join(a.model, "config.json")))
    if cfg.get("model_type") != "llama":
        sys.exit("only Llama checkpoints are supported")
    idx = os.path.join(a.model, "model.safetensors.index.json")
    files = sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx) else ["model.safetensors"]
    W = {}
    for fn in files:
        W.update(read_safetensors(os.path.join(a.model, fn)))

    nh, nkv, L = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["num_hidden_layers"]
    dim = cfg["hidden_size"]
    hd = cfg.get("head_dim", dim // nh)
    theta = cfg.get("rope_parameters", {}).get("rope_theta", cfg.get("rope_theta", 10000.0))
    w = gguf.GGUFWriter(a.out, "llama")
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(dim)
    w.add_block_count(L)
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(nh)
    w.add_head_count_kv(nkv)
    w.add_rope_dimension_count(hd)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_freq_base(theta)
    w.add_vocab_size(cfg["vocab_size"])
    w.add_file_type(0)  # all F32

    r = gguf.GGUFReader(a.vocab)
    fields = r.fields
    toks = [bytes(fields["tokenizer.ggml.tokens"].parts[i]).decode("utf-8") for i in fields["tokenizer.ggml.tokens"].data]
    scores = [float(fields["tokenizer.ggml.scores"].parts[i][0]) for i in fields["tokenizer.ggml.scores"].data]
    types = [int(fields["tokenizer.ggml.token_type"].parts[i][0]) for i in fields["tokenizer.ggml.token_type"].data]
    if len(toks) != cfg["vocab_size"]:
        sys.exit(f"{a.vocab}: {len(toks)} tokens, the model has {cfg['vocab_size']}")
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(cfg.get("bos_token_id", 1))
    w.add_eos_token_id(cfg.get("eos_token_id", 2))
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    def t(name, x):
        w.add_tensor(name, np.ascontiguousarray(x, dtype=np.float32))

    t("token_embd.weight", W["model.embed_tokens.weight"])
    t("output_norm.weight", W["model.norm.weight"])
    if not cfg.get("tie_word_embeddings", False):
        t("output.weight", W["lm_head.weight"])
    for i in range(L):
        p = f"model.layers.{i}."
        t(f"blk.{i}.attn_norm.weight", W[p + "input_layernorm.weight"])
        t(f"blk.{i}.attn_q.weight", permute(W[p + "self_attn.q_proj.weight"], nh))
        t(f"blk.{i}.attn_k.weight", permute(W[p + "self_attn.k_proj.weight"], nkv))
        t(f"blk.{i}.attn_v.weight", W[p + "self_attn.v_proj.weight"])
        t(f"blk.{i}.attn_output.weight", W[p + "self_attn.o_proj.weight"])
        t(f"blk.{i}.ffn_norm.weight", W[p + "post_attention_layernorm.weight"])
        t(f"blk.{i}.ffn_gate.weight", W[p + "mlp.gate_proj.weight"])
        t(f"blk.{i}.ffn_up.weight", W[p + "mlp.up_proj.weight"])
        t(f"blk.{i}.ffn_down.weight", W[p + "mlp.down_proj.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
