/*
 * decode_bench.cu — the whole GPU model (spqr_cuda_model) at Llama-2-7B's shapes: prefill and decode
 * speed of fp16 against SpQR and GPTQ weights, with the same synthetic values in every configuration.
 *
 *   spqr-cuda-decode-bench [--layers 32] [--prompt 512] [--decode 128] [--threads N]
 *                          [--configs fp16,spqr-w3,spqr-w3-act8,spqr-w4,gptq-w4] [--json]
 *
 * The model: dim 4096, MLP 11008, 32 heads of 128, vocabulary 32000, RMSNorm weights 1, a random fp32
 * embedding. Every block holds its own device copy of the same seven synthetic matrices
 * (bench/cuda/synth.h: Gaussian bulk, ~1% heavy-tailed weights kept as fp16 outliers for SpQR, a random
 * act-order permutation), so each decoded token reads all 32 blocks' weights from HBM, as a real 7B
 * model does; the head (32000 × 4096) is quantized at 4 bits (the `--head-bits 4` of our w3 files).
 * fp16 is the SpQR w3 model dequantized on upload (spqr_cuda_model_opts.dense16, as `--gpu-f16`): the same
 * values, as 16-bit users would hold them.
 *
 * Per configuration: upload time; weight bytes one token reads; a prompt of random tokens in one
 * forward call (prefill tok/s: the batched path, v12 / cuBLAS); then greedy decode of --decode tokens
 * through the model's CUDA graph with the logits copied to the host every token (decode tok/s, and
 * weight bytes × tok/s). Checks: SpQR w3's prefill and first decode logits against the fp16 model's
 * (its own values in fp16); the other configurations' logits finite (w4 and GPTQ are other weights;
 * act8's deviation from fp16 is printed). Speed figures are printed, never asserted.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <string>
#include <thread>
#include <vector>

#include "cuda/spqr_cuda.h"
extern "C" {
#include "model/model_internal.h"
#include "synth.h"
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

#define OK(x)                                                                    \
    do {                                                                         \
        spqr_status s_ = (x);                                                    \
        if (s_) { fprintf(stderr, "error: %s: %s\n", #x, er.msg); exit(1); } \
    } while (0)

/* The seven matrices of a block (q, k, v, o, gate, up, down) and the head, one quantization. */
struct qset {
    synth_matrix m[8];
};

static const uint32_t DIM = 4096, HID = 11008, VOCAB = 32000;
static const uint32_t SHAPE[8][2] = {{DIM, DIM}, {DIM, DIM}, {DIM, DIM}, {DIM, DIM}, {HID, DIM}, {HID, DIM}, {DIM, HID}, {VOCAB, DIM}};

/* Builds the 8 matrices on 8 threads: kind/wbits/gs for the blocks, 4 bits for the head. */
static void build_set(qset *s, uint32_t kind, uint32_t wbits, uint32_t gs, double out, uint64_t seed) {
    std::vector<std::thread> th;
    std::vector<spqr_status> st(8);
    std::vector<spqr_error> er(8);
    for (int i = 0; i < 8; i++)
        th.emplace_back([&, i]() {
            synth_params p = {kind, SHAPE[i][0], SHAPE[i][1], i == 7 ? 4u : wbits, gs, 3, 16, out, 1, seed + (uint64_t)i};
            st[i] = synth_build(&p, &s->m[i], &er[i]);
        });
    for (auto &t : th) t.join();
    for (int i = 0; i < 8; i++)
        if (st[i]) { fprintf(stderr, "error: synth %dx%d: %s\n", SHAPE[i][0], SHAPE[i][1], er[i].msg); exit(1); }
}

static void free_set(qset *s) {
    for (int i = 0; i < 8; i++) synth_free(&s->m[i]);
}

/* The model of `layers` blocks over one set (the GPU model's dense16 option holds it as fp16). */
struct fake_model {
    spqr_model m;
    std::vector<spqr_layer> layers;
    std::vector<float> ones;
};

static void make_model(fake_model *f, int layers, const qset *s, const float *embed) {
    memset(&f->m, 0, sizeof f->m);
    spqr_config *c = &f->m.cfg;
    snprintf(c->arch, sizeof c->arch, "LlamaForCausalLM");
    c->dim = DIM; c->hidden_dim = HID; c->n_layers = layers; c->n_heads = 32; c->n_kv_heads = 32; c->head_dim = 128;
    c->vocab_size = VOCAB; c->max_seq_len = 4096; c->norm_eps = 1e-5f; c->rope_theta = 10000.f; c->rope_style = SPQR_ROPE_HALF;
    c->bos_id = 1; c->eos_id = 2;
    f->ones.assign(DIM, 1.0f);
    auto lin = [&](int i) {
        spqr_linear L;
        memset(&L, 0, sizeof L);
        L.rows = (int)SHAPE[i][0];
        L.cols = (int)SHAPE[i][1];
        L.q = &s->m[i].view;
        return L;
    };
    f->layers.assign(layers, spqr_layer());
    for (int l = 0; l < layers; l++) {
        spqr_layer *L = &f->layers[l];
        memset(L, 0, sizeof *L);
        L->attn_norm = L->ffn_norm = f->ones.data();
        L->wq = lin(0); L->wk = lin(1); L->wv = lin(2); L->wo = lin(3);
        L->w_gate = lin(4); L->w_up = lin(5); L->w_down = lin(6);
    }
    f->m.layers = f->layers.data();
    f->m.output = lin(7);
    f->m.embed = embed;
    f->m.final_norm = f->ones.data();
}

static double rel(const float *a, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = (double)a[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static bool finite(const std::vector<float> &v) {
    for (float x : v)
        if (!isfinite(x)) return false;
    return true;
}

struct result {
    std::string name;
    double upload_s, mb_per_tok, prefill_tps, decode_tps;
    std::vector<float> pre_logits, dec_logits; /* last prompt token, first decoded token */
};

int main(int argc, char **argv) {
    int layers = 32, prompt = 512, n_decode = 128, threads = 0, json = 0;
    std::string configs = "fp16,spqr-w3,spqr-w3-act8,spqr-w4,gptq-w4";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--layers") && i + 1 < argc) layers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--prompt") && i + 1 < argc) prompt = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--decode") && i + 1 < argc) n_decode = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--configs") && i + 1 < argc) configs = argv[++i];
        else if (!strcmp(argv[i], "--json")) json = 1;
        else {
            fprintf(stderr, "usage: %s [--layers N] [--prompt N] [--decode N] [--threads N] [--configs fp16,spqr-w3,spqr-w3-act8,spqr-w4,gptq-w4] [--json]\n",
                    argv[0]);
            return 2;
        }
    }
    if (layers < 1 || prompt < 1 || prompt > 2048 || n_decode < 1 || n_decode > 2048) {
        fprintf(stderr, "error: --layers >= 1, --prompt and --decode in 1..2048\n");
        return 2;
    }
    auto want = [&](const char *c) { return ("," + configs + ",").find("," + std::string(c) + ",") != std::string::npos; };
    spqr_error er;
    memset(&er, 0, sizeof er);
    const int n_ctx = prompt + n_decode + 8;

    /* embedding and prompt */
    std::vector<float> embed((size_t)VOCAB * DIM);
    uint64_t rng = 12345;
    for (auto &e : embed) e = (float)(0.07 * (synth_uniform(&rng) - 0.5)); /* std 0.02 */
    std::vector<int32_t> ids(prompt);
    for (auto &t : ids) t = 3 + (int32_t)(synth_uniform(&rng) * (VOCAB - 3));
    printf("7B-shaped model: %d blocks of dim %u, MLP %u, 32 heads; vocab %u; prompt %d tokens, decode %d\n", layers, DIM, HID, VOCAB, prompt,
           n_decode);

    std::vector<result> res;
    auto run = [&](const char *name, const qset *s, int dense16, int act8) {
        fake_model f;
        make_model(&f, layers, s, embed.data());
        spqr_cuda_model_opts o;
        memset(&o, 0, sizeof o);
        o.n_ctx = n_ctx;
        o.n_batch = prompt;
        o.act8 = act8;
        o.dense16 = dense16; /* the weights dequantized on the host and held as fp16 */
        o.n_threads = threads;
        double t0 = now();
        spqr_cuda_model *g;
        OK(spqr_cuda_model_new(&f.m, &o, &g, &er));
        result r;
        r.name = name;
        r.upload_s = now() - t0;
        r.mb_per_tok = spqr_cuda_model_weight_bytes(g) / 1e6;
        r.pre_logits.resize(VOCAB);
        r.dec_logits.resize(VOCAB);
        /* prefill (the first call also settles workspaces: time the second) */
        OK(spqr_cuda_forward(g, ids.data(), prompt, 0, 0, r.pre_logits.data(), &er));
        t0 = now();
        OK(spqr_cuda_forward(g, ids.data(), prompt, 0, 0, r.pre_logits.data(), &er));
        r.prefill_tps = prompt / (now() - t0);
        /* decode: the first token compared, three more to capture the graph, then timed */
        std::vector<float> lg(VOCAB);
        int tok = 1;
        OK(spqr_cuda_forward(g, &tok, 1, prompt, 0, r.dec_logits.data(), &er));
        for (int w = 1; w < 4; w++) OK(spqr_cuda_forward(g, &tok, 1, prompt + w, 0, lg.data(), &er));
        t0 = now();
        for (int i = 0; i < n_decode; i++) {
            OK(spqr_cuda_forward(g, &tok, 1, prompt + 4 + i, 0, lg.data(), &er));
            int best = 0;
            for (uint32_t j = 1; j < VOCAB; j++) best = lg[j] > lg[best] ? (int)j : best;
            tok = best;
        }
        r.decode_tps = n_decode / (now() - t0);
        spqr_cuda_model_free(g);
        printf("%-13s upload %6.2f s  %8.1f MB/token  prefill %8.0f tok/s  decode %7.1f tok/s (%6.0f GB/s of weights)\n", name, r.upload_s,
               r.mb_per_tok, r.prefill_tps, r.decode_tps, r.mb_per_tok * r.decode_tps / 1e3);
        fflush(stdout);
        res.push_back(r);
    };

    int fails = 0;
    /* tol < 0: the deviation from ref is printed, only finiteness is checked */
    auto check = [&](const result &a, const result *ref, double tol) {
        const bool fin = finite(a.pre_logits) && finite(a.dec_logits);
        if (ref && tol < 0) {
            printf("%s %s logits finite; against %s: rel %.2e (prefill), %.2e (decode)\n", fin ? "PASS" : "FAIL", a.name.c_str(), ref->name.c_str(),
                   rel(a.pre_logits.data(), ref->pre_logits.data(), VOCAB), rel(a.dec_logits.data(), ref->dec_logits.data(), VOCAB));
            fails += !fin;
            return;
        }
        if (!ref) {
            printf("%s %s logits finite\n", fin ? "PASS" : "FAIL", a.name.c_str());
            fails += !fin;
            return;
        }
        const double ep = rel(a.pre_logits.data(), ref->pre_logits.data(), VOCAB), ed = rel(a.dec_logits.data(), ref->dec_logits.data(), VOCAB);
        const bool ok = fin && ep <= tol && ed <= tol;
        printf("%s %s against %s: logits rel %.2e (prefill), %.2e (decode), tolerance %.0e\n", ok ? "PASS" : "FAIL", a.name.c_str(), ref->name.c_str(), ep,
               ed, tol);
        fails += !ok;
    };

    {
        qset s;
        double t0 = now();
        build_set(&s, SPQR_TK_SPQR, 3, 16, 0.01, 100);
        printf("synthetic SpQR w3 matrices: %.1f s\n", now() - t0);
        if (want("spqr-w3")) run("spqr-w3", &s, 0, 0);
        if (want("spqr-w3-act8")) run("spqr-w3-act8", &s, 0, 1);
        if (want("fp16")) run("fp16", &s, 1, 0);
        free_set(&s);
    }
    if (want("spqr-w4")) {
        qset s;
        build_set(&s, SPQR_TK_SPQR, 4, 16, 0.01, 200);
        run("spqr-w4", &s, 0, 0);
        free_set(&s);
    }
    if (want("gptq-w4")) {
        qset s;
        build_set(&s, SPQR_TK_GPTQ, 4, 128, 0, 300);
        run("gptq-w4", &s, 0, 0);
        free_set(&s);
    }

    const result *f16 = NULL;
    for (const auto &r : res)
        if (r.name == "fp16") f16 = &r;
    for (const auto &r : res) {
        if (r.name == "fp16") check(r, NULL, 0);
        /* fp16 holds SpQR w3's values (rounded to fp16): the two differ by that rounding and the order of
         * the sums, which these 32 random blocks amplify to ~1e-2 (run 29: 9.0e-3). act8 rounds every
         * one-token product's activations to int8 (the head's at the end of the prefill too): its
         * deviation is that rounding's, printed, not checked (its kernel is checked by spqr-cuda-test) */
        else if (f16 && r.name == "spqr-w3") check(r, f16, 2e-2);
        else if (f16 && r.name == "spqr-w3-act8") check(r, f16, -1);
        else check(r, NULL, 0);
    }
    if (f16) {
        printf("\n%-13s %10s %10s %12s %10s\n", "config", "MB/token", "decode", "vs fp16", "prefill");
        for (const auto &r : res)
            printf("%-13s %10.1f %10.1f %11.2fx %10.0f\n", r.name.c_str(), r.mb_per_tok, r.decode_tps, r.decode_tps / f16->decode_tps, r.prefill_tps);
    }
    if (json)
        for (const auto &r : res)
            printf("{\"config\":\"%s\",\"layers\":%d,\"prompt\":%d,\"decode\":%d,\"upload_s\":%.3f,\"mb_per_token\":%.2f,\"prefill_tok_s\":%.1f,"
                   "\"decode_tok_s\":%.2f}\n",
                   r.name.c_str(), layers, prompt, n_decode, r.upload_s, r.mb_per_tok, r.prefill_tps, r.decode_tps);
    printf("%d passed, %d failed\n", (int)res.size() - fails, fails);
    return fails ? 1 : 0;
}
