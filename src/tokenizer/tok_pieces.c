/* tok_pieces.c — piece storage, the text -> id map, byte pieces, added-token matchers. */
#include "tokenizer/tokenizer_internal.h"

#include <stdlib.h>

/* FNV-1a over the bytes, finished with a multiply so that the low bits are well mixed. */
static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h * 0x9E3779B97F4A7C15ull ^ (h >> 29);
}

/* Smallest power of two >= 2 * n (at least 16), or 0 on overflow. */
static size_t table_cap(size_t n) {
    size_t c = 16;
    while (c < n * 2) {
        if (c > SIZE_MAX / 4) return 0;
        c *= 2;
    }
    return c;
}

bool spqr_tok_pieces_alloc(spqr_tokenizer *t, int n_vocab, size_t bytes) {
    uint64_t cap;
    if (n_vocab <= 0 || !spqr_add_ok(bytes, (uint64_t)n_vocab, &cap) || cap > UINT32_MAX) return false;
    t->n_vocab = n_vocab;
    t->off = spqr_calloc_array((size_t)n_vocab, sizeof *t->off);
    t->len = spqr_calloc_array((size_t)n_vocab, sizeof *t->len);
    t->type = spqr_calloc_array((size_t)n_vocab, sizeof *t->type);
    t->blob = malloc((size_t)cap ? (size_t)cap : 1);
    t->blob_cap = (size_t)cap;
    t->blob_used = 0;
    if (!t->off || !t->len || !t->type || !t->blob) return false;
    for (int i = 0; i < n_vocab; i++) t->off[i] = UINT32_MAX; /* unset */
    return true;
}

bool spqr_tok_piece_set(spqr_tokenizer *t, int id, const char *s, size_t n) {
    if (id < 0 || id >= t->n_vocab || t->off[id] != UINT32_MAX) return false;
    if (n >= t->blob_cap - t->blob_used || memchr(s, 0, n)) return false;
    memcpy(t->blob + t->blob_used, s, n);
    t->blob[t->blob_used + n] = 0;
    t->off[id] = (uint32_t)t->blob_used;
    t->len[id] = (uint32_t)n;
    t->blob_used += n + 1;
    return true;
}

bool spqr_tok_index(spqr_tokenizer *t, int32_t *dup_a, int32_t *dup_b) {
    if (dup_a) *dup_a = -1;
    if (dup_b) *dup_b = -1;
    size_t cap = table_cap((size_t)t->n_vocab);
    if (!cap) return false;
    t->vocab.slots = spqr_calloc_array(cap, sizeof *t->vocab.slots);
    if (!t->vocab.slots) return false;
    t->vocab.mask = cap - 1;
    for (size_t i = 0; i < cap; i++) t->vocab.slots[i] = -1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const char *s = t->blob + t->off[id];
        size_t n = t->len[id];
        size_t h = (size_t)hash_bytes(s, n) & t->vocab.mask;
        for (;; h = (h + 1) & t->vocab.mask) {
            int32_t o = t->vocab.slots[h];
            if (o < 0) {
                t->vocab.slots[h] = id;
                break;
            }
            if (t->len[o] == n && memcmp(t->blob + t->off[o], s, n) == 0) {
                if (dup_a && *dup_a < 0) {
                    *dup_a = o;
                    *dup_b = id;
                }
                break; /* keep the lower id */
            }
        }
    }
    return true;
}

int32_t spqr_tok_lookup(const spqr_tokenizer *t, const char *s, size_t n) {
    if (!t->vocab.slots) return -1;
    size_t h = (size_t)hash_bytes(s, n) & t->vocab.mask;
    for (;; h = (h + 1) & t->vocab.mask) {
        int32_t o = t->vocab.slots[h];
        if (o < 0) return -1;
        if (t->len[o] == n && memcmp(t->blob + t->off[o], s, n) == 0) return o;
    }
}

void spqr_tok_find_bytes(spqr_tokenizer *t) {
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; b++) {
        t->byte_id[b] = -1;
        if (!t->byte_fallback) continue;
        char s[7] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>', 0};
        int32_t id = spqr_tok_lookup(t, s, 6);
        if (id >= 0 && t->type[id] == TOK_NORMAL) {
            t->type[id] = TOK_BYTE;
            t->byte_id[b] = id;
        }
    }
}

/* qsort context is not available in C11, so sort (first byte, -length, id) triples directly. */
typedef struct match_key {
    int first;
    uint32_t len;
    int32_t id;
} match_key;

/* Orders added tokens by first byte, then longest first, then id. */
static int cmp_match_key(const void *pa, const void *pb) {
    const match_key *a = pa, *b = pb;
    if (a->first != b->first) return a->first < b->first ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

bool spqr_tok_matcher_build(const spqr_tokenizer *t, tok_matcher *m, const int32_t *ids, int n) {
    memset(m, 0, sizeof *m);
    if (n <= 0) return true;
    match_key *k = spqr_calloc_array((size_t)n, sizeof *k);
    m->ids = spqr_calloc_array((size_t)n, sizeof *m->ids);
    if (!k || !m->ids) {
        free(k);
        return false;
    }
    for (int i = 0; i < n; i++) {
        k[i].first = (unsigned char)t->blob[t->off[ids[i]]];
        k[i].len = t->len[ids[i]];
        k[i].id = ids[i];
    }
    qsort(k, (size_t)n, sizeof *k, cmp_match_key);
    int j = 0;
    for (int c = 0; c < 256; c++) {
        m->start[c] = j;
        while (j < n && k[j].first == c) {
            m->ids[j] = k[j].id;
            j++;
        }
    }
    m->start[256] = n;
    m->n = n;
    free(k);
    return true;
}

void spqr_tok_release(spqr_tokenizer *t) {
    free(t->path);
    free(t->blob);
    free(t->off);
    free(t->len);
    free(t->type);
    free(t->vocab.slots);
    free(t->merges.slots);
    free(t->in_rule);
    for (int i = 0; i < t->n_norm; i++) {
        free(t->norm[i].a);
        free(t->norm[i].b);
    }
    free(t->norm);
    free(t->raw_added.ids);
    free(t->norm_added.ids);
    memset(t, 0, sizeof *t);
}
