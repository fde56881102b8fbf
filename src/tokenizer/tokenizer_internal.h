/*
 * tokenizer_internal.h — the tokenizer object shared by the loaders (tokenizer.json, llama2.c
 * tokenizer.bin) and the encoder.
 *
 * Every format is reduced to the same pipeline:
 *   raw text -> split at added tokens -> normalize (list of ops) -> split at normalized added tokens
 *            -> pre-tokenize into words (none yet; ByteLevel/Metaspace would go here)
 *            -> BPE over piece ids with a pair table (id_a, id_b) -> (priority, merged id).
 * The loaders only fill the tables: HF merges give priority = merge rank, llama2.c pieces give
 * priority = rank of the merged piece's score.
 */
#ifndef SPQR_TOKENIZER_INTERNAL_H
#define SPQR_TOKENIZER_INTERNAL_H

#include "core/core.h"

/* What a piece prints as and whether BPE may start from it. */
typedef enum tok_type {
    TOK_NORMAL = 0,  /* ordinary piece: "▁" prints as a space */
    TOK_BYTE = 1,    /* "<0xXX>" with byte fallback: prints the raw byte */
    TOK_CONTROL = 2, /* <unk>, <s>, </s>, special added tokens: prints nothing */
    TOK_USER = 3,    /* non-special added token: prints its text verbatim */
} tok_type;

/* Open-addressing map piece text -> id; keys live in the tokenizer's piece blob. */
typedef struct tok_strmap {
    int32_t *slots; /* id, or -1 when empty */
    size_t mask;    /* capacity - 1 (capacity a power of two) */
} tok_strmap;

/* One merge rule: pieces (a, b) -> merged, applied in increasing `prio`. */
typedef struct tok_pair {
    uint64_t key; /* (uint64)a << 32 | b; UINT64_MAX when the slot is empty */
    int32_t prio;
    int32_t merged;
} tok_pair;

typedef struct tok_pairmap {
    tok_pair *slots;
    size_t mask;
    size_t n;
} tok_pairmap;

/* A normalizer step, applied in order to each text segment. */
typedef enum tok_norm_kind {
    TOK_NORM_PREPEND = 0, /* prepend `a` to a non-empty segment */
    TOK_NORM_REPLACE = 1, /* replace every occurrence of `a` (non-empty) by `b`, left to right */
} tok_norm_kind;

typedef struct tok_norm_op {
    tok_norm_kind kind;
    char *a, *b;
    size_t alen, blen;
} tok_norm_op;

/* Added tokens matched literally in the text, grouped by first byte, longest first. */
typedef struct tok_matcher {
    int32_t *ids; /* token ids; their text is the piece */
    int n;
    int start[257]; /* ids[start[c] .. start[c+1]) begin with byte c */
} tok_matcher;

struct spqr_tokenizer {
    char *path;
    int n_vocab;
    char *blob;          /* all pieces, each NUL-terminated */
    uint32_t *off, *len; /* piece i is blob + off[i], len[i] bytes (no NUL inside) */
    uint8_t *type;       /* tok_type per id */
    size_t blob_used, blob_cap;
    tok_strmap vocab;
    tok_pairmap merges;
    uint8_t *in_rule;       /* per id: 1 if it is the left piece of some rule, 2 if the right one */
    int32_t byte_id[256];   /* id of "<0xXX>" when byte fallback applies, else -1 */
    int32_t unk, bos, eos;  /* -1 when absent */
    bool byte_fallback;     /* unknown characters become their byte pieces */
    bool fuse_unk;          /* consecutive unknown characters give one unk */
    bool ignore_merges;     /* a word that is a piece is taken whole (HF ignore_merges) */
    bool chars_normal_only; /* initial symbols may only be NORMAL/USER pieces (SentencePiece) */
    bool strip_after_bos;   /* the normalizer prepends "▁": decoding drops it after BOS */
    tok_norm_op *norm;
    int n_norm;
    tok_matcher raw_added;  /* matched in the raw text */
    tok_matcher norm_added; /* matched in normalized segments */
};

/* ---- pieces (tok_pieces.c) ---- */

/* Allocates n_vocab empty piece slots and a blob of `bytes` text bytes (plus NULs). Returns false
 * on overflow or allocation failure. */
bool spqr_tok_pieces_alloc(spqr_tokenizer *t, int n_vocab, size_t bytes);
/* Stores the text of piece `id` (which must not be set yet); false if the blob is full or the
 * text contains a NUL. */
bool spqr_tok_piece_set(spqr_tokenizer *t, int id, const char *s, size_t n);
/* Builds t->vocab over all pieces. A repeated text keeps its lowest id; when dup_a/dup_b are not
 * NULL they receive the first repeated pair of ids (-1 when none). False on allocation failure. */
bool spqr_tok_index(spqr_tokenizer *t, int32_t *dup_a, int32_t *dup_b);
/* Id of the piece with text s[0..n), or -1. */
int32_t spqr_tok_lookup(const spqr_tokenizer *t, const char *s, size_t n);
/* Fills byte_id[] from the "<0xXX>" pieces (marking them TOK_BYTE) when byte_fallback is set. */
void spqr_tok_find_bytes(spqr_tokenizer *t);
/* Sorts the added tokens of `ids` into a matcher (copied). False on allocation failure. */
bool spqr_tok_matcher_build(const spqr_tokenizer *t, tok_matcher *m, const int32_t *ids, int n);
/* Frees everything the tokenizer owns (not the struct itself). */
void spqr_tok_release(spqr_tokenizer *t);

/* ---- merge rules and the BPE engine (tok_bpe.c) ---- */

/* Sizes the pair table for about n rules. False on allocation failure. */
bool spqr_tok_pairs_init(tok_pairmap *m, size_t n);
/* Sets the rule (a, b) -> (prio, merged); a later call for the same pair overwrites it (as HF). */
void spqr_tok_pairs_put(tok_pairmap *m, int32_t a, int32_t b, int32_t prio, int32_t merged);
/* The rule for (a, b), or NULL. */
const tok_pair *spqr_tok_pairs_get(const tok_pairmap *m, int32_t a, int32_t b);

/* Computes t->in_rule once all rules are in. False on allocation failure. */
bool spqr_tok_rules_done(spqr_tokenizer *t);

/* A growable id array. */
typedef struct tok_ids {
    int32_t *v;
    size_t n, cap;
} tok_ids;

/* Appends id; false on allocation failure. */
bool spqr_tok_ids_push(tok_ids *a, int32_t id);

/* Scratch buffers of one encode call, reused across its words. */
typedef struct tok_work {
    int32_t *sym_id, *sym_prev, *sym_next;
    size_t sym_cap;
    uint64_t *heap;
    size_t heap_cap;
} tok_work;

void spqr_tok_work_free(tok_work *w);
/* Encodes one pre-tokenized word s[0..n) with BPE and appends its ids to out. */
spqr_status spqr_tok_bpe_word(const spqr_tokenizer *t, tok_work *w, const char *s, size_t n, tok_ids *out,
                              spqr_error *err);
/* Bytes in the UTF-8 character at s (n > 0 bytes left); an invalid byte counts as a 1-byte character. */
size_t spqr_tok_utf8_len(const unsigned char *s, size_t n);

/* ---- loaders (tok_hf.c, tok_llama2c.c) ---- */

/* Fills t from the text of a tokenizer.json. t comes zeroed, with path set, unk/bos/eos = -1 and
 * byte_id[] = -1. On error t may be partly filled (spqr_tok_release frees it). */
spqr_status spqr_tok_load_hf(spqr_tokenizer *t, const char *text, size_t len, spqr_error *err);
/* Fills t from a llama2.c tokenizer.bin image; same contract as spqr_tok_load_hf. */
spqr_status spqr_tok_load_llama2c(spqr_tokenizer *t, const unsigned char *d, size_t n, spqr_error *err);
/* True if the first bytes plausibly start a llama2.c tokenizer.bin (0 < max_token_length <= 65536). */
bool spqr_tok_llama2c_header_ok(const unsigned char *d, size_t n);

#endif
