/*
 * tok_llama2c.c — llama2.c tokenizer.bin: int32 max_token_length, then per piece float32 score,
 * int32 length, bytes; the vocabulary size is only implied by the end of the file.
 *
 * Pieces store ' ' where SentencePiece has "▁"; it is converted back, and the control pieces
 * "\n<s>\n" / "\n</s>\n" become "<s>" / "</s>". Merge rules follow SentencePiece: every split of a
 * normal piece into two normal pieces is a rule whose priority is the rank of the piece's score
 * (higher score first; equal scores share a rank so the leftmost pair wins, as in SentencePiece).
 */
#include "tokenizer/tokenizer_internal.h"

#include <math.h>
#include <stdlib.h>

#define MAX_TOKEN_LENGTH_LIMIT (1 << 16)

/* Little-endian int32 at p. */
static int32_t rd_i32(const unsigned char *p) {
    uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t r;
    memcpy(&r, &v, 4);
    return r;
}

/* Little-endian float32 at p. */
static float rd_f32(const unsigned char *p) {
    uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &v, 4);
    return f;
}

bool spqr_tok_llama2c_header_ok(const unsigned char *d, size_t n) {
    if (n < 4) return false;
    int32_t m = rd_i32(d);
    return m > 0 && m <= MAX_TOKEN_LENGTH_LIMIT;
}

/* Writes the internal form of a stored piece into out (room for 3 * n bytes); returns its length. */
static size_t convert_piece(const unsigned char *s, size_t n, char *out) {
    if ((n == 5 && memcmp(s, "\n<s>\n", 5) == 0) || (n == 6 && memcmp(s, "\n</s>\n", 6) == 0)) {
        memcpy(out, s + 1, n - 2); /* drop the newlines around <s> and </s> */
        return n - 2;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') {
            memcpy(out + k, "\xE2\x96\x81", 3); /* U+2581 "▁" */
            k += 3;
        } else {
            out[k++] = (char)s[i];
        }
    }
    return k;
}

typedef struct score_rank {
    float score;
    int32_t id;
} score_rank;

/* Orders pieces by score, highest first, then by id. */
static int cmp_score(const void *pa, const void *pb) {
    const score_rank *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* Builds the SentencePiece merge rules of t from the piece scores. */
static spqr_status build_merges(spqr_tokenizer *t, const float *score, spqr_error *err) {
    int nv = t->n_vocab;
    score_rank *order = spqr_calloc_array((size_t)nv, sizeof *order);
    int32_t *rank = spqr_calloc_array((size_t)nv, sizeof *rank);
    if (!order || !rank) goto nomem;
    int n_norm = 0;
    size_t n_splits = 0;
    for (int32_t i = 0; i < nv; i++) {
        if (t->type[i] != TOK_NORMAL) continue;
        order[n_norm].score = score[i];
        order[n_norm++].id = i;
        n_splits += t->len[i];
    }
    qsort(order, (size_t)n_norm, sizeof *order, cmp_score);
    int32_t r = 0;
    for (int i = 0; i < n_norm; i++) {
        if (i > 0 && order[i].score != order[i - 1].score) r++; /* equal scores share a rank */
        rank[order[i].id] = r;
    }
    if (!spqr_tok_pairs_init(&t->merges, n_splits)) goto nomem;
    for (int32_t id = 0; id < nv; id++) {
        if (t->type[id] != TOK_NORMAL) continue;
        const char *s = t->blob + t->off[id];
        size_t n = t->len[id];
        if (spqr_tok_lookup(t, s, n) != id) continue; /* a repeated piece: the first one is used */
        for (size_t k = spqr_tok_utf8_len((const unsigned char *)s, n); k < n;
             k += spqr_tok_utf8_len((const unsigned char *)s + k, n - k)) {
            int32_t a = spqr_tok_lookup(t, s, k), b = spqr_tok_lookup(t, s + k, n - k);
            if (a < 0 || b < 0 || t->type[a] != TOK_NORMAL || t->type[b] != TOK_NORMAL) continue;
            spqr_tok_pairs_put(&t->merges, a, b, rank[id], id);
        }
    }
    free(order);
    free(rank);
    if (!spqr_tok_rules_done(t)) return spqr_set_err(err, SPQR_E_NOMEM, "%s: out of memory", t->path);
    return SPQR_OK;
nomem:
    free(order);
    free(rank);
    return spqr_set_err(err, SPQR_E_NOMEM, "%s: out of memory building merge rules", t->path);
}

spqr_status spqr_tok_load_llama2c(spqr_tokenizer *t, const unsigned char *d, size_t n, spqr_error *err) {
    const char *path = t->path;
    if (n < 4) return spqr_set_err(err, SPQR_E_FORMAT, "%s: llama2.c tokenizer: file too short (%zu bytes)", path, n);
    int32_t max_len = rd_i32(d);
    if (max_len <= 0 || max_len > MAX_TOKEN_LENGTH_LIMIT)
        return spqr_set_err(err, SPQR_E_FORMAT, "%s: llama2.c tokenizer: max_token_length %d is not in 1..%d", path,
                            (int)max_len, MAX_TOKEN_LENGTH_LIMIT);

    /* Pass 1: validate every record and count pieces and converted bytes. */
    size_t off = 4, count = 0, bytes = 0;
    while (off < n) {
        if (n - off < 8)
            return spqr_set_err(err, SPQR_E_FORMAT,
                                "%s: llama2.c tokenizer: piece %zu at offset %zu: truncated record (%zu bytes left)",
                                path, count, off, n - off);
        float sc = rd_f32(d + off);
        int32_t len = rd_i32(d + off + 4);
        if (!isfinite(sc))
            return spqr_set_err(err, SPQR_E_FORMAT, "%s: llama2.c tokenizer: piece %zu at offset %zu: score is %s",
                                path, count, off, isnan(sc) ? "NaN" : "infinite");
        if (len <= 0 || len > max_len)
            return spqr_set_err(err, SPQR_E_FORMAT,
                                "%s: llama2.c tokenizer: piece %zu at offset %zu: length %d is not in 1..%d "
                                "(max_token_length)",
                                path, count, off, (int)len, (int)max_len);
        if ((size_t)len > n - off - 8)
            return spqr_set_err(err, SPQR_E_FORMAT,
                                "%s: llama2.c tokenizer: piece %zu at offset %zu: length %d but only %zu bytes left",
                                path, count, off, (int)len, n - off - 8);
        if (memchr(d + off + 8, 0, (size_t)len))
            return spqr_set_err(err, SPQR_E_FORMAT,
                                "%s: llama2.c tokenizer: piece %zu at offset %zu contains a NUL byte", path, count,
                                off);
        bytes += 3 * (size_t)len; /* ' ' grows to 3 bytes; files are bounded, so no overflow */
        off += 8 + (size_t)len;
        count++;
    }
    if (count == 0) return spqr_set_err(err, SPQR_E_FORMAT, "%s: llama2.c tokenizer: no pieces after the header", path);
    if (count > INT32_MAX / 2)
        return spqr_set_err(err, SPQR_E_FORMAT, "%s: llama2.c tokenizer: %zu pieces are too many", path, count);

    /* Pass 2: store the pieces. */
    float *score = spqr_calloc_array(count, sizeof *score);
    char *tmp = malloc(3 * (size_t)max_len);
    if (!score || !tmp || !spqr_tok_pieces_alloc(t, (int)count, bytes)) {
        free(score);
        free(tmp);
        return spqr_set_err(err, SPQR_E_NOMEM, "%s: out of memory for %zu pieces", path, count);
    }
    off = 4;
    for (int32_t i = 0; i < (int32_t)count; i++) {
        int32_t len = rd_i32(d + off + 4);
        score[i] = rd_f32(d + off);
        size_t k = convert_piece(d + off + 8, (size_t)len, tmp);
        spqr_tok_piece_set(t, i, tmp, k); /* sized exactly above: cannot fail */
        off += 8 + (size_t)len;
    }
    free(tmp);
    if (!spqr_tok_index(t, NULL, NULL)) {
        free(score);
        return spqr_set_err(err, SPQR_E_NOMEM, "%s: out of memory", path);
    }

    t->unk = spqr_tok_lookup(t, "<unk>", 5);
    t->bos = spqr_tok_lookup(t, "<s>", 3);
    t->eos = spqr_tok_lookup(t, "</s>", 4);
    if (t->unk >= 0) t->type[t->unk] = TOK_CONTROL;
    if (t->bos >= 0) t->type[t->bos] = TOK_CONTROL;
    if (t->eos >= 0) t->type[t->eos] = TOK_CONTROL;
    t->byte_fallback = true;
    spqr_tok_find_bytes(t);
    t->chars_normal_only = true;
    t->strip_after_bos = true;

    /* SentencePiece's normalization for Llama: dummy prefix "▁", spaces as "▁". */
    t->norm = spqr_calloc_array(2, sizeof *t->norm);
    if (t->norm) {
        t->n_norm = 2;
        t->norm[0].kind = TOK_NORM_PREPEND;
        t->norm[0].a = spqr_strdup("\xE2\x96\x81");
        t->norm[0].alen = 3;
        t->norm[1].kind = TOK_NORM_REPLACE;
        t->norm[1].a = spqr_strdup(" ");
        t->norm[1].alen = 1;
        t->norm[1].b = spqr_strdup("\xE2\x96\x81");
        t->norm[1].blen = 3;
    }
    if (!t->norm || !t->norm[0].a || !t->norm[1].a || !t->norm[1].b) {
        free(score);
        return spqr_set_err(err, SPQR_E_NOMEM, "%s: out of memory", path);
    }
    spqr_status st = build_merges(t, score, err);
    free(score);
    return st;
}
