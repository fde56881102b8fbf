/*
 * spqr_cuda_internal.cuh — the uploaded matrix's device arrays and device helpers for the file's
 * storage layout, shared by spqr_cuda.cu and the kernel lab (bench/cuda). CUDA C++ only.
 *
 * Tiled device layout (built by spqr_cuda_upload from the storage layout):
 *   packet  = 32 consecutive stored columns of one row; npq = ceil(cols/32) rounded up to a
 *             multiple of 4 (a "quad" of packets = 128 columns = one 16-byte load per code word)
 *   codes   uint32[rows][W][npq]: word k of packet P of row r at (r*W + k)*npq + P. Within a packet,
 *           pair t (stored columns 2t, 2t+1) sits in word t/F, slot t%F (F = 16/W): the two codes at
 *           bits [W*slot, +W) and [16 + W*slot, +W), so (word >> W*slot) & mask | 0x64006400 is the
 *           fp16 pair (1024 + c0, 1024 + c1). W = 3: pairs 0..14 in slots, pair 15 in the spare bits
 *           15 and 31 of words 0, 1, 2 (bit b of c0 at bit 15 of word b, of c1 at bit 31).
 *           Columns >= cols hold code 0.
 *   SpQR stat  uint8[rows][gpad]: scale code | zero code << 4 (qq_bits <= 4)
 *   GPTQ stat  uint32[rows][gpad]: fp16 scale | integer zero << 16
 *   qq      uint2[row_blocks][gpad]: the file's 4 fp16 second-level statistics
 *           gpad = groups padded to whole quads (β1 <= 32: npq*32/β1; else ceil(npq*32/β1))
 *   outliers row_ptr uint32[rows+1], col uint16[n] (stored order), delta fp16[n] = val − dense
 *           weight (the dense kernels add delta·x)
 *   x workspace for the tiled kernels, lane-interleaved so that the 32 lanes of a warp (lane L
 *           owns quad q = 32*it + L) read consecutive float2 at each (packet p, pair t):
 *           pair jp = (q*4 + p)*16 + t of permuted x for activation b sits at
 *           ((((q/32)*4 + p)*16 + t)*32 + q%32)*B + b; zero past cols and past n.
 *           The generic kernels use the linear layout jp*B + b.
 *
 * Fused layout (v5, SPQR_CUDA_FUSED; SpQR with β1 = 16, q <= 4, β2 % 16 == 0, wbits 2..4): rows in
 * the lanes. Row tile = 32 rows (lane L = row 32*rt + L), column tile = 256 stored columns (16
 * groups, 8 packets of 32 columns). Rows and columns are padded with code 0.
 *   fcodes  uint4 [rt][ct][2W][32]: lane L's 8W words for the tile; words p*W .. p*W+W-1 are packet p
 *           in the tiled layout's packet format (pairs in 16-bit halves, w3 pair 15 in the spare bits)
 *   fstat   uint32 [rt][ct][NS][32]: the 16 groups' codes of lane L's row. q = 3 (NS = 3): 6-bit
 *           fields sc | zc << 3, groups 0..14 at bit 6*(i%5) of word i/5, group 15's bits 2k, 2k+1
 *           at bits 30, 31 of word k. q != 3 (NS = 4): bytes sc | zc << 4, group i in byte i%4 of word i/4.
 *   fqq     uint2 [row_blocks][nct*16]: the file's fp16 (ss, sz, zs, zz), zero past the last group
 *   fperm int32 [cols] (NULL: identity), forp uint32 [rows+1], focol uint16 [n], fodelta float [n]:
 *           the outliers as val − dense weight in fp32 (exact to float rounding)
 * A block (up to 32 warps) takes one row tile; warp w takes work units w, w + warps, ... (column
 * tiles, or half tiles of 8 groups); the block first gathers x (act-order permutation, fp32) and the
 * per-group sums of x into shared memory.
 *   a8codes uint4, as fcodes, with each lane's words in act8_layout.h's order (v9, SPQR_CUDA_ACT8:
 *           the same statistics, qq, perm and outliers; x rounded to int8 per group in the kernel)
 */
#ifndef SPQR_CUDA_INTERNAL_CUH
#define SPQR_CUDA_INTERNAL_CUH

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "cuda/spqr_cuda.h"

/* In a function with `spqr_error *err` in scope: a failed CUDA call returns SPQR_E_IO, "cuda: WHAT: reason". */
#define CK(call, what)                                                                                        \
    do {                                                                                                      \
        cudaError_t e_ = (call);                                                                              \
        if (e_ != cudaSuccess) return spqr_set_err(err, SPQR_E_IO, "cuda: %s: %s", what, cudaGetErrorString(e_)); \
    } while (0)

struct spqr_cuda_mma; /* v7's device arrays (spqr_cuda_mma.cu, layout in cuda/mma_layout.h) */
struct spqr_cuda_stream; /* v10's device arrays (spqr_cuda_stream.cu, layout in cuda/stream_layout.h) */

#define SPQR_CUDA_OPTIN_MAX 256 /* kernels whose shared-memory limit a context remembers having raised */

struct spqr_cuda_ctx {
    cudaStream_t stream;
    int tiled_rpw;   /* rows per warp of the tiled kernels, 0: default (a tuning knob for the lab) */
    int fused_mode;  /* v5's work unit: 0 default (half tiles), 1 whole tiles, 2 half tiles (a lab knob) */
    int fused_nw;    /* v5/v9 on half tiles: warps per block, 0 = the default width (a lab knob) */
    int mma_pregather; /* v7/v8: x pre-gathered by a kernel: 1 always, 0 only for passes > 8 or too wide for
                        * shared memory, -1 (default) also where the blocks' gathers add up (spqr_cuda_mma.cu) */
    int mma_wide;    /* v7 passes on v11's blocks of 4 row tiles sharing x (spqr_cuda_mma.cu): 0 never, 1 always */
    int mma_deq;     /* SPQR_CUDA_MMA calls by v12 (dequantize + cuBLAS): 1 always, 0 never, -1 (default) above 16 */
    int sms;         /* multiprocessors of the context's device */
    int pdl;         /* 1 (default): v5 with programmatic dependent launch where a block fills its SM; 0 never */
    int xprep;       /* v5/v9: x prepared once per product by a k_prep_x launch: 1 always, 0 never (each block
                      * gathers it), -1 (default) where the blocks' gathers add up (spqr_cuda_run_fused) */
    int act8;        /* spqr_cuda_ctx_set_act8: spqr_cuda_matmul_f32 runs v9 (8-bit activations) for n = 1 */
    int stream_grid; /* v10: blocks per product, 0 = the default (spqr_cuda_stream.cu; a lab knob) */
    int stream_nw;   /* v10: consumer warps per block, 8, 16 (n = 1) or 24; 0 = the default (a lab knob) */
    struct { const void *func; int bytes; } optin[SPQR_CUDA_OPTIN_MAX]; /* spqr_cuda_smem_optin's record */
    int n_optin;
    unsigned long long *trace; /* v5/v9 timelines (SPQR_TRACE_REC, bench/cuda/lab.cu --trace), NULL: off */
    cublasHandle_t blas;
    void *ws;        /* device workspace */
    size_t ws_size;
    void *dws;       /* v12's fp16 weights and x: apart from ws, so that growing it for a long prefill never
                      * moves the buffers that the model's captured decode graph uses */
    size_t dws_size;
    void *xbuf;      /* v5/v9: k_prep_x's image of x (written by nothing else) */
    size_t xbuf_size;
    unsigned buf_gen; /* incremented whenever ws, dws or xbuf is reallocated (captured graphs hold their addresses) */
    int reuse_next;  /* spqr_cuda_ctx_reuse_x: the next product's x is the previous one's, unchanged (one-shot) */
    int xlast_kept;  /* set by a fused product that prepared or reused the image (product_done, spqr_cuda.cu) */
    struct {         /* the image in xbuf: what it was prepared from (valid = 0: nothing reusable) */
        const void *x;
        uint64_t perm_key;
        uint32_t cols;
        int n, a8, xf32, valid; /* one pass of n: its width follows from n */
    } xlast;
};

struct spqr_cuda_qmatrix {
    uint32_t kind, rows, cols, wbits, gs, qq_bits, qq_gs;
    uint64_t n_out, groups, row_blocks;
    spqr_qlayout lay;
    /* storage layout: the blob as in the file */
    uint8_t *blob;
    const int32_t *perm; /* into blob, NULL: identity */
    /* tiled layout (tiled == 0: not built) */
    int tiled;
    int gp;              /* groups per packet: 1, 2, 4 for β1 = 32, 16, 8; 0: β1 a multiple of 32 above 32, or GPTQ */
    uint32_t npq, nq, gpad;
    uint32_t *tcodes;
    void *tstat;
    uint2 *tqq;
    uint32_t *orp;
    uint16_t *ocol;
    __half *odelta;
    /* fused layout (fused == 0: not built) */
    int fused, f_q3;
    uint32_t nrt, nct;
    uint4 *fcodes;
    uint32_t *fstat;
    uint2 *fqq;
    int32_t *fperm;
    uint32_t *forp;
    uint16_t *focol;
    float *fodelta;
    uint4 *a8codes;     /* v9's code words (act8_layout.h), laid out as fcodes; NULL: not built */
    spqr_cuda_mma *mma; /* the MMA (v7) layout, or NULL */
    spqr_cuda_mma *gsum; /* the group-sum (v8) layout, or NULL */
    spqr_cuda_stream *stream; /* the streaming (v10) layout, or NULL */
    int has_raw;        /* the storage-layout blob was uploaded */
    uint64_t bytes_tiled, bytes_raw, bytes_fused;
    uint64_t perm_key;  /* FNV-1a of the act-order permutation (0: identity): equal keys, equal x images */
};

/* w-bit field i of an LSB-first bit stream starting 4-byte aligned (8 readable bytes past it). */
__device__ __forceinline__ unsigned raw_bits(const uint8_t *row, uint64_t i, unsigned w) {
    uint64_t bit = i * w;
    const uint32_t *p = (const uint32_t *)row + (bit >> 5);
    return __funnelshift_r(__ldg(p), __ldg(p + 1), (unsigned)(bit & 31)) & ((1u << w) - 1);
}

/* Scale and zero of (row r, group g) from the storage layout, in float32 exactly as the reference
 * decoder (spqr_qview_stats). */
__device__ __forceinline__ void raw_stats(const spqr_cuda_qmatrix &m, const uint8_t *blob, uint32_t r, uint32_t g, float *s, float *z) {
    if (m.kind == SPQR_TK_SPQR) {
        const uint16_t *q = (const uint16_t *)(blob + m.lay.qq) + 4 * ((uint64_t)(r / m.qq_gs) * m.groups + g);
        const uint8_t *srow = blob + m.lay.stats + (uint64_t)r * m.lay.stat_stride;
        unsigned sc = raw_bits(srow, 2ull * g, m.qq_bits), zc = raw_bits(srow, 2ull * g + 1, m.qq_bits);
        float ss = __half2float(__ushort_as_half(q[0])), sz = __half2float(__ushort_as_half(q[1]));
        float zs = __half2float(__ushort_as_half(q[2])), zz = __half2float(__ushort_as_half(q[3]));
        *s = __fmul_rn(ss, __fsub_rn((float)sc, sz));
        *z = __fmul_rn(zs, __fsub_rn((float)zc, zz));
    } else {
        *s = __half2float(__ushort_as_half(((const uint16_t *)(blob + m.lay.scales))[(uint64_t)r * m.groups + g]));
        *z = (float)raw_bits(blob + m.lay.zeros + (uint64_t)r * m.lay.zero_stride, g, m.wbits);
    }
}

/* The dense (pre-outlier) weight at (r, stored column j), as the reference decoder computes it. */
__device__ __forceinline__ float raw_weight(const spqr_cuda_qmatrix &m, const uint8_t *blob, uint32_t r, uint32_t j) {
    float s, z;
    raw_stats(m, blob, r, j / m.gs, &s, &z);
    unsigned c = raw_bits(blob + m.lay.codes + (uint64_t)r * m.lay.code_stride, j, m.wbits);
    return __fmul_rn(s, __fsub_rn((float)c, z));
}

/* The low / high fp16 half of a word as float. */
__device__ __forceinline__ float h2f_lo(uint32_t v) { return __half2float(__ushort_as_half((unsigned short)(v & 0xffffu))); }
__device__ __forceinline__ float h2f_hi(uint32_t v) { return __half2float(__ushort_as_half((unsigned short)(v >> 16))); }

/* d += A·B, mma.sync m16n8k16 (fp16 A, B; fp32 accumulators). Not volatile: a pure function of its
 * operands, so the compiler may interleave independent chains. */
__device__ __forceinline__ void mma16816(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* Programmatic dependent launch (sm_90; no-ops when the launch did not ask for it): let the next
 * kernel's blocks be scheduled, and wait until the previous kernel has finished and its writes are
 * visible. */
__device__ __forceinline__ void pdl_launch_dependents() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_wait() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

/* Kernel timelines for the lab (ctx->trace; NULL otherwise): block b's record is SPQR_TRACE_REC u64 at
 * trace + b * SPQR_TRACE_REC (b < SPQR_TRACE_BLOCKS), a helper kernel's block b (k_prep_x) at
 * trace + (SPQR_TRACE_BLOCKS + b) * SPQR_TRACE_REC. Event k is the pair (global timer in ns, SM clock)
 * at 2k, 2k + 1; `dep` orders the stamp after the computation of that value. */
#define SPQR_TRACE_REC 80
#define SPQR_TRACE_BLOCKS 1024
__device__ __forceinline__ void trace_stamp(unsigned long long *rec, int k, float dep = 0.f) {
    unsigned long long t, c;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t) : "f"(dep) : "memory");
    asm volatile("mov.u64 %0, %%clock64;" : "=l"(c)::"memory");
    rec[2 * k] = t;
    rec[2 * k + 1] = c;
}

/* Index of pair jp in the lane-interleaved x layout (without the activation factor). */
__host__ __device__ __forceinline__ uint32_t xp_inter(uint32_t jp) {
    const uint32_t q = jp >> 6, p = (jp >> 4) & 3, t = jp & 15;
    return ((((q >> 5) * 4 + p) * 16 + t) << 5) + (q & 31);
}

/* Element (stored column c, activation b) of an x workspace with B activations per pair. */
__device__ __forceinline__ float xp_at(const float2 *xp, int B, uint32_t c, int b, bool inter = false) {
    const uint32_t jp = inter ? xp_inter(c >> 1) : (c >> 1);
    return ((const float *)xp)[((size_t)jp * B + b) * 2 + (c & 1)];
}

/* A launch configuration for cudaLaunchKernelEx, with programmatic dependent launch (the programmatic
 * stream serialization attribute) when pdl: the kernel may start before the previous one in the stream
 * ends, and must wait for it (griddepcontrol.wait) before reading its output. The attribute lives in
 * the object, which is not copyable: launch with &l.cfg while it is in scope. */
struct spqr_launch {
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute at[1] = {};
    spqr_launch(dim3 grid, dim3 block, size_t smem, cudaStream_t st, int pdl) {
        cfg.gridDim = grid;
        cfg.blockDim = block;
        cfg.dynamicSmemBytes = smem;
        cfg.stream = st;
        at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        at[0].val.programmaticStreamSerializationAllowed = 1;
        cfg.attrs = at;
        cfg.numAttrs = pdl ? 1 : 0;
    }
    spqr_launch(const spqr_launch &) = delete;
    spqr_launch &operator=(const spqr_launch &) = delete;
};

/* Launches the x gather: pair jp = (x[b0+b][perm[2jp]], x[b0+b][perm[2jp+1]]) as floats at
 * jp*B + b (inter = 0) or xp_inter(jp)*B + b (inter = 1; npairs then a multiple of 2048), zero
 * past cols or past n; npairs pairs. x is fp16, or fp32 when xf32. */
cudaError_t spqr_cuda_gather_x(const void *x, int n, int b0, int B, uint32_t cols, const int32_t *perm, uint32_t npairs, float2 *xp,
                               cudaStream_t st, int inter = 0, int xf32 = 0);

/* Lets kernel `func` use `bytes` of dynamic shared memory (cudaFuncSetAttribute, a per-device setting:
 * the context, which belongs to one device, remembers the kernels it has raised, so the call is made
 * once per kernel and context rather than once per process). */
cudaError_t spqr_cuda_smem_optin(spqr_cuda_ctx *c, const void *func, int bytes);

/* Makes the device buffer *buf (of *size bytes, owned by the context) at least `bytes`, synchronizing the
 * context's stream and reallocating when it grows; a CUDA graph that captured the old pointer must not
 * be replayed after that. spqr_cuda_ws_reserve: the context's workspace. */
spqr_status spqr_cuda_buf_reserve(spqr_cuda_ctx *c, void **buf, size_t *size, size_t bytes, spqr_error *err);
spqr_status spqr_cuda_ws_reserve(spqr_cuda_ctx *c, size_t bytes, spqr_error *err);

/* y [n][rows] fp32 = W16 · x, w16 [rows][ld] fp16 in stored column order: x (fp16, or fp32 with xf32)
 * [n][cols] gathered through perm into x16 [n][ld] (fp16, zero past cols), then cuBLAS GemmEx with fp32
 * accumulation. The second step of v4 (storage layout) and v12 (v7's layout). */
spqr_status spqr_cuda_gemm_w16(spqr_cuda_ctx *c, const __half *w16, int rows, int ld, const void *x, int xf32, int n, uint32_t cols,
                               const int32_t *perm, __half *x16, float *y, spqr_error *err);

/* Launches xo[b][j] = x[b0 + b][perm[j]] as fp16 for b < nb, j < ld (zero for j >= cols); x is fp16,
 * or fp32 when xf32. */
cudaError_t spqr_cuda_gather_x16(const void *x, int xf32, int b0, int nb, uint32_t cols, const int32_t *perm, int ld, __half *xo,
                                 cudaStream_t st);

/* The fused kernel (spqr_cuda_fused.cu): Y = X Wᵀ, X fp16 or fp32 (xf32), passes of up to 4; a8: v9
 * (8-bit activations, m->a8codes). */
spqr_status spqr_cuda_run_fused(spqr_cuda_ctx *c, const spqr_cuda_qmatrix *m, const void *x, int xf32, int n, float *y, int a8, spqr_error *err);

/* v7, the tensor-core kernel (spqr_cuda_mma.cu). The counters make one matrix unsafe to run on two
 * streams at once. */
struct spqr_mma_layout;
struct spqr_cuda_mma {
    uint32_t kind, rows, cols, wbits, gs, qq_gs, nrt, nku, S, ups, gpad;
    uint32_t gsum;                   /* 1: the group-sum layout, run by v8 (n <= 8 per pass) */
    uint64_t n_out, bytes;           /* bytes: spqr_mma_bytes of the layout */
    uint4 *codes;
    uint32_t *fields, *optr;
    uint2 *qq;
    uint16_t *ocol;
    __half *odelta;
    int32_t *perm;
    unsigned *cnt;                   /* [nrt] arrival counters of the K-slices, zero between calls */
};
/* Uploads a host layout (synchronous; L is not retained). */
extern "C" spqr_status spqr_cuda_mma_upload(const struct spqr_mma_layout *L, spqr_cuda_mma **out, spqr_error *err);
extern "C" void spqr_cuda_mma_free(spqr_cuda_mma *d);
/* Y = X Wᵀ: x fp16 (or fp32 when xf32) [n][cols] in the original column order, y fp32 [n][rows],
 * device pointers; v7: passes of up to 64 activations, fp16 weights and activations into the tensor
 * cores, fp32 accumulation; v8 (a gsum layout): passes of up to 8, exact codes times fp16 x into the
 * tensor cores, statistics in fp32. Uses the context's workspace (partial sums; pre-gathered x). */
extern "C" spqr_status spqr_cuda_mma_matmul(spqr_cuda_ctx *c, const spqr_cuda_mma *d, const void *x, int xf32, int n, float *y,
                                            spqr_error *err);
/* The same product by v12: the weights dequantized from v7's layout into fp16 (the values v7
 * multiplies; outliers added as fp16), x gathered into stored order in fp16, then cuBLAS GemmEx (fp32
 * accumulation). For batches above 16. Uses the context's buffer dws (rows × nku·128 fp16 + x). */
extern "C" spqr_status spqr_cuda_mma_dequant_matmul(spqr_cuda_ctx *c, const spqr_cuda_mma *d, const void *x, int xf32, int n, float *y,
                                                    spqr_error *err);

/* v10, the streaming kernel (spqr_cuda_stream.cu). The counters make one matrix unsafe to run on two
 * streams at once. */
struct spqr_stream_layout;
/* Uploads a host layout (synchronous; L is not retained). */
extern "C" spqr_status spqr_cuda_stream_upload(const struct spqr_stream_layout *L, spqr_cuda_stream **out, spqr_error *err);
extern "C" void spqr_cuda_stream_free(spqr_cuda_stream *d);
/* Bytes of the arrays one product reads (spqr_stream_bytes). */
extern "C" uint64_t spqr_cuda_stream_bytes(const spqr_cuda_stream *d);
/* Y = X Wᵀ: x fp16 (or fp32 when xf32) [n][cols] in the original column order, y fp32 [n][rows], device
 * pointers; passes of up to 8 activations (fewer when x does not fit in shared memory), launched with
 * programmatic dependent launch when the context's pdl is on. Uses the context's workspace (the partial
 * sums of row tiles shared between blocks). */
extern "C" spqr_status spqr_cuda_stream_matmul(spqr_cuda_ctx *c, const spqr_cuda_stream *d, const void *x, int xf32, int n, float *y,
                                               spqr_error *err);

#endif
