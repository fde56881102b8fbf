/*
 * quant_bench.cu — times GPU quantization (src/cuda/quant_cuda.h).
 *
 *   spqr-quant-bench 7b [--layers L] [--tokens N] [--tau T|auto] [--tf32] [--device-chol] [--no-deq]
 *       SpQR w3 β1 = β2 = 16, q3, act order, percdamp 1 on L (default 32) Llama-7B-shaped blocks:
 *       q, k, v, o 4096x4096; gate, up 11008x4096; down 4096x11008. Synthetic weights (N(0, 0.02²)
 *       + 0.5% heavy tail) and calibration activations (N tokens, default 128 x 2048, log-normal channel
 *       scales, 1% strong channels) generated on the device; the four Hessians of a block (attention
 *       input, o input, MLP input, down input) accumulated with spqr_cuda_hessian_add in slices of
 *       8192 tokens. --tau auto (default) bisects τ on block 0's q_proj for ~1% outliers. The Cholesky
 *       factors on the host (LAPACK: the CPU's bits, the default) or with --device-chol on the device
 *       (cuSOLVER).
 *   spqr-quant-bench evalmodel [--cpu] [--reps R]
 *       evalmodel's seven shapes (512x512, 256x512 x2, 512x512, 1536x512 x2, 512x1536), host data,
 *       GPU (spqr_cuda_quantize_matrix, host in/out) vs --cpu (spqr_quantize_matrix) wall time.
 *       Without a GPU, only --cpu runs.
 *   spqr-quant-bench head [W H] [--wbits b] [--tau T]
 *       the output head: SpQR wb (default 4, as --head-bits 4) β1 = β2 = 16, q3, act order, percdamp 1,
 *       τ (default 0.3) through spqr_quantize_matrix and spqr_cuda_quantize_matrix on the SAME W and H:
 *       outliers, rel_err, equal codes, outliers per 16-column group (stored order). W: raw
 *       little-endian [rows][cols] fp32, or bf16 if the name ends in ".bf16"; H: fp32 [cols][cols]
 *       (cols from its size). Without files: a synthetic 32000x512 head (bf16 weights, a few columns
 *       with large values in many rows; H with log-normal and a few strong channels).
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "cuda/quant_cuda.h"

extern "C" {
#include "core/core.h"
}

#define CKC(x)                                                                                                                             \
    do {                                                                                                                                   \
        cudaError_t e_ = (x);                                                                                                              \
        if (e_ != cudaSuccess) { fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); exit(1); }          \
    } while (0)
#define CKS(x)                                                                                                                             \
    do {                                                                                                                                   \
        spqr_error er_;                                                                                                                    \
        if ((x) != SPQR_OK) { fprintf(stderr, "%s:%d %s\n", __FILE__, __LINE__, er_.msg); exit(1); }                                      \
    } while (0)

__device__ __forceinline__ uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
__device__ __forceinline__ float u01(uint64_t h) { return ((h >> 40) + 0.5f) * (1.0f / 16777216.0f); }
__device__ __forceinline__ float gauss(uint64_t seed, uint64_t i) {
    uint64_t h1 = mix(seed * 0x9e3779b97f4a7c15ull + 2 * i), h2 = mix(seed * 0x9e3779b97f4a7c15ull + 2 * i + 1);
    return sqrtf(-2.0f * logf(u01(h1))) * cospif(2.0f * u01(h2));
}
/* per-channel scale: log-normal, 1% strong channels (x8) */
__device__ __forceinline__ float chan_scale(uint64_t seed, int j) {
    float s = expf(0.6f * gauss(seed ^ 0x5151, j));
    return u01(mix(seed * 31 + j + 7)) < 0.01f ? 8 * s : s;
}
__global__ void k_gen_x(float *X, int n, int cols, uint64_t seed, uint64_t tok0) {
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (idx >= (size_t)n * cols) return;
    int j = (int)(idx % cols);
    uint64_t t = tok0 + idx / cols;
    X[idx] = gauss(seed, t * cols + j) * chan_scale(seed, j);
}
__global__ void k_gen_w(float *W, size_t n, uint64_t seed) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = 0.02f * gauss(seed, i);
    if (u01(mix(seed + 3 * i + 1)) < 0.005f) g = 4 * 0.02f * gauss(seed ^ 0xabc, i) / sqrtf(fmaxf(u01(mix(seed + 5 * i + 2)), 1e-3f));
    W[i] = g;
}

static double now_sync(void) {
    cudaDeviceSynchronize();
    return spqr_now();
}

static spqr_qparams spqr_w3(double tau) {
    spqr_qparams p;
    memset(&p, 0, sizeof p);
    p.method = SPQR_QM_SPQR;
    p.wbits = 3;
    p.groupsize = 16;
    p.qq_bits = 3;
    p.qq_groupsize = 16;
    p.outlier_threshold = tau;
    p.act_order = 1;
    p.percdamp = 1.0;
    return p;
}

static int bench_7b(int L, int ntok, double tau, int tf32, int dchol, int want_deq) {
    const int D = 4096, F = 11008, CH = 8192;
    spqr_cuda_qctx *c;
    CKS(spqr_cuda_qctx_new(NULL, &c, &er_));
    spqr_cuda_qctx_set_hessian_tf32(c, tf32);
    spqr_cuda_qctx_set_device_cholesky(c, dchol);
    float *X, *W, *H[4];
    const int hd[4] = {D, D, D, F};
    CKC(cudaMalloc(&X, (size_t)CH * F * 4));
    CKC(cudaMalloc(&W, (size_t)F * D * 4));
    for (int i = 0; i < 4; i++) CKC(cudaMalloc(&H[i], (size_t)hd[i] * hd[i] * 4));
    struct { const char *name; int rows, cols, h; } mod[7] = {{"q", D, D, 0}, {"k", D, D, 0}, {"v", D, D, 0}, {"o", D, D, 1},
                                                             {"gate", F, D, 2}, {"up", F, D, 2}, {"down", D, F, 3}};
    double t_gen = 0, t_hess = 0, t_wgen = 0, t_quant = 0, t_all0 = now_sync();
    double mod_time[7] = {0}, mod_err[7] = {0};
    uint64_t n_out = 0, n_w = 0, blob_bytes = 0;
    int auto_tau = !(tau >= 0);
    for (int l = 0; l < L; l++) {
        /* Hessians */
        for (int h = 0; h < 4; h++) {
            double t0 = now_sync();
            CKC(cudaMemset(H[h], 0, (size_t)hd[h] * hd[h] * 4));
            for (int t0k = 0; t0k < ntok; t0k += CH) {
                int n = t0k + CH < ntok ? CH : ntok - t0k;
                double a = now_sync();
                k_gen_x<<<(unsigned)(((size_t)n * hd[h] + 255) / 256), 256>>>(X, n, hd[h], 1000003ull * l + 17 * h + 1, (uint64_t)t0k);
                CKC(cudaGetLastError());
                double b = now_sync();
                t_gen += b - a;
                CKS(spqr_cuda_hessian_add(c, X, n, hd[h], 2.0f / (float)ntok, H[h], &er_));
            }
            CKS(spqr_cuda_hessian_symmetrize(c, H[h], hd[h], &er_));
            t_hess += now_sync() - t0;
        }
        if (l == 0 && auto_tau) { /* bisect log τ on q_proj for 1% outliers */
            k_gen_w<<<(unsigned)(((size_t)D * D + 255) / 256), 256>>>(W, (size_t)D * D, 777);
            double lo = 0.02, hi = 2.0;
            tau = 0.2;
            for (int it = 0; it < 7; it++) {
                double mid = sqrt(lo * hi);
                spqr_qparams p = spqr_w3(mid);
                spqr_qresult r;
                CKS(spqr_cuda_quantize_matrix_dev(c, W, D, D, H[0], &p, 0, &r, &er_));
                double f = (double)r.entry.n_outliers / ((double)D * D);
                printf("tau search: tau %.4f -> %.3f%% outliers, rel_err %.5f\n", mid, 100 * f, r.rel_err);
                tau = mid;
                if (f > 0.01) lo = mid;
                else hi = mid;
                spqr_cuda_qresult_free(&r);
            }
            spqr_cuda_qctx_reset_times(c);
            t_all0 += 0; /* the search is reported, not timed in the totals below */
        }
        spqr_qparams p = spqr_w3(tau);
        for (int m = 0; m < 7; m++) {
            double a = now_sync();
            k_gen_w<<<(unsigned)(((size_t)mod[m].rows * mod[m].cols + 255) / 256), 256>>>(W, (size_t)mod[m].rows * mod[m].cols, 7919ull * l + m);
            CKC(cudaGetLastError());
            double b = now_sync();
            t_wgen += b - a;
            spqr_qresult r;
            CKS(spqr_cuda_quantize_matrix_dev(c, W, mod[m].rows, mod[m].cols, H[mod[m].h], &p, want_deq, &r, &er_));
            double e = now_sync();
            t_quant += e - b;
            mod_time[m] += e - b;
            mod_err[m] += r.rel_err;
            n_out += r.entry.n_outliers;
            n_w += (uint64_t)mod[m].rows * mod[m].cols;
            blob_bytes += r.entry.data_size;
            spqr_cuda_qresult_free(&r);
        }
        if (l == 0 || (l + 1) % 8 == 0) printf("block %d done, %.1f s so far\n", l, now_sync() - t_all0);
        fflush(stdout);
    }
    double total = now_sync() - t_all0;
    spqr_cuda_qtimes qt;
    spqr_cuda_qctx_times(c, &qt);
    printf("\n== 7B-shaped SpQR w3 b1=b2=16 q3 act-order, tau %.4f, %d blocks, %d calibration tokens, hessian %s, cholesky %s, deq %s ==\n", tau, L,
           ntok, tf32 ? "TF32" : "FP32 fixed order", dchol ? "device (cuSOLVER)" : "host (LAPACK)", want_deq ? "downloaded" : "not downloaded");
    printf("outliers %.3f%%  bits/weight (file) %.3f  mean rel_err q %.4f k %.4f v %.4f o %.4f gate %.4f up %.4f down %.4f\n",
           100.0 * n_out / n_w, 8.0 * blob_bytes / n_w, mod_err[0] / L, mod_err[1] / L, mod_err[2] / L, mod_err[3] / L, mod_err[4] / L,
           mod_err[5] / L, mod_err[6] / L);
    printf("stage                          seconds  per block\n");
    printf("activations (synthetic gen)    %8.2f  %8.3f\n", t_gen, t_gen / L);
    printf("hessians (syrk, excl. gen)     %8.2f  %8.3f\n", t_hess - t_gen, (t_hess - t_gen) / L);
    printf("weights (synthetic gen)        %8.2f  %8.3f\n", t_wgen, t_wgen / L);
    printf("quantize: prep                 %8.2f  %8.3f\n", qt.prep, qt.prep / L);
    printf("quantize: cholesky (cuSOLVER)  %8.2f  %8.3f\n", qt.chol, qt.chol / L);
    printf("quantize: sweep                %8.2f  %8.3f\n", qt.sweep, qt.sweep / L);
    printf("quantize: pack + CRC           %8.2f  %8.3f\n", qt.pack, qt.pack / L);
    printf("quantize: deq to host          %8.2f  %8.3f\n", qt.deq, qt.deq / L);
    printf("quantize: rel_err              %8.2f  %8.3f\n", qt.relerr, qt.relerr / L);
    printf("quantize: all (7 x %d calls)   %8.2f  %8.3f\n", L, t_quant, t_quant / L);
    printf("per matrix kind: q %.3f k %.3f v %.3f o %.3f gate %.3f up %.3f down %.3f s/block\n", mod_time[0] / L, mod_time[1] / L,
           mod_time[2] / L, mod_time[3] / L, mod_time[4] / L, mod_time[5] / L, mod_time[6] / L);
    printf("TOTAL wall (hessians + quantization, incl. synthetic generation) %.2f s\n", total);
    cudaFree(X);
    cudaFree(W);
    for (int i = 0; i < 4; i++) cudaFree(H[i]);
    spqr_cuda_qctx_free(c);
    return 0;
}

/* host data for evalmodel shapes */
static uint64_t rs = 99;
static double uni(void) {
    uint64_t z = (rs += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return ((z >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}
static double gs(void) { return sqrt(-2 * log(uni())) * cos(6.283185307179586 * uni()); }

static int bench_evalmodel(int cpu, int reps) {
    struct { const char *name; int rows, cols; } shp[7] = {{"q", 512, 512}, {"k", 256, 512}, {"v", 256, 512}, {"o", 512, 512},
                                                          {"gate", 1536, 512}, {"up", 1536, 512}, {"down", 512, 1536}};
    spqr_cuda_qctx *c = NULL;
    spqr_error e;
    int gpu = spqr_cuda_qctx_new(NULL, &c, &e) == SPQR_OK;
    if (!gpu) printf("no GPU: %s\n", e.msg);
    float *H[2];
    const int hc[2] = {512, 1536}, ntok = 16 * 2048;
    for (int h = 0; h < 2; h++) {
        int n = hc[h];
        float *X = (float *)malloc((size_t)ntok * n * 4);
        double *sc = (double *)malloc(n * 8);
        for (int j = 0; j < n; j++) sc[j] = exp(0.6 * gs()) * (uni() < 0.01 ? 8 : 1);
        for (size_t i = 0; i < (size_t)ntok * n; i++) X[i] = (float)(gs() * sc[i % n]);
        H[h] = (float *)malloc((size_t)n * n * 4);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, n, ntok, 2.0f / ntok, X, n, X, n, 0.0f, H[h], n);
        free(X);
        free(sc);
    }
    spqr_qparams p = spqr_w3(0.2);
    double tg_all = 0, tc_all = 0;
    printf("%-6s %-10s %10s %10s %8s %9s %9s\n", "module", "shape", "gpu ms", "cpu ms", "speedup", "outl gpu", "outl cpu");
    for (int m = 0; m < 7; m++) {
        size_t n = (size_t)shp[m].rows * shp[m].cols;
        float *W = (float *)malloc(n * 4);
        for (size_t i = 0; i < n; i++) {
            double g = 0.02 * gs();
            if (uni() < 0.005) g = 4 * 0.02 * gs() / sqrt(fmax(uni(), 1e-3));
            W[i] = (float)g;
        }
        const float *Hm = shp[m].cols == 512 ? H[0] : H[1];
        double tg = NAN, tc = NAN;
        uint64_t og = 0, oc = 0;
        if (gpu) {
            spqr_qresult r;
            CKS(spqr_cuda_quantize_matrix(c, W, shp[m].rows, shp[m].cols, Hm, &p, &r, &er_)); /* warm-up */
            spqr_cuda_qresult_free(&r);
            tg = INFINITY;
            for (int k = 0; k < reps; k++) {
                double t0 = spqr_now();
                CKS(spqr_cuda_quantize_matrix(c, W, shp[m].rows, shp[m].cols, Hm, &p, &r, &er_));
                tg = fmin(tg, spqr_now() - t0);
                og = r.entry.n_outliers;
                spqr_cuda_qresult_free(&r);
            }
            tg_all += tg;
        }
        if (cpu) {
            spqr_qresult r;
            double t0 = spqr_now();
            CKS(spqr_quantize_matrix(W, shp[m].rows, shp[m].cols, Hm, &p, &r, &er_));
            tc = spqr_now() - t0;
            oc = r.entry.n_outliers;
            spqr_qresult_free(&r);
            tc_all += tc;
        }
        char sh[32];
        snprintf(sh, sizeof sh, "%dx%d", shp[m].rows, shp[m].cols);
        printf("%-6s %-10s %10.2f %10.2f %8.2f %9llu %9llu\n", shp[m].name, sh, 1e3 * tg, 1e3 * tc, tc / tg, (unsigned long long)og,
               (unsigned long long)oc);
        free(W);
    }
    printf("%-6s %-10s %10.2f %10.2f %8.2f\n", "all", "", 1e3 * tg_all, 1e3 * tc_all, tc_all / tg_all);
    if (gpu) {
        spqr_cuda_qtimes qt;
        spqr_cuda_qctx_times(c, &qt);
        printf("GPU stages over all %ld calls (s): upload %.3f prep %.3f chol %.3f sweep %.3f pack %.3f deq %.3f relerr %.3f total %.3f\n", qt.calls,
               qt.upload, qt.prep, qt.chol, qt.sweep, qt.pack, qt.deq, qt.relerr, qt.total);
        spqr_cuda_qctx_free(c);
    }
    free(H[0]);
    free(H[1]);
    return 0;
}

static void *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "%s: cannot open\n", path); exit(1); }
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc(*n ? *n : 1);
    if (!p || fread(p, 1, *n, f) != *n) { fprintf(stderr, "%s: read failed\n", path); exit(1); }
    fclose(f);
    return p;
}
static float bf16r(float x) { /* round to bf16 (nearest even) */
    uint32_t u;
    memcpy(&u, &x, 4);
    u = (u + 0x7fff + ((u >> 16) & 1)) & 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}

/* CPU and GPU quantizer on one head-like matrix. */
static int bench_head(const char *wpath, const char *hpath, int wbits, double tau) {
    int rows = 32000, cols = 512;
    float *W, *H;
    if (wpath && hpath) {
        size_t nw, nh;
        H = (float *)read_all(hpath, &nh);
        cols = (int)lround(sqrt((double)(nh / 4)));
        if ((size_t)cols * cols * 4 != nh) { fprintf(stderr, "%s: not a square fp32 matrix\n", hpath); return 1; }
        void *raw = read_all(wpath, &nw);
        size_t len = strlen(wpath);
        const int bf = len > 5 && !strcmp(wpath + len - 5, ".bf16");
        rows = (int)(nw / ((size_t)cols * (bf ? 2 : 4)));
        if ((size_t)rows * cols * (bf ? 2 : 4) != nw) { fprintf(stderr, "%s: not [rows][%d]\n", wpath, cols); return 1; }
        W = (float *)malloc((size_t)rows * cols * 4);
        for (size_t i = 0; i < (size_t)rows * cols; i++) {
            if (bf) {
                uint32_t u = (uint32_t)((const uint16_t *)raw)[i] << 16;
                memcpy(&W[i], &u, 4);
            } else W[i] = ((const float *)raw)[i];
        }
        free(raw);
    } else { /* synthetic: bf16 weights, 8 columns with large values in many rows; H from 16 x 2048 tokens */
        const int ntok = 16 * 2048;
        W = (float *)malloc((size_t)rows * cols * 4);
        H = (float *)malloc((size_t)cols * cols * 4);
        for (size_t i = 0; i < (size_t)rows * cols; i++) {
            const int j = (int)(i % cols);
            double g = 0.02 * gs();
            if (j % 64 == 5 && uni() < 0.5) g += 0.15 * (1 + 0.2 * gs());
            else if (uni() < 0.005) g = 4 * 0.02 * gs() / sqrt(fmax(uni(), 1e-3));
            W[i] = bf16r((float)g);
        }
        float *X = (float *)malloc((size_t)ntok * cols * 4);
        double *sc = (double *)malloc((size_t)cols * 8);
        for (int j = 0; j < cols; j++) sc[j] = exp(0.6 * gs()) * (uni() < 0.01 ? 8 : 1);
        for (size_t i = 0; i < (size_t)ntok * cols; i++) X[i] = (float)(gs() * sc[i % cols]);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cols, cols, ntok, 2.0f / 16, X, cols, X, cols, 0.0f, H, cols);
        for (int i = 0; i < cols; i++)
            for (int k = 0; k < i; k++) H[(size_t)i * cols + k] = H[(size_t)k * cols + i];
        free(X);
        free(sc);
    }
    spqr_qparams p = spqr_w3(tau);
    p.wbits = wbits;
    spqr_cuda_qctx *c = NULL;
    spqr_error e;
    int gpu = spqr_cuda_qctx_new(NULL, &c, &e) == SPQR_OK;
    if (!gpu) printf("no GPU: %s\n", e.msg);
    spqr_qresult r[2];
    memset(r, 0, sizeof r);
    double t[2] = {NAN, NAN};
    double t0 = spqr_now();
    CKS(spqr_quantize_matrix(W, rows, cols, H, &p, &r[0], &er_));
    t[0] = spqr_now() - t0;
    if (gpu) {
        t0 = spqr_now();
        CKS(spqr_cuda_quantize_matrix(c, W, rows, cols, H, &p, &r[1], &er_));
        t[1] = spqr_now() - t0;
    }
    printf("head %dx%d SpQR w%d b16/16 q3 act order tau %g percdamp 1\n", rows, cols, wbits, tau);
    for (int k = 0; k < 1 + gpu; k++)
        printf("%s: outliers %llu (%.4f%%) rel_err %.6f percdamp_used %g  %.3f s\n", k ? "gpu" : "cpu", (unsigned long long)r[k].entry.n_outliers,
               100.0 * r[k].entry.n_outliers / ((double)rows * cols), r[k].rel_err, r[k].percdamp_used, t[k]);
    if (gpu) {
        spqr_qview v[2];
        for (int k = 0; k < 2; k++) CKS(spqr_qview_init(&v[k], &r[k].entry, r[k].blob, r[k].entry.data_size, k ? "gpu" : "cpu", &er_));
        const int ng = (cols + 15) / 16;
        long *go = (long *)calloc((size_t)2 * ng, sizeof *go), same = 0, rows_diff = 0, first_row = -1;
        for (int rr = 0; rr < rows; rr++) {
            int d = 0;
            for (int k = 0; k < 2; k++)
                for (uint32_t q = v[k].row_ptr[rr]; q < v[k].row_ptr[rr + 1]; q++) go[k * ng + v[k].ocol[q] / 16]++;
            for (int j = 0; j < cols; j++) {
                int eq = spqr_bits_get(v[0].codes + (size_t)rr * v[0].lay.code_stride, (uint64_t)j, (unsigned)wbits) ==
                         spqr_bits_get(v[1].codes + (size_t)rr * v[1].lay.code_stride, (uint64_t)j, (unsigned)wbits);
                same += eq;
                d |= !eq;
            }
            rows_diff += d;
            if (d && first_row < 0) first_row = rr;
        }
        int same_perm = !v[0].perm == !v[1].perm && (!v[0].perm || !memcmp(v[0].perm, v[1].perm, (size_t)cols * 4));
        printf("equal codes %.4f%%, rows with a difference %ld (first %ld), same permutation %s\n", 100.0 * same / ((double)rows * cols), rows_diff,
               first_row, same_perm ? "yes" : "NO");
        printf("outliers per 16-column group (stored order), cpu / gpu, groups that differ:\n");
        for (int g = 0; g < ng; g++)
            if (go[g] != go[ng + g]) printf("  group %3d: %7ld %7ld\n", g, go[g], go[ng + g]);
        free(go);
        spqr_cuda_qresult_free(&r[1]);
        spqr_cuda_qctx_free(c);
    }
    spqr_qresult_free(&r[0]);
    free(W);
    free(H);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s 7b|evalmodel|head [options]\n", argv[0]); return 2; }
    int L = 32, ntok = 128 * 2048, tf32 = 0, dchol = 0, cpu = 0, reps = 5, want_deq = 1;
    double tau = -1;
    const char *files[2] = {NULL, NULL};
    int wbits = 4, nf = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--layers") && i + 1 < argc) L = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tokens") && i + 1 < argc) ntok = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tau") && i + 1 < argc) { ++i; tau = strcmp(argv[i], "auto") ? atof(argv[i]) : -1; }
        else if (!strcmp(argv[i], "--tf32")) tf32 = 1;
        else if (!strcmp(argv[i], "--device-chol")) dchol = 1;
        else if (!strcmp(argv[i], "--no-deq")) want_deq = 0;
        else if (!strcmp(argv[i], "--cpu")) cpu = 1;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--wbits") && i + 1 < argc) wbits = atoi(argv[++i]);
        else if (argv[i][0] != '-' && nf < 2) files[nf++] = argv[i];
        else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
    if (!strcmp(argv[1], "7b")) return bench_7b(L, ntok, tau, tf32, dchol, want_deq);
    if (!strcmp(argv[1], "evalmodel")) return bench_evalmodel(cpu, reps);
    if (!strcmp(argv[1], "head")) return bench_head(files[0], files[1], wbits, tau >= 0 ? tau : 0.3);
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}
