/*
 * tok_bpe.c — the merge-rule table and the BPE engine shared by every tokenizer format.
 *
 * A word is split into initial symbols (one per UTF-8 character, or its byte pieces, or unk), kept
 * in a doubly-linked list. Every adjacent pair with a rule goes into a binary min-heap keyed by
 * (priority, position of the left symbol), so the lowest priority merges first and ties go to the
 * leftmost pair. Entries are not removed when a merge makes them stale: a popped entry is applied
 * only if the pair now at its position still has that priority. Each merge adds at most two
 * entries, so a word of n symbols costs O(n log n).
 */
#include "tokenizer/tokenizer_internal.h"

#include <stdlib.h>

#define PAIR_EMPTY UINT64_MAX

/* Mixes a pair key into a table index. */
static size_t pair_hash(uint64_t key) {
    key ^= key >> 31;
    key *= 0x9E3779B97F4A7C15ull;
    return (size_t)(key ^ (key >> 32));
}

bool spqr_tok_pairs_init(tok_pairmap *m, size_t n) {
    size_t cap = 16;
    while (cap < n * 2) {
        if (cap > SIZE_MAX / 4) return false;
        cap *= 2;
    }
    m->slots = spqr_calloc_array(cap, sizeof *m->slots);
    if (!m->slots) return false;
    for (size_t i = 0; i < cap; i++) m->slots[i].key = PAIR_EMPTY;
    m->mask = cap - 1;
    m->n = 0;
    return true;
}

void spqr_tok_pairs_put(tok_pairmap *m, int32_t a, int32_t b, int32_t prio, int32_t merged) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    /* Callers size the table for all their rules, so it is never more than half full. */
    for (size_t h = pair_hash(key) & m->mask;; h = (h + 1) & m->mask) {
        tok_pair *p = &m->slots[h];
        if (p->key == PAIR_EMPTY) {
            p->key = key;
            m->n++;
        } else if (p->key != key) {
            continue;
        }
        p->prio = prio;
        p->merged = merged;
        return;
    }
}

const tok_pair *spqr_tok_pairs_get(const tok_pairmap *m, int32_t a, int32_t b) {
    if (!m->slots) return NULL;
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (size_t h = pair_hash(key) & m->mask;; h = (h + 1) & m->mask) {
        const tok_pair *p = &m->slots[h];
        if (p->key == key) return p;
        if (p->key == PAIR_EMPTY) return NULL;
    }
}

bool spqr_tok_rules_done(spqr_tokenizer *t) {
    t->in_rule = spqr_calloc_array((size_t)t->n_vocab, 1);
    if (!t->in_rule) return false;
    for (size_t i = 0; t->merges.slots && i <= t->merges.mask; i++) {
        uint64_t key = t->merges.slots[i].key;
        if (key == PAIR_EMPTY) continue;
        t->in_rule[key >> 32] |= 1;
        t->in_rule[(uint32_t)key] |= 2;
    }
    return true;
}

bool spqr_tok_ids_push(tok_ids *a, int32_t id) {
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 64;
        int32_t *v = nc > SIZE_MAX / sizeof *v ? NULL : realloc(a->v, nc * sizeof *v);
        if (!v) return false;
        a->v = v;
        a->cap = nc;
    }
    a->v[a->n++] = id;
    return true;
}

void spqr_tok_work_free(tok_work *w) {
    free(w->sym_id);
    free(w->sym_prev);
    free(w->sym_next);
    free(w->heap);
    memset(w, 0, sizeof *w);
}

size_t spqr_tok_utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t need;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF)
        need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0)
            lo = 0xA0; /* no overlong forms */
        else if (c == 0xED)
            hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F; /* <= U+10FFFF */
    } else {
        return 1;
    }
    if (n < need || s[1] < lo || s[1] > hi) return 1;
    for (size_t i = 2; i < need; i++)
        if ((s[i] & 0xC0) != 0x80) return 1;
    return need;
}

/* Grows the symbol arrays for a word of up to n symbols. */
static bool work_reserve(tok_work *w, size_t n) {
    if (n <= w->sym_cap) return true;
    size_t cap = n < 256 ? 256 : n;
    if (cap > SIZE_MAX / sizeof(int32_t)) return false;
    int32_t *a = realloc(w->sym_id, cap * sizeof *a);
    if (a) w->sym_id = a;
    int32_t *b = realloc(w->sym_prev, cap * sizeof *b);
    if (b) w->sym_prev = b;
    int32_t *c = realloc(w->sym_next, cap * sizeof *c);
    if (c) w->sym_next = c;
    if (!a || !b || !c) return false;
    w->sym_cap = cap;
    return true;
}

/* Grows the heap for a run of n symbols: it never holds more than 2n - 2 entries (n - 1 at the
 * start, then each merge pops one and pushes at most two). */
static bool heap_reserve(tok_work *w, size_t n) {
    if (2 * n <= w->heap_cap) return true;
    size_t cap = n < 128 ? 256 : 2 * n;
    uint64_t *h = cap > SIZE_MAX / sizeof *h ? NULL : realloc(w->heap, cap * sizeof *h);
    if (!h) return false;
    w->heap = h;
    w->heap_cap = cap;
    return true;
}

/* Restores the heap property below slot i of h[0..n). */
static void sift_down(uint64_t *h, size_t n, size_t i) {
    uint64_t v = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && h[c + 1] < h[c]) c++;
        if (h[c] >= v) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
}

/* Adds key to the heap h of *n entries (capacity checked by the caller). */
static void heap_push(uint64_t *h, size_t *n, uint64_t key) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p] <= key) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = key;
}

/* Heap key of the pair whose left symbol is at position `left`, or 0 with *ok false if no rule. */
static uint64_t pair_key(const spqr_tokenizer *t, const tok_work *w, int32_t left, bool *ok) {
    const tok_pair *p = spqr_tok_pairs_get(&t->merges, w->sym_id[left], w->sym_id[w->sym_next[left]]);
    *ok = p != NULL;
    return p ? (uint64_t)(uint32_t)p->prio << 32 | (uint32_t)left : 0;
}

/* Looks up the initial symbol for the character s[0..n): a piece id or -1. */
static int32_t char_id(const spqr_tokenizer *t, const char *s, size_t n) {
    int32_t id = spqr_tok_lookup(t, s, n);
    if (id >= 0 && t->chars_normal_only && t->type[id] != TOK_NORMAL && t->type[id] != TOK_USER) return -1;
    return id;
}

/* Applies the merge rules to symbols [a, b) of w until none applies; links them into a list.
 * False on allocation failure. */
static bool merge_run(const spqr_tokenizer *t, tok_work *w, size_t a, size_t b) {
    if (!heap_reserve(w, b - a)) return false;
    int32_t *id = w->sym_id, *prev = w->sym_prev, *next = w->sym_next;
    for (size_t i = a; i < b; i++) {
        prev[i] = i > a ? (int32_t)i - 1 : -1;
        next[i] = i + 1 < b ? (int32_t)i + 1 : -1;
    }
    uint64_t *heap = w->heap;
    size_t hn = 0;
    for (size_t i = a; i + 1 < b; i++) {
        bool ok;
        uint64_t k = pair_key(t, w, (int32_t)i, &ok);
        if (ok) heap[hn++] = k;
    }
    for (size_t i = hn / 2; i-- > 0;) sift_down(heap, hn, i);

    while (hn > 0) {
        uint64_t top = heap[0];
        heap[0] = heap[--hn];
        if (hn) sift_down(heap, hn, 0);
        int32_t left = (int32_t)(uint32_t)top, right = next[left];
        if (id[left] < 0 || right < 0) continue; /* stale: left was absorbed or is now last */
        const tok_pair *p = spqr_tok_pairs_get(&t->merges, id[left], id[right]);
        if (!p || (uint64_t)(uint32_t)p->prio != top >> 32) continue; /* stale: the pair changed */
        id[left] = p->merged;
        id[right] = -1;
        next[left] = next[right];
        if (next[left] >= 0) prev[next[left]] = left;
        bool ok;
        uint64_t k;
        if (prev[left] >= 0 && (k = pair_key(t, w, prev[left], &ok), ok)) heap_push(heap, &hn, k);
        if (next[left] >= 0 && (k = pair_key(t, w, left, &ok), ok)) heap_push(heap, &hn, k);
    }
    return true;
}

spqr_status spqr_tok_bpe_word(const spqr_tokenizer *t, tok_work *w, const char *s, size_t n, tok_ids *out,
                              spqr_error *err) {
    if (n == 0) return SPQR_OK;
    if (n >= INT32_MAX)
        return spqr_set_err(err, SPQR_E_RANGE, "%s: a word of %zu bytes is too long to encode", t->path, n);
    if (t->ignore_merges) {
        int32_t whole = spqr_tok_lookup(t, s, n);
        if (whole >= 0)
            return spqr_tok_ids_push(out, whole) ? SPQR_OK : spqr_set_err(err, SPQR_E_NOMEM, "out of memory");
    }
    if (!work_reserve(w, n)) return spqr_set_err(err, SPQR_E_NOMEM, "out of memory encoding %zu bytes", n);

    /* Initial symbols: at most one per byte. */
    int32_t *id = w->sym_id;
    size_t ns = 0;
    bool last_unk = false;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t cl = spqr_tok_utf8_len(u + i, n - i);
        int32_t c = char_id(t, s + i, cl);
        bool bytes_ok = c < 0 && t->byte_fallback;
        for (size_t k = 0; bytes_ok && k < cl; k++) bytes_ok = t->byte_id[u[i + k]] >= 0;
        if (c >= 0) {
            id[ns++] = c;
            last_unk = false;
        } else if (bytes_ok) {
            for (size_t k = 0; k < cl; k++) id[ns++] = t->byte_id[u[i + k]];
            last_unk = false;
        } else if (t->unk >= 0) {
            if (!(t->fuse_unk && last_unk)) id[ns++] = t->unk;
            last_unk = true;
        } /* no byte piece and no unk: the character is dropped, as HF does */
        i += cl;
    }
    if (ns == 0) return SPQR_OK;

    /* A symbol that appears in no rule never changes and no pair spans it: the runs between such
     * symbols (byte pieces, newlines in practice) are merged independently, with small heaps. */
    for (size_t a = 0; a < ns;) {
        size_t b = a + 1;
        if (!(t->in_rule[id[a]] & 3)) {
            if (!spqr_tok_ids_push(out, id[a])) return spqr_set_err(err, SPQR_E_NOMEM, "out of memory");
        } else {
            while (b < ns && (t->in_rule[id[b]] & 3)) b++;
            if (!merge_run(t, w, a, b)) return spqr_set_err(err, SPQR_E_NOMEM, "out of memory encoding %zu bytes", n);
            for (int32_t i = (int32_t)a; i >= 0; i = w->sym_next[i]) /* the first symbol is never absorbed */
                if (!spqr_tok_ids_push(out, id[i])) return spqr_set_err(err, SPQR_E_NOMEM, "out of memory");
        }
        a = b;
    }
    return SPQR_OK;
}
