/*
 * tokenizer.c — the public tokenizer API: format detection, the encode pipeline (added tokens,
 * normalizer, pre-tokenizer, BPE) and streaming decode.
 */
#include "tokenizer/tokenizer_internal.h"

#include <stdio.h>
#include <stdlib.h>

#define MAX_TOKENIZER_FILE ((uint64_t)1 << 30)

/* ---------------------------------------------------------------------------------------------- */
/* Loading                                                                                        */
/* ---------------------------------------------------------------------------------------------- */

/* Little-endian int32 at p. */
static int32_t le_i32(const unsigned char *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t v;
    memcpy(&v, &u, 4);
    return v;
}

/*
 * Names files of other kinds by their magic bytes; returns SPQR_E_UNSUPPORTED with a message, or
 * SPQR_OK if none matches. Every magic here is impossible at the start of a valid tokenizer.bin,
 * so these checks may run first.
 */
static spqr_status other_format(const char *path, const unsigned char *d, size_t n, spqr_error *err) {
    if (n >= 4 && memcmp(d, "GGUF", 4) == 0)
        return spqr_set_err(err, SPQR_E_UNSUPPORTED, "%s: a GGUF file: GGUF tokenizers are not supported yet", path);
    if (n >= 3 && d[0] == 0x80 && d[1] >= 2 && d[1] <= 5 && d[2] != 0)
        return spqr_set_err(err, SPQR_E_UNSUPPORTED, "%s: a Python pickle (PyTorch checkpoint?), not a tokenizer",
                            path);
    if (n >= 4 && memcmp(d, "PK\x03\x04", 4) == 0)
        return spqr_set_err(err, SPQR_E_UNSUPPORTED, "%s: a zip archive (PyTorch checkpoint?), not a tokenizer", path);
    if (n >= 8 && memcmp(d, "\x93NUMPY", 6) == 0)
        return spqr_set_err(err, SPQR_E_UNSUPPORTED, "%s: a NumPy array, not a tokenizer", path);
    /* safetensors: u64 header size, then the JSON header */
    if (n >= 10 && d[8] == '{' && d[9] == '"')
        return spqr_set_err(err, SPQR_E_UNSUPPORTED, "%s: a safetensors weight file, not a tokenizer", path);
    /* SentencePiece ModelProto: field 1 (pieces, length-delimited) whose first field is 1 (piece). */
    if (n >= 3 && d[0] == 0x0A) {
        size_t i = 1;
        while (i < n && i < 6 && (d[i] & 0x80)) i++;
        if (i + 1 < n && d[i + 1] == 0x0A)
            return spqr_set_err(err, SPQR_E_UNSUPPORTED,
                                "%s: a SentencePiece .model protobuf: not supported; use the tokenizer.json "
                                "(or llama2.c tokenizer.bin) that comes with it",
                                path);
    }
    return SPQR_OK;
}

/* True if d starts like a llama2.c model checkpoint: 7 int32 (dim, hidden, layers, heads, kv heads,
 * vocab (negative: unshared classifier), seq_len) of plausible sizes. */
static bool looks_like_llama2c_model(const unsigned char *d, size_t n) {
    if (n < 28) return false;
    int32_t h[7];
    for (int i = 0; i < 7; i++) h[i] = le_i32(d + 4 * i);
    for (int i = 0; i < 7; i++)
        if (i != 5 && (h[i] <= 0 || h[i] > (1 << 20))) return false;
    return h[5] != 0 && h[5] > -(1 << 24) && h[5] < (1 << 24) && h[0] % h[3] == 0 && h[3] % h[4] == 0;
}

/* Describes a file that matched no format; returns SPQR_E_UNSUPPORTED (SPQR_E_FORMAT if empty). */
static spqr_status unrecognised(const char *path, const unsigned char *d, size_t n, spqr_error *err) {
    if (n == 0) return spqr_set_err(err, SPQR_E_FORMAT, "%s: empty file: not a tokenizer", path);
    if (n < 4) return spqr_set_err(err, SPQR_E_UNSUPPORTED, "%s: %zu bytes: too short to be a tokenizer", path, n);
    return spqr_set_err(err, SPQR_E_UNSUPPORTED,
                        "%s: not a recognised tokenizer: not JSON, and as a llama2.c tokenizer.bin its "
                        "max_token_length would be %d, outside 1..65536 (first bytes %02x %02x %02x %02x)",
                        path, (int)le_i32(d), d[0], d[1], d[2], d[3]);
}

spqr_status spqr_tokenizer_load(const char *path, spqr_tokenizer **out, spqr_error *err) {
    if (out) *out = NULL;
    if (!path || !out) return spqr_set_err(err, SPQR_E_ARG, "spqr_tokenizer_load: path and out must not be NULL");
    char *data;
    size_t n;
    spqr_status st = spqr_read_file(path, MAX_TOKENIZER_FILE, &data, &n, err);
    if (st != SPQR_OK) return st;
    st = spqr_tokenizer_load_memory(data, n, path, out, err);
    free(data);
    return st;
}

spqr_status spqr_tokenizer_load_memory(const void *data, size_t n, const char *path, spqr_tokenizer **out, spqr_error *err) {
    if (out) *out = NULL;
    if (!data || !path || !out) return spqr_set_err(err, SPQR_E_ARG, "spqr_tokenizer_load_memory: data, name and out must not be NULL");
    if (n > MAX_TOKENIZER_FILE) return spqr_set_err(err, SPQR_E_FORMAT, "%s: %zu bytes is too large for a tokenizer", path, n);
    spqr_status st;
    spqr_tokenizer *t = calloc(1, sizeof *t);
    if (!t || !(t->path = spqr_strdup(path))) {
        free(t);
        return spqr_set_err(err, SPQR_E_NOMEM, "%s: out of memory", path);
    }
    t->unk = t->bos = t->eos = -1;
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;

    const unsigned char *d = (const unsigned char *)data;
    size_t i = 0;
    if (n >= 3 && memcmp(d, "\xEF\xBB\xBF", 3) == 0) i = 3; /* UTF-8 byte order mark */
    while (i < n && (d[i] == ' ' || d[i] == '\t' || d[i] == '\n' || d[i] == '\r')) i++;
    /* JSON text has no NUL bytes; a llama2.c header whose first byte happens to be '{' has three. */
    if (i < n && (d[i] == '{' || d[i] == '[') && !memchr(d, 0, n < 4 ? n : 4)) {
        st = spqr_tok_load_hf(t, (const char *)d + i, n - i, err);
    } else if ((st = other_format(path, d, n, err)) != SPQR_OK) {
        /* named */
    } else if (spqr_tok_llama2c_header_ok(d, n)) {
        st = spqr_tok_load_llama2c(t, d, n, err);
        if (st != SPQR_OK && looks_like_llama2c_model(d, n))
            st = spqr_set_err(err, SPQR_E_UNSUPPORTED,
                              "%s: looks like a llama2.c model checkpoint (dim %d, %d layers, vocab %d), not a "
                              "tokenizer.bin",
                              path, (int)le_i32(d), (int)le_i32(d + 8), (int)le_i32(d + 20));
    } else {
        st = unrecognised(path, d, n, err);
    }
    if (st != SPQR_OK) {
        spqr_tokenizer_free(t);
        return st;
    }
    *out = t;
    return SPQR_OK;
}

void spqr_tokenizer_free(spqr_tokenizer *tok) {
    if (!tok) return;
    spqr_tok_release(tok);
    free(tok);
}

int spqr_tokenizer_vocab_size(const spqr_tokenizer *tok) { return tok ? tok->n_vocab : 0; }
int spqr_tokenizer_bos(const spqr_tokenizer *tok) { return tok ? tok->bos : -1; }
int spqr_tokenizer_eos(const spqr_tokenizer *tok) { return tok ? tok->eos : -1; }

const char *spqr_tokenizer_piece(const spqr_tokenizer *tok, int id) {
    if (!tok || id < 0 || id >= tok->n_vocab) return NULL;
    return tok->blob + tok->off[id];
}

/* ---------------------------------------------------------------------------------------------- */
/* Encoding                                                                                       */
/* ---------------------------------------------------------------------------------------------- */

/* A growable byte buffer. */
typedef struct tok_buf {
    char *p;
    size_t n, cap;
} tok_buf;

/* Makes room for `more` bytes after b->n; false on overflow or allocation failure. */
static bool buf_reserve(tok_buf *b, size_t more) {
    if (more <= b->cap - b->n) return true;
    if (more > SIZE_MAX / 2 - b->n) return false;
    size_t nc = b->cap ? b->cap : 256;
    while (nc - b->n < more) nc *= 2;
    char *p = realloc(b->p, nc);
    if (!p) return false;
    b->p = p;
    b->cap = nc;
    return true;
}

/* Appends s[0..n) to b. */
static bool buf_put(tok_buf *b, const char *s, size_t n) {
    if (!buf_reserve(b, n)) return false;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    return true;
}

/* State of one encode call. */
typedef struct enc_state {
    const spqr_tokenizer *t;
    tok_ids out;
    tok_work work;
    tok_buf nb[2]; /* normalizer ping-pong buffers */
    spqr_error *err;
} enc_state;

/*
 * Finds the leftmost, then longest, added token of m in s[from..n). Returns its id and sets *at,
 * or -1 when there is none.
 */
static int32_t find_added(const spqr_tokenizer *t, const tok_matcher *m, const char *s, size_t n, size_t from,
                          size_t *at) {
    if (m->n == 0) return -1;
    for (size_t i = from; i < n; i++) {
        int c = (unsigned char)s[i];
        for (int k = m->start[c]; k < m->start[c + 1]; k++) { /* longest first */
            int32_t id = m->ids[k];
            size_t len = t->len[id];
            if (len <= n - i && memcmp(s + i, t->blob + t->off[id], len) == 0) {
                *at = i;
                return id;
            }
        }
    }
    return -1;
}

/* Pre-tokenizer stage: splits a normalized segment into words and BPE-encodes each. The supported
 * tokenizers have no pre-tokenizer, so the segment is one word; a ByteLevel or Metaspace splitter
 * would go here. */
static spqr_status pretokenize_and_encode(enc_state *e, const char *s, size_t n) {
    return spqr_tok_bpe_word(e->t, &e->work, s, n, &e->out, e->err);
}

/* Encodes a normalized segment: splits it at normalized added tokens, the rest goes on to BPE. */
static spqr_status encode_normalized(enc_state *e, const char *s, size_t n) {
    size_t pos = 0;
    for (;;) {
        size_t at = n;
        int32_t id = find_added(e->t, &e->t->norm_added, s, n, pos, &at);
        spqr_status st = pretokenize_and_encode(e, s + pos, at - pos);
        if (st != SPQR_OK) return st;
        if (id < 0) return SPQR_OK;
        if (!spqr_tok_ids_push(&e->out, id)) return spqr_set_err(e->err, SPQR_E_NOMEM, "out of memory");
        pos = at + e->t->len[id];
    }
}

/* Applies the normalizer ops to s[0..n); returns the result (in one of e->nb) or NULL if out of memory. */
static const tok_buf *normalize(enc_state *e, const char *s, size_t n) {
    int cur = 0;
    e->nb[0].n = 0;
    if (!buf_put(&e->nb[0], s, n)) return NULL;
    for (int i = 0; i < e->t->n_norm; i++) {
        const tok_norm_op *op = &e->t->norm[i];
        tok_buf *src = &e->nb[cur], *dst = &e->nb[cur ^ 1];
        if (src->n == 0) break; /* both ops leave an empty segment empty */
        dst->n = 0;
        if (op->kind == TOK_NORM_PREPEND) {
            if (!buf_put(dst, op->a, op->alen) || !buf_put(dst, src->p, src->n)) return NULL;
        } else {
            size_t i0 = 0;
            while (i0 < src->n) {
                const char *hit = op->alen <= src->n - i0 ? memmem(src->p + i0, src->n - i0, op->a, op->alen) : NULL;
                size_t stop = hit ? (size_t)(hit - src->p) : src->n;
                if (!buf_put(dst, src->p + i0, stop - i0)) return NULL;
                if (!hit) break;
                if (!buf_put(dst, op->b, op->blen)) return NULL;
                i0 = stop + op->alen;
            }
        }
        cur ^= 1;
    }
    return &e->nb[cur];
}

/* Encodes a raw segment that contains no raw-matched added token. */
static spqr_status encode_segment(enc_state *e, const char *s, size_t n) {
    if (n == 0) return SPQR_OK;
    const tok_buf *nb = normalize(e, s, n);
    if (!nb) return spqr_set_err(e->err, SPQR_E_NOMEM, "out of memory normalizing %zu bytes", n);
    return encode_normalized(e, nb->p, nb->n);
}

spqr_status spqr_tokenizer_encode(const spqr_tokenizer *tok, const char *text, size_t len, int add_bos, int32_t **ids,
                                  size_t *n_ids, spqr_error *err) {
    if (ids) *ids = NULL;
    if (n_ids) *n_ids = 0;
    if (!tok || !ids || !n_ids || (!text && len))
        return spqr_set_err(err, SPQR_E_ARG, "spqr_tokenizer_encode: NULL tokenizer, text or output");
    if (!text) text = ""; /* len == 0 */
    enc_state e = {.t = tok, .err = err};
    spqr_status st = SPQR_OK;
    /* With no BOS in the vocabulary add_bos adds nothing, like HF for models without BOS. */
    if (add_bos && tok->bos >= 0 && !spqr_tok_ids_push(&e.out, tok->bos))
        st = spqr_set_err(err, SPQR_E_NOMEM, "out of memory");
    size_t pos = 0;
    while (st == SPQR_OK) {
        size_t at = len;
        int32_t id = find_added(tok, &tok->raw_added, text, len, pos, &at);
        st = encode_segment(&e, text + pos, at - pos);
        if (st != SPQR_OK || id < 0) break;
        if (!spqr_tok_ids_push(&e.out, id)) st = spqr_set_err(err, SPQR_E_NOMEM, "out of memory");
        pos = at + tok->len[id];
    }
    spqr_tok_work_free(&e.work);
    free(e.nb[0].p);
    free(e.nb[1].p);
    if (st != SPQR_OK) {
        free(e.out.v);
        return st;
    }
    if (!e.out.v && !(e.out.v = malloc(sizeof(int32_t)))) /* a valid array even when empty */
        return spqr_set_err(err, SPQR_E_NOMEM, "out of memory");
    *ids = e.out.v;
    *n_ids = e.out.n;
    if (err) {
        err->code = SPQR_OK;
        err->msg[0] = 0;
    }
    return SPQR_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* Decoding                                                                                       */
/* ---------------------------------------------------------------------------------------------- */

/* Bounded output like snprintf: counts every byte, stores at most cap - 1. */
typedef struct out_sink {
    char *buf;
    size_t cap, n;
} out_sink;

/* Appends s[0..k) to the sink. */
static void sink_put(out_sink *o, const char *s, size_t k) {
    if (o->cap && o->n < o->cap - 1) {
        size_t room = o->cap - 1 - o->n;
        memcpy(o->buf + o->n, s, k < room ? k : room);
    }
    o->n += k;
}

size_t spqr_tokenizer_token_text(const spqr_tokenizer *tok, int prev, int id, char *buf, size_t cap) {
    out_sink o = {buf, buf ? cap : 0, 0};
    if (tok && id >= 0 && id < tok->n_vocab) {
        const char *p = tok->blob + tok->off[id];
        size_t n = tok->len[id];
        switch ((tok_type)tok->type[id]) {
        case TOK_CONTROL: break;
        case TOK_USER: sink_put(&o, p, n); break;
        case TOK_BYTE: { /* "<0xXX>", upper-case hex (checked when the type was set) */
            unsigned v = 0;
            for (int k = 3; k < 5; k++) v = v * 16 + (unsigned)(p[k] <= '9' ? p[k] - '0' : p[k] - 'A' + 10);
            char c = (char)v;
            sink_put(&o, &c, 1);
            break;
        }
        case TOK_NORMAL: {
            bool strip = tok->strip_after_bos && (prev < 0 || prev == tok->bos);
            for (size_t i = 0; i < n;) {
                if (n - i >= 3 && memcmp(p + i, "\xE2\x96\x81", 3) == 0) { /* "▁" */
                    if (!(strip && i == 0)) sink_put(&o, " ", 1);
                    i += 3;
                } else {
                    size_t j = i + 1; /* copy up to the next possible "▁" */
                    while (j < n && (unsigned char)p[j] != 0xE2) j++;
                    if (strip && i == 0 && p[0] == ' ') i++; /* a literal leading space is dropped too */
                    sink_put(&o, p + i, j - i);
                    i = j;
                }
            }
            break;
        }
        }
    }
    if (o.cap) o.buf[o.n < o.cap ? o.n : o.cap - 1] = 0;
    return o.n;
}
