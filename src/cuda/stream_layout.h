/*
 * stream_layout.h — the device layout of the streaming GEMV (v10, SPQR_CUDA_STREAM), built on the host
 * from a validated spqr_qview. Plain C: the builder (stream_layout.c) is in every build, so the CPU
 * tests check the layout and an emulation of the kernel's arithmetic with no GPU
 * (tests/test_kernels_random.c); the index helpers below are the ones the kernel uses.
 *
 * SpQR with β1 = 16, wbits 2..4, qq_bits 1..4, β2 % 16 == 0, at most 65535 columns.
 *
 * The matrix is cut into SUPER-ATOMS (SA) of 16 rows × 256 stored columns (16 groups), in row-tile-major
 * order: SA s = rt·nk + kc covers rows 16 rt .. +15 and stored columns 256 kc .. +255 (nrt = ⌈rows/16⌉,
 * nk = ⌈cols/256⌉). Rows and columns past the matrix hold code 0 and zero statistics. Every SA is one
 * fixed-size RECORD, so a block's contiguous range of SAs is one contiguous range of bytes, which the
 * kernel streams into shared memory with bulk asynchronous copies (cp.async.bulk, the copy engine):
 *
 *   record (rec_bytes, a multiple of 16):
 *   +------------------------+-----------------------------+----------------------------+
 *   | codes  W × 32 × 16 B   | fields  A: 32 × u32         | qq  16 groups × 4 × fp16   |
 *   | uint4 i of lane L at   |         B: 32 × u16 (q = 3), | (ss, sz, zs, zz) of group  |
 *   | (i·32 + L)·16          |            32 × u32 (q = 4)  | G at 8 G (the file's, for  |
 *   |                        |            none (q <= 2)     | the β2 block of the rows)  |
 *   +------------------------+-----------------------------+----------------------------+
 *   W = 3, q = 3: 1536 + 192 + 128 = 1856 bytes per 4096 weights = 3.625 bits per weight.
 *
 * The kernel runs mma.sync m16n8k16 (fp16 A = codes as exact fp16 numbers, fp16 B = x, fp32 accumulation)
 * on ATOMS of 16 rows × 128 columns (8 groups; atom a = 0, 1 of the SA is columns 128 a .. +127). Lane
 * L = 4 gl + t owns rows gl and gl + 8; in group G's MMA (k = the group's 16 columns) its A registers
 * i = 0..3 hold row gl + 8 (i & 1), stored columns 16 G + 4 t + 2 (i >> 1), +1, and its B registers the
 * activations at columns 16 G + 4 t .. + 3 (one 8-byte load). A lane's 2W words of an atom are its
 * words 2W·a .. 2W·a + 2W − 1 (of 4W) and use the group-sum register order of mma_layout.h
 * (spqr_gsum_pair: each register is one LOP3, or a shift and a LOP3, of a word, giving the fp16 numbers
 * 1024 + 2^o c with the same o for every register of a group's MMA).
 *
 * With NB activations per pass the 8 accumulator columns of an MMA set are (group, activation) pairs:
 * column c of set σ (NB sets per atom, 8/NB groups per set) is group σ·(8/NB) + c / NB, activation
 * c % NB; the B operand of a group is zero outside its columns. The accumulator of (row, group, act)
 * is 1024 Σx + 2^o Σ c·x, and the kernel adds, in fp32, exactly the reference decoder's
 *     s·(Σ c·x − z·Σx) = (s/2^o)·(C − (1024 + 2^o z)·X),  X = Σx over the group (fp16 x summed in fp32),
 * with s = ss·(sc − sz), z = zs·(zc − zz) computed as spqr_qview_stats does.
 *
 *   fields: lane L's RECORD of 16 q bits = A[L] | B[L] << 32: atom a's 8q bits at 8q·a, in them field
 *           f = 2h + e (row gl + 8h, group 8a + 2t + e) at 2q·f: sc | zc << q. (NB = 1 needs exactly
 *           its own record; wider passes read other lanes' records from shared memory.)
 *
 * OUTLIERS: one 32-bit entry each, col8 | row4 << 8 | fp16 δ << 16 (column within the SA, row within
 * the SA, δ = value − the dense weight there, rounded to fp16), sorted by (SA, row, column); osa[s] ..
 * osa[s + 1] are SA s's. The entry array is padded with zeros to a multiple of 4 entries plus 4, so a
 * 16-byte-aligned superset of any range can be copied.
 * x: the kernel scatters x[i] to stored column iperm[i] (uint16; NULL: identity).
 *
 * Blocks: with T = nrt·nk SAs and G blocks, block b takes SAs [⌊bT/G⌋, ⌊(b+1)T/G⌋) (stream-K): a row
 * tile split between blocks is finished by the last of them to arrive (a counter per row tile), which
 * adds the pieces' partial sums in block order, so every result is deterministic.
 */
#ifndef SPQR_STREAM_LAYOUT_H
#define SPQR_STREAM_LAYOUT_H

#ifdef __cplusplus
extern "C" {
#endif

#include "cuda/mma_layout.h"

#define SPQR_STREAM_ROWS 16  /* rows per SA (one m16 tile) */
#define SPQR_STREAM_COLS 256 /* stored columns per SA (two atoms of 8 groups) */

typedef struct spqr_stream_layout {
    uint32_t rows, cols, wbits, qq_bits, qq_gs;
    uint32_t nrt, nk;          /* row tiles (16 rows), SAs per row tile */
    uint32_t rec_bytes;        /* bytes per SA record */
    uint64_t nsa, n_out;       /* SAs (nrt·nk), outliers */
    uint8_t *recs;             /* nsa · rec_bytes */
    uint32_t *osa;             /* nsa + 1 */
    uint32_t *oent;            /* spqr_stream_oent_len(n_out) entries */
    uint16_t *iperm;           /* cols (original column -> stored column), or NULL (identity) */
} spqr_stream_layout;

/* Whether the kernel takes v (see above). */
bool spqr_stream_supported(const spqr_qview *v);

/* Builds the layout of v. SPQR_E_UNSUPPORTED if the kernel does not take v, SPQR_E_NOMEM. */
spqr_status spqr_stream_build(const spqr_qview *v, spqr_stream_layout *out, spqr_error *err);
void spqr_stream_free(spqr_stream_layout *L);

/* Bytes of the arrays one product reads: the records, the outlier entries and offsets, iperm. */
uint64_t spqr_stream_bytes(const spqr_stream_layout *L);

/* ---- index helpers shared with the kernel ------------------------------------------------------ */

SPQR_HD uint64_t spqr_stream_oent_len(uint64_t n_out) { return (n_out + 3) / 4 * 4 + 4; }

/* Byte sizes of a record's parts. */
SPQR_HD uint32_t spqr_stream_code_bytes(unsigned W) { return 512u * W; }
SPQR_HD uint32_t spqr_stream_fieldb_bytes(unsigned q) { return q == 3 ? 64u : q == 4 ? 128u : 0u; } /* the B part */
SPQR_HD uint32_t spqr_stream_rec_bytes(unsigned W, unsigned q) { return spqr_stream_code_bytes(W) + 128u + spqr_stream_fieldb_bytes(q) + 128u; }

/* Lane L's 16q-bit field record from a record's fields part (A at f, B right after). */
SPQR_HD uint64_t spqr_stream_lane_fields(const uint8_t *f, unsigned q, unsigned L) {
    uint64_t r = ((const uint32_t *)f)[L];
    if (q == 3) r |= (uint64_t)((const uint16_t *)(f + 128))[L] << 32;
    else if (q == 4) r |= (uint64_t)((const uint32_t *)(f + 128))[L] << 32;
    return r;
}

/* sc | zc << q of (row r, group G) of an SA, r < 16, G < 16, from its fields part. */
SPQR_HD uint32_t spqr_stream_field(const uint8_t *f, unsigned q, unsigned r, unsigned G) {
    const unsigned lane = 4 * (r & 7) + ((G & 7) >> 1), fi = 2 * (r >> 3) + (G & 1);
    return (uint32_t)(spqr_stream_lane_fields(f, q, lane) >> (8 * q * (G >> 3) + 2 * q * fi)) & ((1u << (2 * q)) - 1);
}

/* First SA of block b of G over T SAs, and the block that holds SA s. */
SPQR_HD uint64_t spqr_stream_block_start(uint64_t T, uint32_t G, uint32_t b) { return T * b / G; }
SPQR_HD uint32_t spqr_stream_block_of(uint64_t T, uint32_t G, uint64_t s) { return (uint32_t)(((s + 1) * G - 1) / T); }

/* The first and last block holding SAs of row tile rt (nk SAs a tile); they differ when the tile is
 * shared between blocks. */
SPQR_HD void spqr_stream_tile_blocks(uint64_t T, uint32_t G, uint32_t nk, uint64_t rt, uint32_t *first, uint32_t *last) {
    *first = spqr_stream_block_of(T, G, rt * nk);
    *last = spqr_stream_block_of(T, G, rt * nk + nk - 1);
}

/* A bound on the blocks any row tile is split between (the partial-sum workspace's stride): every block
 * holds at least ⌊T/G⌋ SAs, so the inner blocks of a tile's nk SAs number at most (nk − 2)/⌊T/G⌋. */
SPQR_HD uint32_t spqr_stream_pieces_max(uint64_t T, uint32_t G, uint32_t nk) {
    const uint64_t m = T / G < 1 ? 1 : T / G;
    return (uint32_t)((nk - 1) / m + 2);
}

#ifdef __cplusplus
}
#endif
#endif
