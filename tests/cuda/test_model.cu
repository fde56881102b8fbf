/*
 * test_model.cu — the GPU model (spqr_cuda_model) against the CPU forward pass (spqr_ctx_forward),
 * on a model file loaded with the public API.
 *   logits:  prefill of P tokens (all logits) then D decode steps, CPU vs GPU, ‖g − c‖ / ‖c‖ per call
 *            (tolerance 1e-3 against the CPU's fp32: quantized layers run the tensor-core kernel with
 *            fp16 weights and activations, and with --dense16 or in a model without quantized layers
 *            every matrix is held as fp16)
 *   ppl:     perplexity (GPTQ protocol: BOS + text in chunks of --ctx, every position but the last
 *            scored) over --chunks chunks on the CPU (spqr_ppl_eval) and the GPU; relative difference
 *            (tolerance 1e-3); --gpu-chunks N: also the GPU alone over N chunks (0: all)
 *   decode:  GPU decode speed: --decode N tokens after a 16-token prompt (graph replay; also without)
 *   --act8:  decode with 8-bit activations on both sides (spqr_ctx_opts.act8, spqr_cuda_model_opts.act8;
 *            the CPU rounds them where it has VNNI kernels); decode logits' tolerance 2e-2, the
 *            rounding's own size (a rounding flips where the inputs differ in their last bits)
 * Usage: spqr-cuda-model-test MODEL TEXT [--dense16] [--act8] [--ctx N] [--chunks N] [--gpu-chunks N]
 *        [--decode N] [--threads N]
 * Without a CUDA device it prints SKIPPED and exits 0.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <vector>

#include <cuda_runtime.h>

#include "cuda/spqr_cuda.h"
extern "C" {
#include "model/model_internal.h"
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static double rel(const float *a, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    double e = sqrt(num / (den > 0 ? den : 1));
    return isfinite(e) ? e : INFINITY;
}

/* Mean NLL of the targets of rows [0, n) of logits. */
static double nll_rows(const float *lg, int n, int V, const int32_t *targets) {
    double s = 0;
    for (int i = 0; i < n; i++) {
        const float *l = lg + (size_t)i * V;
        double mx = -INFINITY;
        for (int j = 0; j < V; j++) mx = l[j] > mx ? l[j] : mx;
        double z = 0;
        for (int j = 0; j < V; j++) z += exp((double)l[j] - mx);
        s += -((double)l[targets[i]] - mx - log(z));
    }
    return s;
}

#define OK(x)                                                                             \
    do {                                                                                  \
        if ((x) != SPQR_OK) { printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, er.msg); return 1; } \
    } while (0)

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s MODEL TEXT [--dense16] [--act8] [--ctx N] [--chunks N] [--gpu-chunks N] [--decode N] [--threads N]\n", argv[0]); return 2; }
    const char *mpath = argv[1], *tpath = argv[2];
    int dense16 = 0, act8 = 0, ctxlen = 512, chunks = 2, gpu_chunks = -1, n_decode = 128, threads = 0;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--dense16")) dense16 = 1;
        else if (!strcmp(argv[i], "--act8")) act8 = 1;
        else if (!strcmp(argv[i], "--ctx") && i + 1 < argc) ctxlen = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--chunks") && i + 1 < argc) chunks = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--gpu-chunks") && i + 1 < argc) gpu_chunks = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--decode") && i + 1 < argc) n_decode = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else { fprintf(stderr, "unknown argument %s\n", argv[i]); return 2; }
    }
    if (spqr_cuda_device_count() <= 0) { printf("SKIPPED: no CUDA device\n"); return 0; }
    spqr_error er;
    spqr_model *m;
    OK(spqr_model_load(mpath, NULL, &m, &er));
    const spqr_config *cfg = spqr_model_config(m);
    const int V = cfg->vocab_size;
    /* text */
    FILE *f = fopen(tpath, "rb");
    if (!f) { printf("FAIL: cannot open %s\n", tpath); return 1; }
    fseek(f, 0, SEEK_END);
    long tl = ftell(f);
    fseek(f, 0, SEEK_SET);
    std::vector<char> text(tl + 1);
    if (fread(text.data(), 1, tl, f) != (size_t)tl) { printf("FAIL: read %s\n", tpath); return 1; }
    fclose(f);
    int32_t *ids;
    size_t nids;
    OK(spqr_tokenizer_encode(spqr_model_tokenizer(m), text.data(), (size_t)tl, 1, &ids, &nids, &er));
    printf("model %s: dim %d, layers %d, heads %d/%d, vocab %d; %zu tokens of %s%s\n", mpath, cfg->dim, cfg->n_layers, cfg->n_heads, cfg->n_kv_heads, V,
           nids, tpath, dense16 ? "; GPU weights: fp16 (dense16)" : "");

    spqr_ctx_opts co;
    memset(&co, 0, sizeof co);
    co.n_ctx = ctxlen;
    co.n_batch = ctxlen < 512 ? ctxlen : 512;
    co.n_threads = threads;
    co.act8 = act8;
    spqr_ctx *cpu;
    OK(spqr_ctx_new(m, &co, &cpu, &er));
    const bool cpu_act8 = act8 && strstr(spqr_ctx_kernels(cpu), "+act8") != NULL;
    spqr_cuda_model_opts go;
    memset(&go, 0, sizeof go);
    go.n_ctx = ctxlen;
    go.n_batch = co.n_batch;
    go.dense16 = dense16;
    go.act8 = act8;
    go.n_threads = threads;
    double t0 = now();
    spqr_cuda_model *g;
    OK(spqr_cuda_model_new(m, &go, &g, &er));
    printf("upload: %.2f s, %.1f MB of weights per decoded token\n", now() - t0, spqr_cuda_model_weight_bytes(g) / 1e6);
    int fails = 0;
    /* fp16 weights and activations in the GPU's products (dense16, the MMA kernel) against the CPU's fp32: 1e-3 */
    /* act8: an int8 rounding flips where the two sides' inputs differ in the last bits (the GPU prefill's
     * fp16 products), so decode logits agree to the rounding's own size, 2e-2, even when the CPU rounds too */
    const double tol_logits = 1e-3, tol_decode = act8 ? 2e-2 : 1e-3;
    if (act8) printf("act8: GPU decode with 8-bit activations; CPU %s\n", cpu_act8 ? "too (+act8)" : "without (no VNNI kernels)");

    /* logits: prefill P, then D decode steps */
    {
        const int P = 150, D = 8; /* decode at 150..157: three of one-token attention's 64-position chunks */
        std::vector<float> lg((size_t)P * V);
        OK(spqr_ctx_forward(cpu, ids, P, 0, 1, &er));
        OK(spqr_cuda_forward(g, ids, P, 0, 1, lg.data(), &er));
        double e = rel(lg.data(), spqr_ctx_logits(cpu), (size_t)P * V), worst = e, worst_d = 0;
        printf("logits prefill n=%d: rel %.2e\n", P, e);
        for (int d = 0; d < D; d++) {
            OK(spqr_ctx_forward(cpu, ids + P + d, 1, P + d, 0, &er));
            OK(spqr_cuda_forward(g, ids + P + d, 1, P + d, 0, lg.data(), &er));
            e = rel(lg.data(), spqr_ctx_logits(cpu), V);
            worst_d = fmax(worst_d, e);
            printf("logits decode pos %d: rel %.2e\n", P + d, e);
        }
        const bool ok = worst <= tol_logits && worst_d <= tol_decode;
        fails += !ok;
        printf("%s logits: max rel %.2e prefill (tolerance %.0e), %.2e decode (tolerance %.0e)\n", ok ? "PASS" : "FAIL", worst, tol_logits, worst_d,
               tol_decode);
    }

    /* perplexity, CPU vs GPU */
    {
        spqr_ppl_opts po;
        memset(&po, 0, sizeof po);
        po.n_ctx = ctxlen;
        po.max_chunks = chunks;
        spqr_ppl_result pr;
        t0 = now();
        OK(spqr_ppl_eval(cpu, ids, nids, &po, &pr, &er));
        const double tc = now() - t0;
        auto gpu_ppl = [&](int nch, double *secs) -> double {
            const int nb = go.n_batch;
            std::vector<float> lg((size_t)nb * V);
            double tot = 0;
            const double s0 = now();
            for (int ci = 0; ci < nch; ci++) {
                const int32_t *chunk = ids + (size_t)ci * ctxlen;
                for (int p = 0; p < ctxlen - 1; p += nb) {
                    const int n = ctxlen - p < nb ? ctxlen - p : nb;
                    if (spqr_cuda_forward(g, chunk + p, n, p, 1, lg.data(), &er)) { printf("FAIL: %s\n", er.msg); return NAN; }
                    const int hi = p + n > ctxlen - 1 ? ctxlen - 1 - p : n;
                    tot += nll_rows(lg.data(), hi, V, chunk + p + 1);
                }
            }
            *secs = now() - s0;
            return exp(tot / ((double)nch * (ctxlen - 1)));
        };
        double tg;
        const double pg = gpu_ppl(pr.chunks, &tg);
        const double d = fabs(pg - pr.ppl) / pr.ppl;
        const bool ok = d <= 1e-3;
        fails += !ok;
        printf("%s ppl over %d chunks of %d: CPU %.6f (%.1f s), GPU %.6f (%.1f s), rel diff %.2e (tolerance 1e-3)\n", ok ? "PASS" : "FAIL", pr.chunks,
               ctxlen, pr.ppl, tc, pg, tg, d);
        spqr_free(pr.chunk_nll);
        if (gpu_chunks >= 0) {
            int nch = (int)(nids / ctxlen);
            if (gpu_chunks > 0 && gpu_chunks < nch) nch = gpu_chunks;
            const double pa = gpu_ppl(nch, &tg);
            printf("GPU ppl over %d chunks of %d: %.4f (%.1f s, %.0f tok/s)\n", nch, ctxlen, pa, tg, nch * (double)ctxlen / tg);
        }
    }

    /* decode speed */
    if (n_decode > 0) {
        std::vector<float> lg(V);
        const int P = 16;
        for (int graph = 1; graph >= 0; graph--) {
            spqr_cuda_model *gd = g;
            if (!graph) {
                go.no_graph = 1;
                OK(spqr_cuda_model_new(m, &go, &gd, &er));
            }
            OK(spqr_cuda_forward(gd, ids, P, 0, 0, lg.data(), &er));
            int tok = ids[P];
            for (int w = 0; w < 3; w++) OK(spqr_cuda_forward(gd, &tok, 1, P + w, 0, lg.data(), &er)); /* warm-up, graph capture */
            const int n = n_decode < ctxlen - P - 4 ? n_decode : ctxlen - P - 4;
            t0 = now();
            for (int i = 0; i < n; i++) {
                OK(spqr_cuda_forward(gd, &tok, 1, P + i, 0, lg.data(), &er));
                int best = 0;
                for (int j = 1; j < V; j++) best = lg[j] > lg[best] ? j : best;
                tok = best;
            }
            const double dt = now() - t0;
            printf("decode %s: %d tokens in %.3f s: %.1f tok/s (%.1f us/token, greedy, logits to host)\n", graph ? "graph" : "no graph", n, dt, n / dt,
                   1e6 * dt / n);
            if (!graph) spqr_cuda_model_free(gd);
        }
    }
    spqr_cuda_model_free(g);
    spqr_ctx_free(cpu);
    spqr_free(ids);
    spqr_model_free(m);
    printf("%s\n", fails ? "model test: FAILED" : "model test: passed");
    return fails ? 1 : 0;
}
