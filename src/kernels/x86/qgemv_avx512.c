/*
 * qgemv_avx512.c — AVX-512 quantized matrix-vector products (compiled with -mavx512f -mavx512bw
 * -mavx512vl -mavx512dq -mavx512vbmi -mavx512vnni plus AVX2; the tile kernels are offered only on
 * CPUs with VBMI, the 8-bit-activation one only with VNNI too).
 *
 * The decode kernel of choice is qgemv_tiles_avx512, over the tile layout (qtiles.h): 16 rows in
 * the lanes, so group statistics decode once per 16 rows and no horizontal sums are needed.
 * The row kernel below reads the file's layout (used when a matrix has no tiles).
 * Row kernel, dense part, for w ≤ 4 and groups of a multiple of 16 codes: 16 codes are one 64-bit load (a group
 * of 16 codes of w bits starts on a byte boundary): lanes 0–7 take the low 32 bits, lanes 8–15 the
 * bits from 8w up, then a per-lane shift (0, w, …, 7w) and a mask. Other shapes use the shared
 * 8-wide loop.
 * SpQR statistics, for q ≤ 4: the 2q-bit (scale code, zero code) pairs of 8 groups are one 64-bit
 * load decoded the same way, then s, z = A·(code − B) with A = (ss, zs), B = (sz, zz) per group:
 * the same float operations as the scalar path, so results are identical.
 */
#include "kernels/cpu.h"
#include "kernels/qgemv_common.h"
#include "kernels/qtiles.h"
#include "kernels/x86/qgemv_x86.h"

/* 16 w-bit fields starting at a byte boundary, one per 32-bit lane (16w ≤ 64). */
static inline __m512i fields16(const uint8_t *p, unsigned w, __m512i shifts, __m512i mask) {
    uint64_t word;
    memcpy(&word, p, 8);
    __m512i both = _mm512_mask_blend_epi32(0xFF00, _mm512_set1_epi32((int)(uint32_t)word), _mm512_set1_epi32((int)(uint32_t)(word >> (8 * w))));
    return _mm512_and_si512(_mm512_srlv_epi32(both, shifts), mask);
}

static inline __m512i lane_shifts(unsigned w) {
    const int k = (int)w;
    return _mm512_setr_epi32(0, k, 2 * k, 3 * k, 4 * k, 5 * k, 6 * k, 7 * k, 0, k, 2 * k, 3 * k, 4 * k, 5 * k, 6 * k, 7 * k);
}

static void row_stats_avx512(const spqr_qview *v, uint32_t r, const float *qqf, float *s, float *z) {
    const unsigned q = v->qq_bits;
    if (v->kind != SPQR_TK_SPQR || q > 4) { qk_row_stats(v, r, qqf, s, z); return; }
    const uint64_t G = v->lay.groups;
    const uint8_t *srow = v->stats + (uint64_t)r * v->lay.stat_stride;
    const __m512i shifts = lane_shifts(q), mask = _mm512_set1_epi32((1 << q) - 1);
    const __m512i ia = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30); /* ss, zs of groups 0..7 */
    const __m512i ib = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31); /* sz, zz */
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    uint64_t g = 0;
    for (; g + 8 <= G; g += 8) {
        __m512 q0 = _mm512_loadu_ps(qqf + 4 * g), q1 = _mm512_loadu_ps(qqf + 4 * g + 16);
        __m512 A = _mm512_permutex2var_ps(q0, ia, q1), B = _mm512_permutex2var_ps(q0, ib, q1);
        __m512 codes = _mm512_cvtepi32_ps(fields16(srow + g * 2 * q / 8, q, shifts, mask)); /* s0 z0 s1 z1 ... */
        __m512 vals = _mm512_permutexvar_ps(even, _mm512_mul_ps(A, _mm512_sub_ps(codes, B)));
        _mm256_storeu_ps(s + g, _mm512_castps512_ps256(vals));
        _mm256_storeu_ps(z + g, _mm512_extractf32x8_ps(vals, 1));
    }
    for (; g < G; g++) {
        s[g] = spqr_deq(qqf[4 * g], qqf[4 * g + 1], spqr_bits_get(srow, 2 * g, q));
        z[g] = spqr_deq(qqf[4 * g + 2], qqf[4 * g + 3], spqr_bits_get(srow, 2 * g + 1, q));
    }
}

static inline float zterm_avx512(const float *s, const float *z, const float *gsum, uint64_t G) {
    __m512 acc = _mm512_setzero_ps();
    uint64_t g = 0;
    for (; g + 16 <= G; g += 16) acc = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_loadu_ps(s + g), _mm512_loadu_ps(z + g)), _mm512_loadu_ps(gsum + g), acc);
    float t = _mm512_reduce_add_ps(acc);
    for (; g < G; g++) t += s[g] * z[g] * gsum[g];
    return t;
}

static inline float dense_avx512(const spqr_qview *v, const uint8_t *crow, const float *s, const float *x) {
    const unsigned w = v->wbits;
    const uint32_t cols = v->cols, gs = v->groupsize;
    if (w > 4 || (gs & 15)) return dense_avx2(v, crow, s, x);
    const __m512i shifts = lane_shifts(w), mask = _mm512_set1_epi32((1 << w) - 1);
    const uint32_t full = cols / gs; /* whole groups; a ragged last group is finished below */
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    const uint32_t chunk_bytes = 2 * w; /* 16 codes */
    const uint8_t *p = crow;
    const float *xp = x;
    for (uint32_t g = 0; g < full; g++) {
        const __m512 sg = _mm512_set1_ps(s[g]);
        uint32_t k = 0;
        for (; k + 32 <= gs; k += 32, p += 2 * chunk_bytes, xp += 32) { /* two independent chains */
            __m512 t0 = _mm512_mul_ps(_mm512_cvtepi32_ps(fields16(p, w, shifts, mask)), _mm512_loadu_ps(xp));
            __m512 t1 = _mm512_mul_ps(_mm512_cvtepi32_ps(fields16(p + chunk_bytes, w, shifts, mask)), _mm512_loadu_ps(xp + 16));
            acc0 = _mm512_fmadd_ps(sg, t0, acc0);
            acc1 = _mm512_fmadd_ps(sg, t1, acc1);
        }
        for (; k < gs; k += 16, p += chunk_bytes, xp += 16)
            acc0 = _mm512_fmadd_ps(sg, _mm512_mul_ps(_mm512_cvtepi32_ps(fields16(p, w, shifts, mask)), _mm512_loadu_ps(xp)), acc0);
    }
    float tail = 0;
    if (full * gs < cols) {
        float t = 0;
        for (uint32_t j = full * gs; j < cols; j++) t += (float)spqr_bits_get(crow, j, w) * x[j];
        tail = s[full] * t;
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + tail;
}

static void qgemv_avx512(const spqr_qview *v, uint32_t r0, uint32_t r1, const float *x_s, const float *gsum, float *scratch, float *y) {
#define DENSE(crow, s, x) dense_avx512(v, crow, s, x)
    QK_ROWS(v, r0, r1, x_s, gsum, scratch, y, DENSE, row_stats_avx512, zterm_avx512);
#undef DENSE
}

/* 16-bit matrix-vector product, 16 columns at a time, two rows at once for memory parallelism. */
static void gemv16_avx512(const uint16_t *W, int bf16, uint32_t cols, uint32_t r0, uint32_t r1, const float *x, float *y) {
    for (uint32_t r = r0; r < r1; r++) {
        const uint16_t *w = W + (uint64_t)r * cols;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        uint32_t j = 0;
        for (; j + 32 <= cols; j += 32) {
            __m256i h0 = _mm256_loadu_si256((const __m256i *)(w + j)), h1 = _mm256_loadu_si256((const __m256i *)(w + j + 16));
            __m512 f0 = bf16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h0), 16)) : _mm512_cvtph_ps(h0);
            __m512 f1 = bf16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h1), 16)) : _mm512_cvtph_ps(h1);
            a0 = _mm512_fmadd_ps(f0, _mm512_loadu_ps(x + j), a0);
            a1 = _mm512_fmadd_ps(f1, _mm512_loadu_ps(x + j + 16), a1);
        }
        float t = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
        for (; j < cols; j++) t += (bf16 ? spqr_bf16_to_f32(w[j]) : spqr_f16_to_f32(w[j])) * x[j];
        y[r - r0] = t;
    }
}

/* One row's dense weights in stored order, 16 codes at a time (w ≤ 4, groups of 16k), else 8. */
static void deq_row_avx512(const spqr_qview *v, const uint8_t *crow, const float *s, const float *z, float *o) {
    const unsigned w = v->wbits;
    const uint32_t cols = v->cols, gs = v->groupsize;
    if (w > 4 || (gs & 15)) { deq_row_avx2(v, crow, s, z, o); return; }
    const __m512i shifts = lane_shifts(w), mask = _mm512_set1_epi32((1 << w) - 1);
    for (uint32_t j0 = 0, g = 0; j0 < cols; j0 += gs, g++) {
        const uint32_t j1 = j0 + gs < cols ? j0 + gs : cols;
        const __m512 sg = _mm512_set1_ps(s[g]), zg = _mm512_set1_ps(z[g]);
        uint32_t j = j0;
        for (; j + 16 <= j1; j += 16) {
            __m512 q = _mm512_cvtepi32_ps(fields16(crow + ((uint64_t)j * w >> 3), w, shifts, mask));
            _mm512_storeu_ps(o + j, _mm512_mul_ps(sg, _mm512_sub_ps(q, zg)));
        }
        for (; j < j1; j++) o[j] = spqr_deq(s[g], z[g], spqr_bits_get(crow, j, w));
    }
}

static void qdequant_avx512(const spqr_qview *v, uint32_t r0, uint32_t r1, float *scratch, float *out) {
#define DEQ(crow, s, z, o) deq_row_avx512(v, crow, s, z, o)
    QK_DEQUANT(v, r0, r1, scratch, out, DEQ, row_stats_avx512);
#undef DEQ
}


/* ---- tile kernel (see qtiles.h): 16 rows in the lanes ------------------------------------------ */

/* o[r - rb] += Σ δ·x[col] over the outliers of rows [rb, re): one flat loop over the tile's CSR range
 * (each entry knows its lane), no per-row loop whose trip counts the branch predictor cannot learn.
 * Each row's outliers are still added in CSR order. */
static inline void tile_outliers(const spqr_qtiles *t, uint32_t rb, uint32_t re, const float *x, float *o) {
    if (!t->o_ptr) return;
    for (uint32_t k = t->o_ptr[rb], e = t->o_ptr[re]; k < e; k++) o[t->o_lane[k]] += t->o_delta[k] * x[t->o_col[k]];
}

#ifndef PF_U16
#define PF_U16 1024 /* software prefetch distance (u16) into the tile stream */
#endif

/* VPMULTISHIFTQB control that moves bits [n·i, n·i + 8) of a broadcast 64-bit word into the low
 * byte of dword lane i (qword k holds lanes 2k, 2k + 1). */
static inline __m512i lane_ctrl(unsigned n) {
    uint64_t c[8];
    for (unsigned k = 0; k < 8; k++) c[k] = (uint64_t)(n * 2 * k) | (uint64_t)(n * (2 * k + 1)) << 32;
    return _mm512_loadu_si512(c);
}

/* The 16 n-bit codes of a lane vector (n ≤ 4: one 64-bit word) as floats. */
static inline __m512 lanes_ps(const uint16_t *vec, __m512i ctrl, __m512i mask) {
    uint64_t w;
    memcpy(&w, vec, 8);
    return _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_multishift_epi64_epi8(ctrl, _mm512_set1_epi64((long long)w)), mask));
}

/* Rows [r0, r1) (r0 a multiple of 16) through W-bit tiles (W ≤ 4): per column, the 16 codes as
 * floats times x_j into one of P accumulators (columns j mod P, for the FMA latency); per group,
 * out += s ⊙ (Σ q x − z · Σ x). Q > 0: SpQR statistics of Q bits (constant); 0: from t. */
static inline __attribute__((always_inline)) void tiles_avx512(const spqr_qtiles *t, uint32_t r0, uint32_t r1, const float *x, const float *gsum,
                                                               float *y, const unsigned W, const unsigned P, const unsigned Q) {
    const uint32_t cols = t->cols, gs = t->groupsize, G = t->groups;
    const unsigned q = Q ? Q : t->qq_bits;
    const bool spqr = t->kind == SPQR_TK_SPQR;
    const __m512i cw = lane_ctrl(W), mw = _mm512_set1_epi32((1 << W) - 1), cq = lane_ctrl(q), mq = _mm512_set1_epi32((1 << q) - 1);
    for (uint32_t tile = r0 / SPQR_TILE_ROWS; tile * SPQR_TILE_ROWS < r1; tile++) {
        const uint16_t *tl = spqr_qtiles_tile(t, tile);
        __m512 out = _mm512_setzero_ps();
        for (uint32_t g = 0, j0 = 0; g < G; g++, j0 += gs) {
            const uint32_t j1 = j0 + gs < cols ? j0 + gs : cols;
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            const uint16_t *pl = tl + (uint64_t)j0 * W;
            const float *xp = x + j0, *const xe = x + j1;
            _mm_prefetch((const char *)(pl + PF_U16), _MM_HINT_T0);
            _mm_prefetch((const char *)(pl + PF_U16 + 32), _MM_HINT_T0);
            for (; xp + P <= xe; xp += P, pl += P * W) {
                a0 = _mm512_fmadd_ps(lanes_ps(pl, cw, mw), _mm512_set1_ps(xp[0]), a0);
                if (P > 1) a1 = _mm512_fmadd_ps(lanes_ps(pl + W, cw, mw), _mm512_set1_ps(xp[1]), a1);
                if (P > 2) a2 = _mm512_fmadd_ps(lanes_ps(pl + 2 * W, cw, mw), _mm512_set1_ps(xp[2]), a2);
                if (P > 3) a3 = _mm512_fmadd_ps(lanes_ps(pl + 3 * W, cw, mw), _mm512_set1_ps(xp[3]), a3);
            }
            for (; xp < xe; xp++, pl += W) a0 = _mm512_fmadd_ps(lanes_ps(pl, cw, mw), _mm512_set1_ps(xp[0]), a0);
            __m512 qx = a0;
            if (P > 1) qx = _mm512_add_ps(qx, a1);
            if (P > 2) qx = _mm512_add_ps(qx, _mm512_add_ps(a2, a3));
            const uint16_t *st = spqr_qtiles_stats(t, tl, g);
            __m512 s, z;
            if (spqr) { /* s = ss (sc − sz), z = zs (zc − zz): each scalar broadcast from memory */
                float qq[4];
                spqr_qtiles_qq(st, q, qq);
                s = _mm512_mul_ps(_mm512_sub_ps(lanes_ps(st, cq, mq), _mm512_set1_ps(qq[1])), _mm512_set1_ps(qq[0]));
                z = _mm512_mul_ps(_mm512_sub_ps(lanes_ps(st + q, cq, mq), _mm512_set1_ps(qq[3])), _mm512_set1_ps(qq[2]));
            } else {
                s = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)st));
                z = lanes_ps(st + 16, cw, mw);
            }
            out = _mm512_fmadd_ps(s, _mm512_fnmadd_ps(z, _mm512_set1_ps(gsum[g]), qx), out);
        }
        float o[SPQR_TILE_ROWS];
        _mm512_storeu_ps(o, out);
        const uint32_t rb = tile * SPQR_TILE_ROWS, re = rb + SPQR_TILE_ROWS < r1 ? rb + SPQR_TILE_ROWS : r1;
        tile_outliers(t, rb, re, x, o);
        for (uint32_t r = rb; r < re; r++) y[r - r0] = o[r - rb];
    }
}

/* 1–4-bit codes (and SpQR statistics of ≤ 4 bits) through the vector kernel; wider through the
 * reference (they are rare and already bandwidth-heavy). */
static void qgemv_tiles_avx512(const spqr_qtiles *t, uint32_t r0, uint32_t r1, const float *x_s, const float *gsum, float *y) {
    if (t->kind == SPQR_TK_SPQR && t->qq_bits > 4) { spqr_qtiles_gemv_ref(t, r0, r1, x_s, gsum, y); return; }
    const bool q3 = t->kind == SPQR_TK_SPQR && t->qq_bits == 3; /* the paper's statistics: specialised */
    switch (t->wbits * 2 + q3) {
    case 2: tiles_avx512(t, r0, r1, x_s, gsum, y, 1, 4, 0); break;
    case 3: tiles_avx512(t, r0, r1, x_s, gsum, y, 1, 4, 3); break;
    case 4: tiles_avx512(t, r0, r1, x_s, gsum, y, 2, 4, 0); break;
    case 5: tiles_avx512(t, r0, r1, x_s, gsum, y, 2, 4, 3); break;
    case 6: tiles_avx512(t, r0, r1, x_s, gsum, y, 3, 4, 0); break;
    case 7: tiles_avx512(t, r0, r1, x_s, gsum, y, 3, 4, 3); break;
    case 8: tiles_avx512(t, r0, r1, x_s, gsum, y, 4, 4, 0); break;
    case 9: tiles_avx512(t, r0, r1, x_s, gsum, y, 4, 4, 3); break;
    default: spqr_qtiles_gemv_ref(t, r0, r1, x_s, gsum, y); break;
    }
}

/* ---- tile kernel with 8-bit activations (spqr_ctx_opts.act8): VNNI integer dot products ------- */

/* VPERMB index and VPMULTISHIFTQB control that turn 4 consecutive columns' lane vectors (W-bit
 * codes, 2W bytes each) into dword lane i = bytes (q(i,j), q(i,j+1), q(i,j+2), q(i,j+3)) after a
 * mask: qword k (lanes 2k, 2k+1) gathers the ≤ 2 bytes holding those lanes' bits from each column. */
static void act8_ctrl(unsigned W, __m512i *perm, __m512i *ctrl) {
    uint8_t pi[64], ci[64];
    for (unsigned k = 0; k < 8; k++) {
        const unsigned bit0 = 2 * k * W, byte0 = bit0 / 8, sh = bit0 % 8;
        for (unsigned c = 0; c < 4; c++) {
            pi[8 * k + 2 * c] = (uint8_t)(c * 2 * W + byte0);
            pi[8 * k + 2 * c + 1] = (uint8_t)(c * 2 * W + byte0 + 1);
            ci[8 * k + c] = (uint8_t)(16 * c + sh);         /* lane 2k, column c */
            ci[8 * k + 4 + c] = (uint8_t)(16 * c + sh + W); /* lane 2k + 1 */
        }
    }
    *perm = _mm512_loadu_si512(pi);
    *ctrl = _mm512_loadu_si512(ci);
}

/* 4 columns × 16 lanes of W-bit codes as u8, dword lane i = row i's 4 codes. */
static inline __m512i codes4_u8(const uint16_t *pl, __m512i perm, __m512i ctrl, __m512i mask) {
    const __m512i v = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)pl)); /* 8W ≤ 32 bytes */
    return _mm512_and_si512(_mm512_multishift_epi64_epi8(ctrl, _mm512_permutexvar_epi8(perm, v)), mask);
}

/* Rows [r0, r1) (r0 a multiple of 16), W ≤ 4, groups and columns multiples of 8: per group, two
 * int32 accumulators of VPDPBUSD (u8 codes × s8 activations, 4 columns per instruction), then
 * out += s ⊙ (dx·Σ − z·gq) as in spqr_qtiles_gemv_act8_ref. */
static inline __attribute__((always_inline)) void tiles_act8_avx512(const spqr_qtiles *t, uint32_t r0, uint32_t r1, const int8_t *xq, const float *dx,
                                                                    const float *gq, const float *x, float *y, const unsigned W, const unsigned Q) {
    const uint32_t cols = t->cols, gs = t->groupsize, G = t->groups;
    const unsigned q = Q ? Q : t->qq_bits;
    const bool spqr = t->kind == SPQR_TK_SPQR;
    __m512i perm, ctrl;
    act8_ctrl(W, &perm, &ctrl);
    const __m512i m8 = _mm512_set1_epi8((char)((1 << W) - 1));
    const __m512i cw = lane_ctrl(W), mw = _mm512_set1_epi32((1 << W) - 1), cq = lane_ctrl(q), mq = _mm512_set1_epi32((1 << q) - 1);
    for (uint32_t tile = r0 / SPQR_TILE_ROWS; tile * SPQR_TILE_ROWS < r1; tile++) {
        const uint16_t *tl = spqr_qtiles_tile(t, tile);
        __m512 out = _mm512_setzero_ps();
        for (uint32_t g = 0, j0 = 0; g < G; g++, j0 += gs) {
            const uint32_t j1 = j0 + gs < cols ? j0 + gs : cols;
            const uint16_t *pl = tl + (uint64_t)j0 * W;
            _mm_prefetch((const char *)(pl + PF_U16), _MM_HINT_T0);
            _mm_prefetch((const char *)(pl + PF_U16 + 32), _MM_HINT_T0);
            __m512i a0 = _mm512_setzero_si512(), a1 = a0;
            for (uint32_t j = j0; j < j1; j += 8, pl += 8 * W) {
                int32_t x0, x1;
                memcpy(&x0, xq + j, 4);
                memcpy(&x1, xq + j + 4, 4);
                a0 = _mm512_dpbusd_epi32(a0, codes4_u8(pl, perm, ctrl, m8), _mm512_set1_epi32(x0));
                a1 = _mm512_dpbusd_epi32(a1, codes4_u8(pl + 4 * W, perm, ctrl, m8), _mm512_set1_epi32(x1));
            }
            const __m512 qx = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(a0, a1)), _mm512_set1_ps(dx[g]));
            const uint16_t *st = spqr_qtiles_stats(t, tl, g);
            __m512 s, z;
            if (spqr) { /* s = ss (sc − sz), z = zs (zc − zz): each scalar broadcast from memory */
                float qq[4];
                spqr_qtiles_qq(st, q, qq);
                s = _mm512_mul_ps(_mm512_sub_ps(lanes_ps(st, cq, mq), _mm512_set1_ps(qq[1])), _mm512_set1_ps(qq[0]));
                z = _mm512_mul_ps(_mm512_sub_ps(lanes_ps(st + q, cq, mq), _mm512_set1_ps(qq[3])), _mm512_set1_ps(qq[2]));
            } else {
                s = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)st));
                z = lanes_ps(st + 16, cw, mw);
            }
            out = _mm512_fmadd_ps(s, _mm512_fnmadd_ps(z, _mm512_set1_ps(gq[g]), qx), out);
        }
        float o[SPQR_TILE_ROWS];
        _mm512_storeu_ps(o, out);
        const uint32_t rb = tile * SPQR_TILE_ROWS, re = rb + SPQR_TILE_ROWS < r1 ? rb + SPQR_TILE_ROWS : r1;
        tile_outliers(t, rb, re, x, o);
        for (uint32_t r = rb; r < re; r++) y[r - r0] = o[r - rb];
    }
}

static void qgemv_tiles_act8_avx512(const spqr_qtiles *t, uint32_t r0, uint32_t r1, const int8_t *xq, const float *dx, const float *gq, const float *x_s,
                                    float *y) {
    const bool spqr = t->kind == SPQR_TK_SPQR;
    if (t->wbits > 4 || t->groupsize % 8 || t->cols % 8 || (spqr && t->qq_bits > 4)) {
        spqr_qtiles_gemv_act8_ref(t, r0, r1, xq, dx, gq, x_s, y);
        return;
    }
    const bool q3 = spqr && t->qq_bits == 3;
    switch (t->wbits * 2 + q3) {
    case 2: tiles_act8_avx512(t, r0, r1, xq, dx, gq, x_s, y, 1, 0); break;
    case 3: tiles_act8_avx512(t, r0, r1, xq, dx, gq, x_s, y, 1, 3); break;
    case 4: tiles_act8_avx512(t, r0, r1, xq, dx, gq, x_s, y, 2, 0); break;
    case 5: tiles_act8_avx512(t, r0, r1, xq, dx, gq, x_s, y, 2, 3); break;
    case 6: tiles_act8_avx512(t, r0, r1, xq, dx, gq, x_s, y, 3, 0); break;
    case 7: tiles_act8_avx512(t, r0, r1, xq, dx, gq, x_s, y, 3, 3); break;
    case 8: tiles_act8_avx512(t, r0, r1, xq, dx, gq, x_s, y, 4, 0); break;
    default: tiles_act8_avx512(t, r0, r1, xq, dx, gq, x_s, y, 4, 3); break;
    }
}

static const spqr_cpu_kernels avx512 = {"avx512", qgemv_avx512, gemv16_avx512, qdequant_avx512, NULL, NULL, spqr_ordered_rows_avx512};
static const spqr_cpu_kernels avx512_vbmi = {"avx512", qgemv_avx512, gemv16_avx512, qdequant_avx512, qgemv_tiles_avx512, NULL, spqr_ordered_rows_avx512};
static const spqr_cpu_kernels avx512_vnni = {"avx512", qgemv_avx512, gemv16_avx512, qdequant_avx512, qgemv_tiles_avx512, qgemv_tiles_act8_avx512, spqr_ordered_rows_avx512};

const spqr_cpu_kernels *spqr_cpu_kernels_avx512(void) {
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c() && __builtin_cpu_supports("avx512f") &&
          __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")))
        return NULL;
    if (!__builtin_cpu_supports("avx512vbmi")) return &avx512; /* the tile kernels need VPMULTISHIFTQB */
    return __builtin_cpu_supports("avx512vnni") ? &avx512_vnni : &avx512_vbmi;
}

