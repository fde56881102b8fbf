/* spqr_cuda.cu — see spqr_cuda.h; layouts in spqr_cuda_internal.cuh. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/mma_layout.h"
#include "cuda/stream_layout.h"
#include "cuda/act8_layout.h"
#include "cuda/spqr_cuda_internal.cuh"

/* ---------------------------------------------------------------------------------------------- */
/* Context                                                                                        */
/* ---------------------------------------------------------------------------------------------- */

extern "C" int spqr_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) { cudaGetLastError(); return 0; }
    return n;
}

extern "C" spqr_status spqr_cuda_ctx_new(void *stream, spqr_cuda_ctx **out, spqr_error *err) {
    *out = NULL;
    if (spqr_cuda_device_count() <= 0) return spqr_set_err(err, SPQR_E_UNSUPPORTED, "cuda: no CUDA device");
    spqr_cuda_ctx *c = (spqr_cuda_ctx *)calloc(1, sizeof *c);
    if (!c) return spqr_set_err(err, SPQR_E_NOMEM, "out of memory");
    c->stream = (cudaStream_t)stream;
    c->pdl = 1;
    c->xprep = -1;
    c->mma_pregather = -1;
    c->mma_deq = -1;
    int dev = 0;
    c->sms = 132;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&c->sms, cudaDevAttrMultiProcessorCount, dev);
    if (cublasCreate(&c->blas) != CUBLAS_STATUS_SUCCESS) { free(c); return spqr_set_err(err, SPQR_E_IO, "cuda: cublasCreate failed"); }
    cublasSetStream(c->blas, c->stream);
    *out = c;
    return SPQR_OK;
}

extern "C" void spqr_cuda_ctx_set_act8(spqr_cuda_ctx *c, int on) { c->act8 = on != 0; }
extern "C" void spqr_cuda_ctx_reuse_x(spqr_cuda_ctx *c) { c->reuse_next = 1; }

extern "C" void spqr_cuda_ctx_free(spqr_cuda_ctx *c) {
    if (!c) return;
    cublasDestroy(c->blas);
    cudaFree(c->ws);
    cudaFree(c->dws);
    cudaFree(c->xbuf);
    free(c);
}

cudaError_t spqr_cuda_smem_optin(spqr_cuda_ctx *c, const void *func, int bytes) {
    for (int i = 0; i < c->n_optin; i++)
        if (c->optin[i].func == func && c->optin[i].bytes >= bytes) return cudaSuccess;
    const cudaError_t e = cudaFuncSetAttribute(func, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
    if (e == cudaSuccess && c->n_optin < SPQR_CUDA_OPTIN_MAX) { /* past the table: set on every launch */
        c->optin[c->n_optin].func = func;
        c->optin[c->n_optin].bytes = bytes;
        c->n_optin++;
    }
    return e;
}

spqr_status spqr_cuda_buf_reserve(spqr_cuda_ctx *c, void **buf, size_t *size, size_t bytes, spqr_error *err) {
    if (bytes <= *size) return SPQR_OK;
    cudaStreamSynchronize(c->stream);
    cudaFree(*buf);
    *buf = NULL;
    *size = 0;
    c->buf_gen++;
    CK(cudaMalloc(buf, bytes), "workspace");
    *size = bytes;
    return SPQR_OK;
}

spqr_status spqr_cuda_ws_reserve(spqr_cuda_ctx *c, size_t bytes, spqr_error *err) { return spqr_cuda_buf_reserve(c, &c->ws, &c->ws_size, bytes, err); }

/* ---------------------------------------------------------------------------------------------- */
/* Upload: storage layout as is, plus the tiled layout                                            */
/* ---------------------------------------------------------------------------------------------- */

static int tiled_ok(const spqr_qview *v) {
    if (v->wbits < 2 || v->wbits > 4) return 0;
    if (v->kind == SPQR_TK_SPQR)
        return v->qq_bits <= 4 && v->qq_groupsize % 4 == 0 &&
               (v->groupsize == 8 || v->groupsize == 16 || v->groupsize % 32 == 0);
    return v->groupsize % 32 == 0;
}

/* Packs the 32 codes of packet P of row r into words w[0..W). */
static void pack_packet(const spqr_qview *v, uint32_t r, uint32_t P, uint32_t *w) {
    const unsigned W = v->wbits, F = 16 / W;
    const uint8_t *crow = v->codes + (uint64_t)r * v->lay.code_stride;
    for (unsigned k = 0; k < W; k++) w[k] = 0;
    for (unsigned t = 0; t < 16; t++) {
        uint32_t j0 = P * 32 + 2 * t, j1 = j0 + 1;
        uint32_t c0 = j0 < v->cols ? spqr_bits_get(crow, j0, W) : 0, c1 = j1 < v->cols ? spqr_bits_get(crow, j1, W) : 0;
        if (W == 3 && t == 15) {
            for (unsigned b = 0; b < 3; b++) w[b] |= ((c0 >> b) & 1u) << 15 | ((c1 >> b) & 1u) << 31;
        } else {
            unsigned k = t / F, sl = t % F;
            w[k] |= c0 << (W * sl) | c1 << (16 + W * sl);
        }
    }
}

static spqr_status upload_tiled(spqr_cuda_qmatrix *m, const spqr_qview *v, spqr_error *err) {
    const uint32_t rows = v->rows, W = v->wbits, gs = v->groupsize;
    const int sp = v->kind == SPQR_TK_SPQR;
    m->npq = ((v->cols + 31) / 32 + 3) / 4 * 4;
    m->nq = m->npq / 4;
    m->gp = (sp && gs <= 32) ? (int)(32 / gs) : 0;
    m->gpad = m->gp ? m->npq * (uint32_t)m->gp : (uint32_t)(((uint64_t)m->npq * 32 + gs - 1) / gs);
    const size_t ncw = (size_t)rows * W * m->npq, nst = (size_t)rows * m->gpad, nqq = sp ? (size_t)m->row_blocks * m->gpad : 0;
    const size_t st_sz = sp ? 1 : 4;
    uint32_t *hc = (uint32_t *)calloc(ncw, 4);
    uint8_t *hs = (uint8_t *)calloc(nst, st_sz);
    uint2 *hq = (uint2 *)calloc(nqq + 1, sizeof(uint2));
    uint16_t *hd = (uint16_t *)calloc(v->n_outliers + 1, sizeof(uint16_t));
    spqr_status st = SPQR_OK;
    if (!hc || !hs || !hq || !hd) { st = spqr_set_err(err, SPQR_E_NOMEM, "out of memory"); goto done; }
    for (uint32_t r = 0; r < rows; r++)
        for (uint32_t P = 0; P < m->npq; P++) {
            uint32_t w[4];
            pack_packet(v, r, P, w);
            for (uint32_t k = 0; k < W; k++) hc[((size_t)r * W + k) * m->npq + P] = w[k];
        }
    for (uint32_t r = 0; r < rows; r++)
        for (uint32_t g = 0; g < v->lay.groups; g++) {
            if (sp) {
                const uint8_t *srow = v->stats + (uint64_t)r * v->lay.stat_stride;
                hs[(size_t)r * m->gpad + g] = (uint8_t)(spqr_bits_get(srow, 2ull * g, v->qq_bits) | spqr_bits_get(srow, 2ull * g + 1, v->qq_bits) << 4);
            } else {
                uint32_t z = spqr_bits_get(v->zeros + (uint64_t)r * v->lay.zero_stride, g, W);
                ((uint32_t *)hs)[(size_t)r * m->gpad + g] = v->scales[(uint64_t)r * v->lay.groups + g] | z << 16;
            }
        }
    if (sp) {
        for (uint64_t b = 0; b < m->row_blocks; b++) memcpy(hq + b * m->gpad, v->qq + b * v->lay.groups, v->lay.groups * 8);
        for (uint32_t r = 0; r < rows; r++)
            for (uint32_t k = v->row_ptr[r]; k < v->row_ptr[r + 1]; k++) {
                uint32_t j = v->ocol[k];
                hd[k] = spqr_f32_to_f16(spqr_f16_to_f32(v->oval[k]) - spqr_qview_dense_weight(v, r, j));
            }
    }
    {
        cudaError_t e = cudaMalloc(&m->tcodes, ncw * 4);
        if (e == cudaSuccess) e = cudaMalloc(&m->tstat, nst * st_sz + 16);
        if (e == cudaSuccess) e = cudaMalloc(&m->tqq, (nqq + 1) * sizeof(uint2));
        if (e == cudaSuccess) e = cudaMalloc(&m->odelta, (v->n_outliers + 1) * 2);
        if (e == cudaSuccess) e = cudaMemcpy(m->tcodes, hc, ncw * 4, cudaMemcpyHostToDevice);
        if (e == cudaSuccess) e = cudaMemcpy(m->tstat, hs, nst * st_sz, cudaMemcpyHostToDevice);
        if (e == cudaSuccess) e = cudaMemcpy(m->tqq, hq, (nqq + 1) * sizeof(uint2), cudaMemcpyHostToDevice);
        if (e == cudaSuccess) e = cudaMemcpy(m->odelta, hd, (v->n_outliers + 1) * 2, cudaMemcpyHostToDevice);
        if (e != cudaSuccess) { st = spqr_set_err(err, SPQR_E_IO, "cuda: tiled upload: %s", cudaGetErrorString(e)); goto done; }
    }
    m->tiled = 1;
    m->bytes_tiled = ncw * 4 + nst * st_sz + nqq * 8 + (sp ? 4ull * (rows + 1) + 4ull * v->n_outliers : 0) + (v->perm ? 4ull * v->cols : 0);
done:
    free(hc); free(hs); free(hq); free(hd);
    return st;
}

static int fused_ok(const spqr_qview *v) {
    return v->kind == SPQR_TK_SPQR && v->wbits >= 2 && v->wbits <= 4 && v->groupsize == 16 && v->qq_bits <= 4 && v->qq_groupsize % 16 == 0;
}

template <class T>
static cudaError_t up(T **d, const void *h, size_t n) {
    cudaError_t e = cudaMalloc((void **)d, n ? n : 16);
    if (e == cudaSuccess && n) e = cudaMemcpy(*d, h, n, cudaMemcpyHostToDevice);
    return e;
}

/* The fused (v5) layout: see spqr_cuda_internal.cuh; a8: also v9's code words (act8_layout.h). */
static spqr_status upload_fused(spqr_cuda_qmatrix *m, const spqr_qview *v, int a8, spqr_error *err) {
    const uint32_t rows = v->rows, cols = v->cols, W = v->wbits;
    const int q3 = v->qq_bits == 3, NS = q3 ? 3 : 4;
    m->nrt = (rows + 31) / 32;
    m->nct = (cols + 255) / 256;
    const uint32_t ngp = m->nct * 16;
    const size_t ncw = (size_t)m->nrt * m->nct * 2 * W * 32 * 4; /* words */
    const size_t nsw = (size_t)m->nrt * m->nct * NS * 32;
    const size_t nqq = (size_t)m->row_blocks * ngp;
    uint32_t *hc = (uint32_t *)calloc(ncw, 4), *hs = (uint32_t *)calloc(nsw, 4), *ha = a8 ? (uint32_t *)calloc(ncw, 4) : NULL;
    uint2 *hq = (uint2 *)calloc(nqq, sizeof(uint2));
    float *hd = (float *)calloc(v->n_outliers + 1, sizeof(float));
    spqr_status st = SPQR_OK;
    if (!hc || !hs || !hq || !hd || (a8 && !ha)) { st = spqr_set_err(err, SPQR_E_NOMEM, "out of memory"); goto done; }
    for (uint32_t rt = 0; rt < m->nrt; rt++)
        for (uint32_t ct = 0; ct < m->nct; ct++)
            for (uint32_t L = 0; L < 32; L++) {
                const uint32_t r = rt * 32 + L;
                if (r >= rows) continue; /* padded rows: code 0, stat 0 */
                uint32_t words[32] = {0};
                for (uint32_t p = 0; p < 8; p++) pack_packet(v, r, ct * 8 + p, words + p * W);
                uint32_t *tc = hc + ((size_t)rt * m->nct + ct) * 2 * W * 32 * 4;
                for (uint32_t wi = 0; wi < 8 * W; wi++) tc[((wi / 4) * 32 + L) * 4 + wi % 4] = words[wi];
                if (a8) { /* the same tile in act8_layout.h's bit order, at the same word positions */
                    uint8_t cc[256];
                    const uint8_t *crow = v->codes + (uint64_t)r * v->lay.code_stride;
                    for (uint32_t j = 0; j < 256; j++) cc[j] = ct * 256 + j < cols ? (uint8_t)spqr_bits_get(crow, ct * 256 + j, W) : 0;
                    spqr_a8_pack_tile(cc, W, words);
                    uint32_t *ta = ha + ((size_t)rt * m->nct + ct) * 2 * W * 32 * 4;
                    for (uint32_t wi = 0; wi < 8 * W; wi++) ta[((wi / 4) * 32 + L) * 4 + wi % 4] = words[wi];
                }
                uint32_t sw[4] = {0, 0, 0, 0};
                const uint8_t *srow = v->stats + (uint64_t)r * v->lay.stat_stride;
                for (uint32_t i = 0; i < 16; i++) {
                    const uint64_t g = (uint64_t)ct * 16 + i;
                    if (g >= v->lay.groups) break;
                    const uint32_t sc = spqr_bits_get(srow, 2 * g, v->qq_bits), zc = spqr_bits_get(srow, 2 * g + 1, v->qq_bits);
                    if (q3) {
                        const uint32_t f = sc | zc << 3;
                        if (i < 15) sw[i / 5] |= f << (6 * (i % 5));
                        else for (uint32_t k = 0; k < 3; k++) sw[k] |= ((f >> (2 * k)) & 3u) << 30;
                    } else {
                        sw[i / 4] |= (sc | zc << 4) << (8 * (i % 4));
                    }
                }
                uint32_t *ts = hs + ((size_t)rt * m->nct + ct) * NS * 32;
                for (int k = 0; k < NS; k++) ts[k * 32 + L] = sw[k];
            }
    for (uint64_t b = 0; b < m->row_blocks; b++) memcpy(hq + b * ngp, v->qq + b * v->lay.groups, v->lay.groups * 8);
    for (uint32_t r = 0; r < rows; r++)
        for (uint32_t k = v->row_ptr[r]; k < v->row_ptr[r + 1]; k++) {
            const uint32_t j = v->ocol[k];
            hd[k] = spqr_f16_to_f32(v->oval[k]) - spqr_qview_dense_weight(v, r, j);
        }
    {
        cudaError_t e = up(&m->fcodes, hc, ncw * 4);
        if (e == cudaSuccess) e = up(&m->fstat, hs, nsw * 4);
        if (e == cudaSuccess) e = up(&m->fqq, hq, nqq * 8);
        if (e == cudaSuccess) e = up(&m->fodelta, hd, v->n_outliers * 4);
        if (e == cudaSuccess) e = up(&m->forp, v->row_ptr, (rows + 1) * 4ull);
        if (e == cudaSuccess) e = up(&m->focol, v->ocol, v->n_outliers * 2);
        if (e == cudaSuccess && v->perm) e = up(&m->fperm, v->perm, cols * 4ull);
        if (e == cudaSuccess && a8) e = up(&m->a8codes, ha, ncw * 4);
        if (e != cudaSuccess) { st = spqr_set_err(err, SPQR_E_IO, "cuda: fused upload: %s", cudaGetErrorString(e)); goto done; }
    }
    m->fused = 1;
    m->f_q3 = q3;
    /* bytes one product reads: codes and statistics of the real rows, qq, CSR (fp32 deltas), perm */
    m->bytes_fused = ((uint64_t)rows * m->nct * (2 * W * 16 + NS * 4)) + nqq * 8 + 4ull * (rows + 1) + 6ull * v->n_outliers + (v->perm ? 4ull * cols : 0);
done:
    free(hc); free(hs); free(hq); free(hd); free(ha);
    return st;
}

extern "C" spqr_status spqr_cuda_upload_ex(const spqr_qview *v, unsigned layouts, spqr_cuda_qmatrix **out, spqr_error *err) {
    *out = NULL;
    spqr_cuda_qmatrix *m = (spqr_cuda_qmatrix *)calloc(1, sizeof *m);
    if (!m) return spqr_set_err(err, SPQR_E_NOMEM, "out of memory");
    m->kind = v->kind; m->rows = v->rows; m->cols = v->cols; m->wbits = v->wbits; m->gs = v->groupsize;
    m->qq_bits = v->qq_bits; m->qq_gs = v->qq_groupsize; m->n_out = v->n_outliers;
    m->groups = v->lay.groups; m->row_blocks = v->lay.row_blocks; m->lay = v->lay;
    if (v->perm) {
        uint64_t h = 1469598103934665603ull;
        for (uint32_t j = 0; j < v->cols; j++) h = (h ^ (uint32_t)v->perm[j]) * 1099511628211ull;
        m->perm_key = h | 1; /* never 0 (identity) */
    }
    const int want_act8 = (layouts & SPQR_CUDA_LAYOUT_ACT8) && fused_ok(v);
    const int want_fused = ((layouts & SPQR_CUDA_LAYOUT_FUSED) && fused_ok(v)) || want_act8;
    const int want_tiled = (layouts & SPQR_CUDA_LAYOUT_TILED) && tiled_ok(v);
    const int want_mma = (layouts & SPQR_CUDA_LAYOUT_MMA) && spqr_mma_supported(v);
    const int want_gsum = (layouts & SPQR_CUDA_LAYOUT_GSUM) && spqr_gsum_supported(v);
    const int want_stream = (layouts & SPQR_CUDA_LAYOUT_STREAM) && spqr_stream_supported(v);
    if ((layouts & (SPQR_CUDA_LAYOUT_RAW | SPQR_CUDA_LAYOUT_TILED)) || (!want_fused && !want_mma && !want_gsum && !want_stream)) {
        const uint8_t *base = v->codes - v->lay.codes; /* the blob */
        cudaError_t e = up(&m->blob, base, v->lay.size);
        if (e != cudaSuccess) { spqr_cuda_qmatrix_free(m); return spqr_set_err(err, SPQR_E_IO, "cuda: upload: %s", cudaGetErrorString(e)); }
        m->has_raw = 1;
        m->perm = v->perm ? (const int32_t *)(m->blob + v->lay.perm) : NULL;
        m->bytes_raw = v->lay.size;
        if (v->kind == SPQR_TK_SPQR) {
            m->orp = (uint32_t *)(m->blob + v->lay.row_ptr);
            m->ocol = (uint16_t *)(m->blob + v->lay.ocol);
        }
    }
    if (want_tiled) {
        spqr_status st = upload_tiled(m, v, err);
        if (st) { spqr_cuda_qmatrix_free(m); return st; }
    }
    if (want_fused) {
        spqr_status st = upload_fused(m, v, want_act8, err);
        if (st) { spqr_cuda_qmatrix_free(m); return st; }
    }
    int dev = 0, sms = 132;
    if (want_mma || want_gsum) {
        cudaGetDevice(&dev);
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    }
    for (int gs = 0; gs < 2; gs++) {
        if (!(gs ? want_gsum : want_mma)) continue;
        spqr_mma_layout L;
        const uint32_t S = spqr_mma_default_slices(v->rows, v->cols, sms);
        spqr_status st = gs ? spqr_gsum_build(v, S, &L, err) : spqr_mma_build(v, S, &L, err);
        if (!st) st = spqr_cuda_mma_upload(&L, gs ? &m->gsum : &m->mma, err);
        spqr_mma_free(&L);
        if (st) { spqr_cuda_qmatrix_free(m); return st; }
    }
    if (want_stream) {
        spqr_stream_layout L;
        spqr_status st = spqr_stream_build(v, &L, err);
        if (!st) st = spqr_cuda_stream_upload(&L, &m->stream, err);
        spqr_stream_free(&L);
        if (st) { spqr_cuda_qmatrix_free(m); return st; }
    }
    *out = m;
    return SPQR_OK;
}

extern "C" spqr_status spqr_cuda_upload(const spqr_qview *v, spqr_cuda_qmatrix **out, spqr_error *err) {
    return spqr_cuda_upload_ex(v, SPQR_CUDA_LAYOUT_ALL, out, err);
}

extern "C" void spqr_cuda_qmatrix_free(spqr_cuda_qmatrix *m) {
    if (!m) return;
    cudaFree(m->blob); cudaFree(m->tcodes); cudaFree(m->tstat); cudaFree(m->tqq); cudaFree(m->odelta);
    cudaFree(m->fcodes); cudaFree(m->fstat); cudaFree(m->fqq); cudaFree(m->fperm); cudaFree(m->forp); cudaFree(m->focol); cudaFree(m->fodelta);
    cudaFree(m->a8codes);
    spqr_cuda_mma_free(m->mma);
    spqr_cuda_mma_free(m->gsum);
    spqr_cuda_stream_free(m->stream);
    free(m);
}

extern "C" int spqr_cuda_supports(const spqr_cuda_qmatrix *m, spqr_cuda_algo algo) {
    return algo == SPQR_CUDA_TILED ? m->tiled : algo == SPQR_CUDA_FUSED ? m->fused : algo == SPQR_CUDA_ACT8 ? m->a8codes != NULL
           : algo == SPQR_CUDA_MMA ? m->mma != NULL
           : algo == SPQR_CUDA_GSUM ? m->gsum != NULL : algo == SPQR_CUDA_STREAM ? m->stream != NULL : algo == SPQR_CUDA_AUTO ? 1 : m->has_raw;
}

extern "C" uint64_t spqr_cuda_weight_bytes(const spqr_cuda_qmatrix *m, spqr_cuda_algo algo) {
    if (algo == SPQR_CUDA_FUSED || algo == SPQR_CUDA_ACT8) return m->bytes_fused;
    if (algo == SPQR_CUDA_MMA) return m->mma ? m->mma->bytes : 0;
    if (algo == SPQR_CUDA_GSUM) return m->gsum ? m->gsum->bytes : 0;
    if (algo == SPQR_CUDA_STREAM) return m->stream ? spqr_cuda_stream_bytes(m->stream) : 0;
    if (algo == SPQR_CUDA_GENERIC || !m->tiled) return m->bytes_raw;
    return m->bytes_tiled;
}

extern "C" int spqr_cuda_dequant_ld(const spqr_cuda_qmatrix *m) { return m->tiled ? (int)m->npq * 32 : (int)((m->cols + 7) / 8 * 8); }

/* ---------------------------------------------------------------------------------------------- */
/* x gather (act-order permutation, fp16 -> fp32 pairs)                                           */
/* ---------------------------------------------------------------------------------------------- */

__global__ void k_gather_x(const void *__restrict__ xv, int n, int b0, int B, uint32_t cols, const int32_t *__restrict__ perm,
                           uint32_t npairs, float2 *__restrict__ xp, int inter, int xf32) {
    const __half *x = (const __half *)xv;
    const float *xf = (const float *)xv;
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < npairs * (uint32_t)B; i += gridDim.x * blockDim.x) {
        uint32_t jp = i / B, b = b0 + i % B;
        if (inter) { /* i indexes the interleaved layout: invert xp_inter */
            const uint32_t L = jp & 31, t = (jp >> 5) & 15, p = (jp >> 9) & 3, it = jp >> 11;
            jp = ((it * 32 + L) * 4 + p) * 16 + t;
        }
        const uint32_t j0 = 2 * jp, j1 = j0 + 1;
        float2 v = make_float2(0.f, 0.f);
        if ((int)b < n) {
            const size_t o = (size_t)b * cols;
            if (j0 < cols) v.x = xf32 ? xf[o + (perm ? perm[j0] : j0)] : __half2float(x[o + (perm ? perm[j0] : j0)]);
            if (j1 < cols) v.y = xf32 ? xf[o + (perm ? perm[j1] : j1)] : __half2float(x[o + (perm ? perm[j1] : j1)]);
        }
        xp[i] = v;
    }
}

cudaError_t spqr_cuda_gather_x(const void *x, int n, int b0, int B, uint32_t cols, const int32_t *perm, uint32_t npairs, float2 *xp,
                               cudaStream_t st, int inter, int xf32) {
    uint32_t total = npairs * (uint32_t)B, blocks = (total + 255) / 256;
    if (blocks > 1024) blocks = 1024;
    k_gather_x<<<blocks, 256, 0, st>>>(x, n, b0, B, cols, perm, npairs, xp, inter, xf32);
    return cudaGetLastError();
}

/* x in stored column order as fp16 (the dequant + GEMM path, v7's passes of more than 8): see
 * spqr_cuda_internal.cuh. */
__global__ void k_gather_x16(const void *__restrict__ x, int xf32, int b0, int nb, uint32_t cols, const int32_t *__restrict__ perm, int ld,
                             __half *__restrict__ xo) {
    const size_t total = (size_t)nb * ld;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const uint32_t b = (uint32_t)(i / ld), j = (uint32_t)(i % ld);
        float v = 0.f;
        if (j < cols) {
            const size_t o = (size_t)(b0 + b) * cols + (perm ? perm[j] : j);
            v = xf32 ? ((const float *)x)[o] : __half2float(((const __half *)x)[o]);
        }
        xo[i] = __float2half_rn(v);
    }
}

cudaError_t spqr_cuda_gather_x16(const void *x, int xf32, int b0, int nb, uint32_t cols, const int32_t *perm, int ld, __half *xo,
                                 cudaStream_t st) {
    const size_t total = (size_t)nb * ld;
    const unsigned blocks = (unsigned)((total + 255) / 256 < 4096 ? (total + 255) / 256 : 4096);
    k_gather_x16<<<blocks, 256, 0, st>>>(x, xf32, b0, nb, cols, perm, ld, xo);
    return cudaGetLastError();
}

/* ---------------------------------------------------------------------------------------------- */
/* Tiled GEMV: RPW rows per warp, lanes over quads (128 columns), B activations at once           */
/* ---------------------------------------------------------------------------------------------- */

struct targs {
    const uint4 *codes;   /* tcodes viewed as uint4: word k of quad q of row r at (r*W + k)*nq + q */
    const uint8_t *stat;  /* tstat (bytes) */
    const uint2 *qq;
    const uint32_t *orp;
    const uint16_t *ocol;
    const __half *odelta;
    const float2 *xp;
    float *y;
    int rows, n, b0, nq, gpad, gs, qq_gs;
};

__device__ __forceinline__ uint32_t comp(const uint4 &v, int p) { return p == 0 ? v.x : p == 1 ? v.y : p == 2 ? v.z : v.w; }

/* fp16 pair (1024 + c0, 1024 + c1) of pair t of packet p (component p of the quad's words). */
template <int W>
__device__ __forceinline__ float2 pair_codes(const uint4 (&cw)[W], int p, int t) {
    constexpr int F = 16 / W;
    uint32_t b;
    if (W == 3 && t == 15) {
        b = ((comp(cw[0], p) >> 15) & 0x10001u) | ((comp(cw[1 % W], p) >> 14) & 0x20002u) | ((comp(cw[2 % W], p) >> 13) & 0x40004u) | 0x64006400u;
    } else {
        b = ((comp(cw[t / F], p) >> (W * (t % F))) & (((1u << W) - 1) * 0x10001u)) | 0x64006400u;
    }
    __half2 h = *reinterpret_cast<__half2 *>(&b);
    return __half22float2(h);
}

/* Dequantization of (1024 + c) with (scale s, zero z): w = s (c − z) = (1024 + c) s + k, k = −(1024 + z) s. */
__device__ __forceinline__ float kterm(float s, float z) { return -fmaf(z, s, 1024.f * s); }

template <int W, bool SP, int GP, int B, int RPW>
__global__ void __launch_bounds__(128) k_tiled(targs a) {
    constexpr int GPK = GP ? GP : 1; /* groups per packet held in registers */
    const int lane = threadIdx.x & 31;
    const int r0 = (blockIdx.x * 4 + (threadIdx.x >> 5)) * RPW;
    if (r0 >= a.rows) return;
    const int rb = SP ? r0 / a.qq_gs : 0; /* qq_gs % RPW == 0: one row block per warp */
    float acc[RPW][B];
#pragma unroll
    for (int rr = 0; rr < RPW; rr++)
#pragma unroll
        for (int b = 0; b < B; b++) acc[rr][b] = 0.f;

    for (int q = lane; q < a.nq; q += 32) {
        uint4 cw[RPW][W];
        uint32_t sb[RPW][GPK > 1 ? GPK : 1]; /* SpQR, GP >= 1: the quad's 4*GP stat bytes per row */
#pragma unroll
        for (int rr = 0; rr < RPW; rr++) {
            const int r = r0 + rr < a.rows ? r0 + rr : a.rows - 1; /* ragged: recompute the last row, never store it */
#pragma unroll
            for (int k = 0; k < W; k++) cw[rr][k] = __ldg(a.codes + ((size_t)r * W + k) * a.nq + q);
            if (SP && GP == 1) sb[rr][0] = __ldg((const uint32_t *)(a.stat + (size_t)r * a.gpad) + q);
            if (SP && GP == 2) { uint2 t = __ldg((const uint2 *)(a.stat + (size_t)r * a.gpad) + q); sb[rr][0] = t.x; sb[rr][1 % GPK] = t.y; }
            if (SP && GP == 4) {
                uint4 t = __ldg((const uint4 *)(a.stat + (size_t)r * a.gpad) + q);
                sb[rr][0] = t.x; sb[rr][1 % GPK] = t.y; sb[rr][2 % GPK] = t.z; sb[rr][3 % GPK] = t.w;
            }
        }
#pragma unroll
        for (int p = 0; p < 4; p++) {
            const int P = q * 4 + p;
            float s[RPW][GPK], k[RPW][GPK];
#pragma unroll
            for (int i = 0; i < GPK; i++) {
                const int g = GP ? P * GP + i : (P * 32) / a.gs;
                if (SP) {
                    const uint2 qv = __ldg(a.qq + (size_t)rb * a.gpad + g);
                    const float ss = __half2float(__ushort_as_half((unsigned short)(qv.x & 0xffff)));
                    const float nsz = -ss * __half2float(__ushort_as_half((unsigned short)(qv.x >> 16))); /* exact: 11 x 11 bits */
                    const float zs = __half2float(__ushort_as_half((unsigned short)(qv.y & 0xffff)));
                    const float nzz = -zs * __half2float(__ushort_as_half((unsigned short)(qv.y >> 16)));
#pragma unroll
                    for (int rr = 0; rr < RPW; rr++) {
                        unsigned byte;
                        if (GP) {
                            const int bi = p * GP + i; /* byte within the quad's 4*GP bytes */
                            byte = (sb[rr][(bi >> 2) % GPK] >> (8 * (bi & 3))) & 0xffu;
                        } else {
                            const int r = r0 + rr < a.rows ? r0 + rr : a.rows - 1;
                            byte = __ldg(a.stat + (size_t)r * a.gpad + g);
                        }
                        /* s = ss (sc − sz), z = zs (zc − zz): one rounding each, as the reference */
                        s[rr][i] = fmaf((float)(byte & 15u), ss, nsz);
                        const float z = fmaf((float)(byte >> 4), zs, nzz);
                        k[rr][i] = kterm(s[rr][i], z);
                    }
                } else {
#pragma unroll
                    for (int rr = 0; rr < RPW; rr++) {
                        const int r = r0 + rr < a.rows ? r0 + rr : a.rows - 1;
                        const uint32_t u = __ldg((const uint32_t *)a.stat + (size_t)r * a.gpad + g);
                        s[rr][i] = __half2float(__ushort_as_half((unsigned short)(u & 0xffff)));
                        k[rr][i] = kterm(s[rr][i], (float)(u >> 16));
                    }
                }
            }
#pragma unroll
            for (int t = 0; t < 16; t++) {
                float2 xv[B];
#pragma unroll
                for (int b = 0; b < B; b++) xv[b] = __ldg(a.xp + ((size_t)((((q >> 5) * 4 + p) * 16 + t) << 5) + lane) * B + b);
                constexpr int TPG = 16 / GPK; /* pairs per group */
#pragma unroll
                for (int rr = 0; rr < RPW; rr++) {
                    const float2 f = pair_codes<W>(cw[rr], p, t);
                    const float w0 = fmaf(f.x, s[rr][t / TPG], k[rr][t / TPG]), w1 = fmaf(f.y, s[rr][t / TPG], k[rr][t / TPG]);
#pragma unroll
                    for (int b = 0; b < B; b++) acc[rr][b] = fmaf(w1, xv[b].y, fmaf(w0, xv[b].x, acc[rr][b]));
                }
            }
        }
    }
    /* SpQR outliers of these rows: + (val − dense) · x */
    if (SP) {
#pragma unroll
        for (int rr = 0; rr < RPW; rr++) {
            const int r = r0 + rr;
            if (r >= a.rows) break;
            const uint32_t e = __ldg(a.orp + r + 1);
            for (uint32_t kk = __ldg(a.orp + r) + lane; kk < e; kk += 32) {
                const uint32_t c = __ldg(a.ocol + kk);
                const float d = __half2float(a.odelta[kk]);
#pragma unroll
                for (int b = 0; b < B; b++) acc[rr][b] = fmaf(d, xp_at(a.xp, B, c, b, true), acc[rr][b]);
            }
        }
    }
#pragma unroll
    for (int rr = 0; rr < RPW; rr++)
#pragma unroll
        for (int b = 0; b < B; b++) {
            float v = acc[rr][b];
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
            if (lane == rr * B + b && r0 + rr < a.rows && a.b0 + b < a.n) a.y[(size_t)(a.b0 + b) * a.rows + r0 + rr] = v;
        }
}

/* Rows per warp: 4 or 2 (ctx->tiled_rpw; default 2 for B <= 2, 4 for B = 4, 8: the lab's H100 sweep). */
template <int W, bool SP, int GP>
static cudaError_t launch_tiled_w(const targs &a, int B, int rpw, cudaStream_t st) {
    if (rpw != 2 && rpw != 4) rpw = B <= 2 ? 2 : 4;
    const int warps = (a.rows + rpw - 1) / rpw, blocks = (warps + 3) / 4;
    switch (B * 8 + rpw) {
    case 1 * 8 + 2: k_tiled<W, SP, GP, 1, 2><<<blocks, 128, 0, st>>>(a); break;
    case 1 * 8 + 4: k_tiled<W, SP, GP, 1, 4><<<blocks, 128, 0, st>>>(a); break;
    case 2 * 8 + 2: k_tiled<W, SP, GP, 2, 2><<<blocks, 128, 0, st>>>(a); break;
    case 2 * 8 + 4: k_tiled<W, SP, GP, 2, 4><<<blocks, 128, 0, st>>>(a); break;
    case 4 * 8 + 2: k_tiled<W, SP, GP, 4, 2><<<blocks, 128, 0, st>>>(a); break;
    case 4 * 8 + 4: k_tiled<W, SP, GP, 4, 4><<<blocks, 128, 0, st>>>(a); break;
    case 8 * 8 + 4: k_tiled<W, SP, GP, 8, 4><<<blocks, 128, 0, st>>>(a); break;
    default: k_tiled<W, SP, GP, 8, 2><<<blocks, 128, 0, st>>>(a); break;
    }
    return cudaGetLastError();
}

template <int W>
static cudaError_t launch_tiled_k(const spqr_cuda_qmatrix *m, const targs &a, int B, int rpw, cudaStream_t st) {
    if (m->kind != SPQR_TK_SPQR) return launch_tiled_w<W, false, 0>(a, B, rpw, st);
    switch (m->gp) {
    case 1: return launch_tiled_w<W, true, 1>(a, B, rpw, st);
    case 2: return launch_tiled_w<W, true, 2>(a, B, rpw, st);
    case 4: return launch_tiled_w<W, true, 4>(a, B, rpw, st);
    default: return launch_tiled_w<W, true, 0>(a, B, rpw, st);
    }
}

static spqr_status run_tiled(spqr_cuda_ctx *c, const spqr_cuda_qmatrix *m, const __half *x, int n, float *y, spqr_error *err) {
    const uint32_t npairs = (m->nq + 31) / 32 * 2048; /* whole 32-quad lane groups */
    const int Bmax = n >= 8 ? 8 : n > 4 ? 8 : n > 2 ? 4 : n;
    spqr_status st = spqr_cuda_ws_reserve(c, (size_t)npairs * Bmax * sizeof(float2), err);
    if (st) return st;
    float2 *xp = (float2 *)c->ws;
    for (int b0 = 0; b0 < n; b0 += 8) {
        const int nb = n - b0 < 8 ? n - b0 : 8, B = nb > 4 ? 8 : nb > 2 ? 4 : nb;
        CK(spqr_cuda_gather_x(x, n, b0, B, m->cols, m->perm, npairs, xp, c->stream, 1), "gather x");
        targs a = {(const uint4 *)m->tcodes, (const uint8_t *)m->tstat, m->tqq, m->orp, m->ocol, m->odelta, xp, y,
                   (int)m->rows, n, b0, (int)m->nq, (int)m->gpad, (int)m->gs, (int)m->qq_gs};
        cudaError_t e = m->wbits == 2 ? launch_tiled_k<2>(m, a, B, c->tiled_rpw, c->stream)
                        : m->wbits == 3 ? launch_tiled_k<3>(m, a, B, c->tiled_rpw, c->stream)
                                        : launch_tiled_k<4>(m, a, B, c->tiled_rpw, c->stream);
        CK(e, "tiled kernel");
    }
    return SPQR_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* Generic GEMV on the storage layout: one warp per row, lanes over columns, up to 8 activations  */
/* ---------------------------------------------------------------------------------------------- */

__global__ void __launch_bounds__(256) k_generic(const spqr_cuda_qmatrix m, const float2 *__restrict__ xp, int B, int n, int b0,
                                                 float *__restrict__ y) {
    const int lane = threadIdx.x & 31;
    const uint32_t r = blockIdx.x * 8 + (threadIdx.x >> 5);
    if (r >= m.rows) return;
    const uint8_t *crow = m.blob + m.lay.codes + (uint64_t)r * m.lay.code_stride;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    uint32_t gcur = UINT32_MAX;
    float s = 0, z = 0;
    for (uint32_t j = lane; j < m.cols; j += 32) {
        const uint32_t g = j / m.gs;
        if (g != gcur) { raw_stats(m, m.blob, r, g, &s, &z); gcur = g; }
        const float w = __fmul_rn(s, __fsub_rn((float)raw_bits(crow, j, m.wbits), z));
#pragma unroll
        for (int b = 0; b < 8; b++)
            if (b < B) acc[b] = fmaf(w, xp_at(xp, B, j, b), acc[b]);
    }
    if (m.kind == SPQR_TK_SPQR) {
        const uint32_t *rp = (const uint32_t *)(m.blob + m.lay.row_ptr);
        const uint16_t *oc = (const uint16_t *)(m.blob + m.lay.ocol), *ov = (const uint16_t *)(m.blob + m.lay.oval);
        for (uint32_t k = rp[r] + lane; k < rp[r + 1]; k += 32) {
            const uint32_t j = oc[k];
            const float d = __half2float(__ushort_as_half(ov[k])) - raw_weight(m, m.blob, r, j);
#pragma unroll
            for (int b = 0; b < 8; b++)
                if (b < B) acc[b] = fmaf(d, xp_at(xp, B, j, b), acc[b]);
        }
    }
#pragma unroll
    for (int b = 0; b < 8; b++) {
        float v = acc[b];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == b && b < B && b0 + b < n) y[(size_t)(b0 + b) * m.rows + r] = v;
    }
}

static spqr_status run_generic(spqr_cuda_ctx *c, const spqr_cuda_qmatrix *m, const void *x, int xf32, int n, float *y, spqr_error *err) {
    const uint32_t npairs = (m->cols + 1) / 2;
    spqr_status st = spqr_cuda_ws_reserve(c, (size_t)npairs * 8 * sizeof(float2), err);
    if (st) return st;
    float2 *xp = (float2 *)c->ws;
    for (int b0 = 0; b0 < n; b0 += 8) {
        const int B = n - b0 < 8 ? n - b0 : 8;
        CK(spqr_cuda_gather_x(x, n, b0, B, m->cols, m->perm, npairs, xp, c->stream, 0, xf32), "gather x");
        k_generic<<<(m->rows + 7) / 8, 256, 0, c->stream>>>(*m, xp, B, n, b0, y);
        CK(cudaGetLastError(), "generic kernel");
    }
    return SPQR_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* Dequantization to fp16 (stored order) and the prefill GEMM                                     */
/* ---------------------------------------------------------------------------------------------- */

/* Four threads per (row, packet): thread `sub` writes weights [8 sub, 8 sub + 8) of the packet as one
 * 16-byte store, so a warp's stores are contiguous. */
template <int W, bool SP, int GP>
__global__ void __launch_bounds__(256) k_dequant_tiled(targs a, int npq, __half *__restrict__ w16, int ld) {
    constexpr int GPK = GP ? GP : 1, TPG = 16 / GPK;
    const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= (size_t)a.rows * npq * 4) return;
    const int sub = (int)(i & 3), r = (int)((i >> 2) / npq), P = (int)((i >> 2) % npq);
    uint4 cw[W];
    const uint32_t *cw32 = (const uint32_t *)a.codes;
#pragma unroll
    for (int k = 0; k < W; k++) {
        uint32_t v = __ldg(cw32 + ((size_t)r * W + k) * npq + P);
        cw[k] = make_uint4(v, v, v, v);
    }
    uint32_t out[4];
#pragma unroll
    for (int u = 0; u < 4; u++) {
        const int t = 4 * sub + u, g_i = t / TPG;
        const int g = GP ? P * GP + g_i : (P * 32) / a.gs;
        float s, kk;
        if (SP) {
            const uint2 qv = __ldg(a.qq + (size_t)(r / a.qq_gs) * a.gpad + g);
            const float ss = __half2float(__ushort_as_half((unsigned short)(qv.x & 0xffff)));
            const float nsz = -ss * __half2float(__ushort_as_half((unsigned short)(qv.x >> 16)));
            const float zs = __half2float(__ushort_as_half((unsigned short)(qv.y & 0xffff)));
            const float nzz = -zs * __half2float(__ushort_as_half((unsigned short)(qv.y >> 16)));
            const unsigned byte = __ldg(a.stat + (size_t)r * a.gpad + g);
            s = fmaf((float)(byte & 15u), ss, nsz);
            kk = kterm(s, fmaf((float)(byte >> 4), zs, nzz));
        } else {
            const uint32_t uu = __ldg((const uint32_t *)a.stat + (size_t)r * a.gpad + g);
            s = __half2float(__ushort_as_half((unsigned short)(uu & 0xffff)));
            kk = kterm(s, (float)(uu >> 16));
        }
        float2 f;
        switch (t) { /* compile-time pair index for the decoder */
#define PC(T) case T: f = pair_codes<W>(cw, 0, T); break;
            PC(0) PC(1) PC(2) PC(3) PC(4) PC(5) PC(6) PC(7) PC(8) PC(9) PC(10) PC(11) PC(12) PC(13) PC(14) default: f = pair_codes<W>(cw, 0, 15);
#undef PC
        }
        __half2 h = __floats2half2_rn(fmaf(f.x, s, kk), fmaf(f.y, s, kk));
        out[u] = *reinterpret_cast<uint32_t *>(&h);
    }
    *(uint4 *)(w16 + (size_t)r * ld + (size_t)P * 32 + 8 * sub) = make_uint4(out[0], out[1], out[2], out[3]);
}

/* Storage-layout dequantization, one thread per element; zero past cols. */
__global__ void k_dequant_raw(const spqr_cuda_qmatrix m, __half *__restrict__ w16, int ld) {
    const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= (size_t)m.rows * ld) return;
    const uint32_t r = (uint32_t)(i / ld), j = (uint32_t)(i % ld);
    w16[i] = __float2half_rn(j < m.cols ? raw_weight(m, m.blob, r, j) : 0.f);
}

/* Outliers overwrite their dense weights with the exact fp16 values (one warp per row). */
__global__ void k_outliers_set(const spqr_cuda_qmatrix m, __half *__restrict__ w16, int ld) {
    const uint32_t r = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (r >= m.rows) return;
    const uint32_t *rp = (const uint32_t *)(m.blob + m.lay.row_ptr);
    const uint16_t *oc = (const uint16_t *)(m.blob + m.lay.ocol), *ov = (const uint16_t *)(m.blob + m.lay.oval);
    for (uint32_t k = rp[r] + lane; k < rp[r + 1]; k += 32) w16[(size_t)r * ld + oc[k]] = __ushort_as_half(ov[k]);
}

template <int W, bool SP, int GP>
static cudaError_t launch_deq_w(const spqr_cuda_qmatrix *m, __half *w16, int ld, cudaStream_t st) {
    targs a = {(const uint4 *)m->tcodes, (const uint8_t *)m->tstat, m->tqq, m->orp, m->ocol, m->odelta, NULL, NULL,
               (int)m->rows, 0, 0, (int)m->nq, (int)m->gpad, (int)m->gs, (int)m->qq_gs};
    const size_t total = (size_t)m->rows * m->npq * 4;
    k_dequant_tiled<W, SP, GP><<<(unsigned)((total + 255) / 256), 256, 0, st>>>(a, (int)m->npq, w16, ld);
    return cudaGetLastError();
}

template <int W>
static cudaError_t launch_deq_k(const spqr_cuda_qmatrix *m, __half *w16, int ld, cudaStream_t st) {
    if (m->kind != SPQR_TK_SPQR) return launch_deq_w<W, false, 0>(m, w16, ld, st);
    switch (m->gp) {
    case 1: return launch_deq_w<W, true, 1>(m, w16, ld, st);
    case 2: return launch_deq_w<W, true, 2>(m, w16, ld, st);
    case 4: return launch_deq_w<W, true, 4>(m, w16, ld, st);
    default: return launch_deq_w<W, true, 0>(m, w16, ld, st);
    }
}

extern "C" spqr_status spqr_cuda_dequant_f16(spqr_cuda_ctx *c, const spqr_cuda_qmatrix *m, void *w16_dev, int ld, spqr_error *err) {
    if (ld < spqr_cuda_dequant_ld(m)) return spqr_set_err(err, SPQR_E_ARG, "cuda: dequant ld %d < %d", ld, spqr_cuda_dequant_ld(m));
    __half *w16 = (__half *)w16_dev;
    if (m->tiled) {
        cudaError_t e = m->wbits == 2 ? launch_deq_k<2>(m, w16, ld, c->stream) : m->wbits == 3 ? launch_deq_k<3>(m, w16, ld, c->stream)
                                                                              : launch_deq_k<4>(m, w16, ld, c->stream);
        CK(e, "dequant kernel");
    } else {
        const size_t total = (size_t)m->rows * ld;
        k_dequant_raw<<<(unsigned)((total + 255) / 256), 256, 0, c->stream>>>(*m, w16, ld);
        CK(cudaGetLastError(), "dequant kernel");
    }
    if (m->kind == SPQR_TK_SPQR && m->n_out) {
        k_outliers_set<<<(m->rows + 7) / 8, 256, 0, c->stream>>>(*m, w16, ld);
        CK(cudaGetLastError(), "outlier kernel");
    }
    return SPQR_OK;
}

spqr_status spqr_cuda_gemm_w16(spqr_cuda_ctx *c, const __half *w16, int rows, int ld, const void *x, int xf32, int n, uint32_t cols,
                               const int32_t *perm, __half *x16, float *y, spqr_error *err) {
    CK(spqr_cuda_gather_x16(x, xf32, 0, n, cols, perm, ld, x16, c->stream), "gather x16");
    const float one = 1.f, zero = 0.f;
    const cublasStatus_t bs = cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, rows, n, ld, &one, w16, CUDA_R_16F, ld, x16, CUDA_R_16F, ld, &zero, y,
                                           CUDA_R_32F, rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (bs != CUBLAS_STATUS_SUCCESS) return spqr_set_err(err, SPQR_E_IO, "cuda: cublasGemmEx failed (%d)", (int)bs);
    return SPQR_OK;
}

static spqr_status run_dequant(spqr_cuda_ctx *c, const spqr_cuda_qmatrix *m, const __half *x, int n, float *y, spqr_error *err) {
    const int ld = spqr_cuda_dequant_ld(m);
    const size_t wbytes = ((size_t)m->rows * ld * 2 + 255) / 256 * 256;
    spqr_status st = spqr_cuda_ws_reserve(c, wbytes + (size_t)n * ld * 2, err);
    if (st) return st;
    __half *w16 = (__half *)c->ws, *x16 = (__half *)((char *)c->ws + wbytes);
    st = spqr_cuda_dequant_f16(c, m, w16, ld, err);
    if (st) return st;
    return spqr_cuda_gemm_w16(c, w16, (int)m->rows, ld, x, 0, n, m->cols, m->perm, x16, y, err);
}

/* v7 in calls of at most 16 activations (per activation, 16-wide calls measured faster than 64-wide
 * passes on SpQR matrices: bench/cuda/README.md, run 13: 25.4 µs per 16 against 122.2 per 64 at
 * 4096 x 4096); above 16 (ctx->mma_deq < 0, the default) v12, the weights dequantized from the same
 * layout into cuBLAS. */
static spqr_status run_mma(spqr_cuda_ctx *c, const spqr_cuda_qmatrix *m, const void *x, int xf32, int n, float *y, spqr_error *err) {
    if (c->mma_deq > 0 || (c->mma_deq < 0 && n > 16)) return spqr_cuda_mma_dequant_matmul(c, m->mma, x, xf32, n, y, err);
    const size_t xrow = (size_t)m->cols * (xf32 ? 4 : 2);
    for (int b0 = 0; b0 < n; b0 += 16) {
        spqr_status st = spqr_cuda_mma_matmul(c, m->mma, (const char *)x + b0 * xrow, xf32, n - b0 < 16 ? n - b0 : 16, y + (size_t)b0 * m->rows, err);
        if (st) return st;
    }
    return SPQR_OK;
}

/* After every product: the reuse declaration is spent, and an image in xbuf stays reusable only if
 * this product was the fused one that prepared or reused it (spqr_cuda_ctx_reuse_x: "the previous
 * product's x"). */
static spqr_status product_done(spqr_cuda_ctx *c, spqr_status st) {
    c->reuse_next = 0;
    if (!c->xlast_kept || st) c->xlast.valid = 0;
    c->xlast_kept = 0;
    return st;
}

static spqr_status matmul(spqr_cuda_ctx *c, const spqr_cuda_qmatrix *m, spqr_cuda_algo algo, const void *x_dev, int n, float *y_dev,
                          spqr_error *err) {
    if (n < 1 || n > 65536) return spqr_set_err(err, SPQR_E_ARG, "cuda: batch %d outside 1..65536", n);
    if (algo == SPQR_CUDA_AUTO) {
        if (m->mma && (n > 2 || !m->fused)) algo = SPQR_CUDA_MMA; /* v5 up to 2 (run 19), v7 up to 16, v12 above */
        else algo = n <= 8 ? (m->fused ? SPQR_CUDA_FUSED : m->tiled ? SPQR_CUDA_TILED : SPQR_CUDA_GENERIC) : m->has_raw ? SPQR_CUDA_DEQUANT : SPQR_CUDA_FUSED;
    }
    if (algo != SPQR_CUDA_FUSED && algo != SPQR_CUDA_ACT8 && algo != SPQR_CUDA_TILED && algo != SPQR_CUDA_MMA && algo != SPQR_CUDA_GSUM &&
        algo != SPQR_CUDA_STREAM && !m->has_raw)
        return spqr_set_err(err, SPQR_E_UNSUPPORTED, "cuda: this upload has no storage layout");
    const __half *x = (const __half *)x_dev;
    switch (algo) {
    case SPQR_CUDA_TILED:
        if (!m->tiled) return spqr_set_err(err, SPQR_E_UNSUPPORTED, "cuda: the tiled kernels do not support this matrix");
        return run_tiled(c, m, x, n, y_dev, err);
    case SPQR_CUDA_FUSED:
        if (!m->fused) return spqr_set_err(err, SPQR_E_UNSUPPORTED, "cuda: the fused kernel does not support this matrix");
        return spqr_cuda_run_fused(c, m, x, 0, n, y_dev, 0, err);
    case SPQR_CUDA_ACT8:
        if (!m->a8codes) return spqr_set_err(err, SPQR_E_UNSUPPORTED, "cuda: this upload has no act8 layout");
        return spqr_cuda_run_fused(c, m, x, 0, n, y_dev, 1, err);
    case SPQR_CUDA_MMA:
        if (!m->mma) return spqr_set_err(err, SPQR_E_UNSUPPORTED, "cuda: this upload has no MMA layout");
        return run_mma(c, m, x, 0, n, y_dev, err);
    case SPQR_CUDA_GSUM:
        if (!m->gsum) return spqr_set_err(err, SPQR_E_UNSUPPORTED, "cuda: this upload has no group-sum layout");
        return spqr_cuda_mma_matmul(c, m->gsum, x, 0, n, y_dev, err);
    case SPQR_CUDA_STREAM:
        if (!m->stream) return spqr_set_err(err, SPQR_E_UNSUPPORTED, "cuda: this upload has no streaming layout");
        return spqr_cuda_stream_matmul(c, m->stream, x, 0, n, y_dev, err);
    case SPQR_CUDA_GENERIC: return run_generic(c, m, x, 0, n, y_dev, err);
    case SPQR_CUDA_DEQUANT: return run_dequant(c, m, x, n, y_dev, err);
    default: return spqr_set_err(err, SPQR_E_ARG, "cuda: unknown algorithm %d", (int)algo);
    }
}

extern "C" spqr_status spqr_cuda_matmul(spqr_cuda_ctx *c, const spqr_cuda_qmatrix *m, spqr_cuda_algo algo, const void *x_dev, int n,
                                        float *y_dev, spqr_error *err) {
    return product_done(c, matmul(c, m, algo, x_dev, n, y_dev, err));
}

static spqr_status matmul_f32(spqr_cuda_ctx *c, const spqr_cuda_qmatrix *m, const float *x_dev, int n, float *y_dev, spqr_error *err) {
    if (n < 1 || n > 65536) return spqr_set_err(err, SPQR_E_ARG, "cuda: batch %d outside 1..65536", n);
    if (c->act8 && m->a8codes && n == 1) return spqr_cuda_run_fused(c, m, x_dev, 1, n, y_dev, 1, err);
    if (m->fused && (n <= 2 || !m->mma)) return spqr_cuda_run_fused(c, m, x_dev, 1, n, y_dev, 0, err);
    if (m->mma) return run_mma(c, m, x_dev, 1, n, y_dev, err);
    if (!m->has_raw) return spqr_set_err(err, SPQR_E_UNSUPPORTED, "cuda: this upload has no storage layout");
    return run_generic(c, m, x_dev, 1, n, y_dev, err);
}

extern "C" spqr_status spqr_cuda_matmul_f32(spqr_cuda_ctx *c, const spqr_cuda_qmatrix *m, const float *x_dev, int n, float *y_dev, spqr_error *err) {
    return product_done(c, matmul_f32(c, m, x_dev, n, y_dev, err));
}

extern "C" spqr_status spqr_cuda_gemm_f16(spqr_cuda_ctx *c, const void *w16_dev, int rows, int cols, const void *x_dev, int n, void *y16_dev,
                                         spqr_error *err) {
    const float one = 1.f, zero = 0.f;
    cublasStatus_t bs = cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, rows, n, cols, &one, w16_dev, CUDA_R_16F, cols, x_dev, CUDA_R_16F,
                                     cols, &zero, y16_dev, CUDA_R_16F, rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (bs != CUBLAS_STATUS_SUCCESS) return spqr_set_err(err, SPQR_E_IO, "cuda: cublasGemmEx failed (%d)", (int)bs);
    return SPQR_OK;
}
