/*
 * tok_hf.c — Hugging Face tokenizer.json with a BPE model of the SentencePiece kind (Llama-2,
 * Mistral-style byte fallback): Prepend/Replace normalizer, no pre-tokenizer, merges by rank,
 * added tokens matched in the text. Byte-level BPE (a ByteLevel pre-tokenizer) is recognised and
 * refused; it would plug in as a pre-tokenizer stage in front of the same merge engine.
 */
#include "tokenizer/tokenizer_internal.h"
#include "core/json.h"

#include <stdio.h>
#include <stdlib.h>

#define MAX_NORMALIZER_DEPTH 8

/* Writes s[0..n) into buf as a quoted, escaped, possibly shortened string for a message. */
static const char *show(const char *s, size_t n, char *buf, size_t cap) {
    size_t k = 0;
    if (cap < 8) return "";
    buf[k++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (k + 8 >= cap) {
            memcpy(buf + k, "...", 3);
            k += 3;
            break;
        }
        if (c == '"' || c == '\\') {
            buf[k++] = '\\';
            buf[k++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            k += (size_t)snprintf(buf + k, cap - k, "\\x%02x", c);
        } else {
            buf[k++] = (char)c;
        }
    }
    buf[k++] = '"';
    buf[k] = 0;
    return buf;
}

/* Boolean member `key` of o: *out keeps `dflt` when absent or null; false if of another type. */
static bool get_bool(const spqr_json *o, const char *key, bool dflt, bool *out) {
    const spqr_json *v = spqr_json_get(o, key);
    *out = dflt;
    if (!v || v->type == SPQR_JSON_NULL) return true;
    if (v->type != SPQR_JSON_BOOL) return false;
    *out = v->boolean;
    return true;
}

/* Appends a normalizer op (taking ownership of a and b, which may be NULL on allocation failure). */
static spqr_status add_norm(spqr_tokenizer *t, tok_norm_kind kind, const spqr_json *a, const spqr_json *b,
                            spqr_error *err) {
    tok_norm_op *ops = realloc(t->norm, ((size_t)t->n_norm + 1) * sizeof *ops);
    if (!ops) return spqr_set_err(err, SPQR_E_NOMEM, "%s: out of memory", t->path);
    t->norm = ops;
    tok_norm_op *op = &ops[t->n_norm];
    memset(op, 0, sizeof *op);
    op->kind = kind;
    op->a = malloc(a->len + 1);
    op->b = malloc(b ? b->len + 1 : 1);
    t->n_norm++; /* counted now so that release frees a and b */
    if (!op->a || !op->b) return spqr_set_err(err, SPQR_E_NOMEM, "%s: out of memory", t->path);
    memcpy(op->a, a->str, a->len + 1);
    op->alen = a->len;
    if (b)
        memcpy(op->b, b->str, b->len + 1);
    else
        op->b[0] = 0;
    op->blen = b ? b->len : 0;
    return SPQR_OK;
}

/* Turns the "normalizer" object into t->norm ops; refuses what the encoder cannot reproduce. */
static spqr_status parse_normalizer(spqr_tokenizer *t, const spqr_json *n, int depth, spqr_error *err) {
    if (!n || n->type == SPQR_JSON_NULL) return SPQR_OK;
    const char *type = spqr_json_str(spqr_json_get(n, "type"));
    if (n->type != SPQR_JSON_OBJECT || !type)
        return spqr_set_err(err, SPQR_E_FORMAT, "%s: normalizer: not an object with a \"type\"", t->path);
    if (strcmp(type, "Sequence") == 0) {
        const spqr_json *list = spqr_json_get(n, "normalizers");
        if (!list || list->type != SPQR_JSON_ARRAY)
            return spqr_set_err(err, SPQR_E_FORMAT, "%s: normalizer: Sequence without a \"normalizers\" array",
                                t->path);
        if (depth >= MAX_NORMALIZER_DEPTH)
            return spqr_set_err(err, SPQR_E_FORMAT, "%s: normalizer: Sequences nested too deep", t->path);
        for (size_t i = 0; i < list->n; i++) {
            spqr_status st = parse_normalizer(t, &list->items[i], depth + 1, err);
            if (st != SPQR_OK) return st;
        }
        return SPQR_OK;
    }
    if (strcmp(type, "Prepend") == 0) {
        const spqr_json *p = spqr_json_get(n, "prepend");
        if (!spqr_json_str(p))
            return spqr_set_err(err, SPQR_E_FORMAT, "%s: normalizer: Prepend without a \"prepend\" string", t->path);
        return p->len ? add_norm(t, TOK_NORM_PREPEND, p, NULL, err) : SPQR_OK;
    }
    if (strcmp(type, "Replace") == 0) {
        const spqr_json *pat = spqr_json_get(n, "pattern"), *content = spqr_json_get(n, "content");
        const spqr_json *s = spqr_json_get(pat, "String");
        if (!s && spqr_json_get(pat, "Regex"))
            return spqr_set_err(err, SPQR_E_UNSUPPORTED,
                                "%s: normalizer: Replace with a Regex pattern is not supported", t->path);
        if (!spqr_json_str(s) || !spqr_json_str(content))
            return spqr_set_err(err, SPQR_E_FORMAT,
                                "%s: normalizer: Replace needs a pattern {\"String\": ...} and a content string",
                                t->path);
        if (s->len == 0)
            return spqr_set_err(err, SPQR_E_FORMAT, "%s: normalizer: Replace with an empty pattern", t->path);
        return add_norm(t, TOK_NORM_REPLACE, s, content, err);
    }
    char b[80];
    return spqr_set_err(err, SPQR_E_UNSUPPORTED, "%s: normalizer: %s normalizers are not supported", t->path,
                        show(type, strlen(type), b, sizeof b));
}

/* Accepts only "no pre-tokenizer"; names what it finds otherwise. */
static spqr_status check_pre_tokenizer(const spqr_tokenizer *t, const spqr_json *p, int depth, spqr_error *err) {
    if (!p || p->type == SPQR_JSON_NULL) return SPQR_OK;
    const char *type = spqr_json_str(spqr_json_get(p, "type"));
    if (p->type != SPQR_JSON_OBJECT || !type)
        return spqr_set_err(err, SPQR_E_FORMAT, "%s: pre_tokenizer: not an object with a \"type\"", t->path);
    if (strcmp(type, "Sequence") == 0 && depth < MAX_NORMALIZER_DEPTH) {
        const spqr_json *list = spqr_json_get(p, "pretokenizers");
        if (list && list->type == SPQR_JSON_ARRAY) {
            for (size_t i = 0; i < list->n; i++) {
                spqr_status st = check_pre_tokenizer(t, &list->items[i], depth + 1, err);
                if (st != SPQR_OK) return st;
            }
            return SPQR_OK; /* only empty sequences */
        }
    }
    if (strcmp(type, "ByteLevel") == 0)
        return spqr_set_err(err, SPQR_E_UNSUPPORTED,
                            "%s: pre_tokenizer: byte-level BPE (Llama-3/Qwen2/GPT-2 style) is not supported yet",
                            t->path);
    if (strcmp(type, "Metaspace") == 0)
        return spqr_set_err(err, SPQR_E_UNSUPPORTED,
                            "%s: pre_tokenizer: Metaspace (legacy Llama/Mistral tokenizer.json) is not supported yet",
                            t->path);
    char b[80];
    return spqr_set_err(err, SPQR_E_UNSUPPORTED, "%s: pre_tokenizer: %s pre-tokenizers are not supported", t->path,
                        show(type, strlen(type), b, sizeof b));
}

/* Reads the model options that change how BPE runs and refuses the ones not implemented. */
static spqr_status parse_model_options(spqr_tokenizer *t, const spqr_json *model, spqr_error *err) {
    const spqr_json *drop = spqr_json_get(model, "dropout");
    double dv;
    if (drop && drop->type != SPQR_JSON_NULL && !(spqr_json_num(drop, &dv) && dv == 0.0))
        return spqr_set_err(err, SPQR_E_UNSUPPORTED, "%s: model.dropout: BPE dropout is not supported", t->path);
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const spqr_json *v = spqr_json_get(model, affixes[i]);
        if (v && v->type != SPQR_JSON_NULL && !(v->type == SPQR_JSON_STRING && v->len == 0))
            return spqr_set_err(err, SPQR_E_UNSUPPORTED, "%s: model.%s is not supported", t->path, affixes[i]);
    }
    if (!get_bool(model, "byte_fallback", false, &t->byte_fallback))
        return spqr_set_err(err, SPQR_E_FORMAT, "%s: model.byte_fallback: not a boolean", t->path);
    if (!get_bool(model, "fuse_unk", false, &t->fuse_unk))
        return spqr_set_err(err, SPQR_E_FORMAT, "%s: model.fuse_unk: not a boolean", t->path);
    if (!get_bool(model, "ignore_merges", false, &t->ignore_merges))
        return spqr_set_err(err, SPQR_E_FORMAT, "%s: model.ignore_merges: not a boolean", t->path);
    return SPQR_OK;
}

/*
 * Collects the text of every id from model.vocab and added_tokens into t's pieces. Ids must be
 * unique per source, in range and without gaps; an added token may repeat a vocab entry only
 * with the same text.
 */
static spqr_status build_vocab(spqr_tokenizer *t, const spqr_json *vocab, const spqr_json *added, spqr_error *err) {
    char b1[96], b2[96];
    size_t n_added = added ? added->n : 0;
    uint64_t limit64;
    if (!spqr_add_ok(vocab->n, n_added, &limit64) || limit64 > INT32_MAX / 2)
        return spqr_set_err(err, SPQR_E_FORMAT, "%s: model.vocab: too many entries", t->path);
    size_t limit = (size_t)limit64;
    if (limit == 0) return spqr_set_err(err, SPQR_E_FORMAT, "%s: model.vocab: empty vocabulary", t->path);
    const spqr_json **src = spqr_calloc_array(limit, sizeof *src);
    if (!src) return spqr_set_err(err, SPQR_E_NOMEM, "%s: out of memory", t->path);
    spqr_status st = SPQR_OK;
    int64_t max_id = -1;
    size_t bytes = 0;
    for (size_t i = 0; i < vocab->n && st == SPQR_OK; i++) {
        const spqr_json *k = &vocab->keys[i];
        int64_t id;
        if (!spqr_json_i64(&vocab->items[i], &id) || id < 0 || (uint64_t)id >= limit)
            st = spqr_set_err(err, SPQR_E_FORMAT, "%s: model.vocab: %s: id is not an integer in 0..%zu", t->path,
                              show(k->str, k->len, b1, sizeof b1), limit - 1);
        else if (src[id])
            st = spqr_set_err(err, SPQR_E_FORMAT, "%s: model.vocab: id %lld is given to both %s and %s", t->path,
                              (long long)id, show(src[id]->str, src[id]->len, b1, sizeof b1),
                              show(k->str, k->len, b2, sizeof b2));
        else {
            src[id] = k;
            bytes += k->len;
            if (id > max_id) max_id = id;
        }
    }
    for (size_t i = 0; i < n_added && st == SPQR_OK; i++) {
        const spqr_json *a = &added->items[i], *c = spqr_json_get(a, "content");
        int64_t id;
        if (!spqr_json_i64(spqr_json_get(a, "id"), &id) || id < 0 || (uint64_t)id >= limit || !spqr_json_str(c) ||
            c->len == 0)
            st = spqr_set_err(err, SPQR_E_FORMAT,
                              "%s: added_tokens[%zu]: needs an \"id\" in 0..%zu and a non-empty \"content\"", t->path,
                              i, limit - 1);
        else if (src[id] && (src[id]->len != c->len || memcmp(src[id]->str, c->str, c->len) != 0))
            st = spqr_set_err(err, SPQR_E_FORMAT, "%s: added_tokens[%zu]: id %lld is %s in the vocabulary but %s here",
                              t->path, i, (long long)id, show(src[id]->str, src[id]->len, b1, sizeof b1),
                              show(c->str, c->len, b2, sizeof b2));
        else if (!src[id]) {
            src[id] = c;
            bytes += c->len;
            if (id > max_id) max_id = id;
        }
    }
    for (int64_t id = 0; id <= max_id && st == SPQR_OK; id++)
        if (!src[id])
            st = spqr_set_err(err, SPQR_E_FORMAT,
                              "%s: model.vocab: no piece has id %lld (ids must run from 0 to %lld without gaps)",
                              t->path, (long long)id, (long long)max_id);
    if (st == SPQR_OK && !spqr_tok_pieces_alloc(t, (int)(max_id + 1), bytes))
        st = spqr_set_err(err, SPQR_E_NOMEM, "%s: out of memory for %lld pieces", t->path, (long long)(max_id + 1));
    for (int64_t id = 0; id <= max_id && st == SPQR_OK; id++)
        if (!spqr_tok_piece_set(t, (int)id, src[id]->str, src[id]->len))
            st = spqr_set_err(err, SPQR_E_FORMAT, "%s: model.vocab: piece %lld contains a NUL character", t->path,
                              (long long)id);
    free(src);
    if (st != SPQR_OK) return st;
    int32_t da, db;
    if (!spqr_tok_index(t, &da, &db)) return spqr_set_err(err, SPQR_E_NOMEM, "%s: out of memory", t->path);
    if (da >= 0)
        return spqr_set_err(err, SPQR_E_FORMAT, "%s: model.vocab: %s has two ids, %d and %d", t->path,
                            show(t->blob + t->off[da], t->len[da], b1, sizeof b1), (int)da, (int)db);
    return SPQR_OK;
}

/* Marks added tokens' types and builds the raw and normalized matchers. */
static spqr_status parse_added(spqr_tokenizer *t, const spqr_json *added, spqr_error *err) {
    if (!added) return SPQR_OK;
    int32_t *raw = spqr_calloc_array(added->n, sizeof *raw), *norm = spqr_calloc_array(added->n, sizeof *norm);
    int n_raw = 0, n_norm = 0;
    spqr_status st = SPQR_OK;
    if (!raw || !norm) st = spqr_set_err(err, SPQR_E_NOMEM, "%s: out of memory", t->path);
    for (size_t i = 0; i < added->n && st == SPQR_OK; i++) {
        const spqr_json *a = &added->items[i];
        int64_t id = 0;
        spqr_json_i64(spqr_json_get(a, "id"), &id); /* validated by build_vocab */
        bool special, normalized, lstrip, rstrip, single;
        if (!get_bool(a, "special", false, &special) || !get_bool(a, "normalized", !special, &normalized) ||
            !get_bool(a, "lstrip", false, &lstrip) || !get_bool(a, "rstrip", false, &rstrip) ||
            !get_bool(a, "single_word", false, &single)) {
            st = spqr_set_err(err, SPQR_E_FORMAT, "%s: added_tokens[%zu]: a flag is not a boolean", t->path, i);
            break;
        }
        if (lstrip || rstrip || single) {
            char b[96];
            st = spqr_set_err(
                err, SPQR_E_UNSUPPORTED,
                "%s: added_tokens[%zu]: %s uses lstrip/rstrip/single_word matching, which is not supported", t->path, i,
                show(t->blob + t->off[id], t->len[id], b, sizeof b));
            break;
        }
        t->type[id] = special ? TOK_CONTROL : TOK_USER;
        if (normalized)
            norm[n_norm++] = (int32_t)id;
        else
            raw[n_raw++] = (int32_t)id;
    }
    if (st == SPQR_OK && (!spqr_tok_matcher_build(t, &t->raw_added, raw, n_raw) ||
                          !spqr_tok_matcher_build(t, &t->norm_added, norm, n_norm)))
        st = spqr_set_err(err, SPQR_E_NOMEM, "%s: out of memory", t->path);
    free(raw);
    free(norm);
    return st;
}

/* Splits merge i into its two pieces; false if it is neither "a b" nor ["a", "b"]. */
static bool merge_parts(const spqr_json *m, const char **a, size_t *alen, const char **b, size_t *blen) {
    if (m->type == SPQR_JSON_STRING) {
        const char *sp = memchr(m->str, ' ', m->len);
        if (!sp || sp == m->str || memchr(sp + 1, ' ', m->len - (size_t)(sp + 1 - m->str))) return false;
        *a = m->str;
        *alen = (size_t)(sp - m->str);
        *b = sp + 1;
        *blen = m->len - *alen - 1;
        return *blen > 0;
    }
    if (m->type == SPQR_JSON_ARRAY && m->n == 2 && m->items[0].type == SPQR_JSON_STRING &&
        m->items[1].type == SPQR_JSON_STRING) {
        *a = m->items[0].str;
        *alen = m->items[0].len;
        *b = m->items[1].str;
        *blen = m->items[1].len;
        return true;
    }
    return false;
}

/* Fills t->merges from model.merges: rank i is the priority; a, b and a+b must be pieces. */
static spqr_status parse_merges(spqr_tokenizer *t, const spqr_json *merges, spqr_error *err) {
    if (!merges || merges->type != SPQR_JSON_ARRAY)
        return spqr_set_err(err, SPQR_E_FORMAT, "%s: model.merges: missing or not an array", t->path);
    if (merges->n > INT32_MAX) return spqr_set_err(err, SPQR_E_FORMAT, "%s: model.merges: too many merges", t->path);
    if (!spqr_tok_pairs_init(&t->merges, merges->n))
        return spqr_set_err(err, SPQR_E_NOMEM, "%s: out of memory", t->path);
    char stack[256], *cat = stack, b1[96], b2[96];
    size_t cat_cap = sizeof stack;
    spqr_status st = SPQR_OK;
    for (size_t i = 0; i < merges->n && st == SPQR_OK; i++) {
        const char *a, *b;
        size_t alen, blen;
        if (!merge_parts(&merges->items[i], &a, &alen, &b, &blen)) {
            st = spqr_set_err(err, SPQR_E_FORMAT, "%s: model.merges[%zu]: not \"a b\" or [\"a\", \"b\"]", t->path, i);
            break;
        }
        int32_t ia = spqr_tok_lookup(t, a, alen), ib = spqr_tok_lookup(t, b, blen);
        if (ia < 0 || ib < 0) {
            st = spqr_set_err(err, SPQR_E_FORMAT, "%s: model.merges[%zu]: %s is not in the vocabulary", t->path, i,
                              ia < 0 ? show(a, alen, b1, sizeof b1) : show(b, blen, b1, sizeof b1));
            break;
        }
        if (alen + blen > cat_cap) {
            char *nc = malloc(alen + blen);
            if (!nc) {
                st = spqr_set_err(err, SPQR_E_NOMEM, "%s: out of memory", t->path);
                break;
            }
            if (cat != stack) free(cat);
            cat = nc;
            cat_cap = alen + blen;
        }
        memcpy(cat, a, alen);
        memcpy(cat + alen, b, blen);
        int32_t iab = spqr_tok_lookup(t, cat, alen + blen);
        if (iab < 0) {
            st = spqr_set_err(err, SPQR_E_FORMAT,
                              "%s: model.merges[%zu]: %s + %s: the merged piece is not in the vocabulary", t->path, i,
                              show(a, alen, b1, sizeof b1), show(b, blen, b2, sizeof b2));
            break;
        }
        spqr_tok_pairs_put(&t->merges, ia, ib, (int32_t)i, iab);
    }
    if (cat != stack) free(cat);
    if (st == SPQR_OK && !spqr_tok_rules_done(t)) st = spqr_set_err(err, SPQR_E_NOMEM, "%s: out of memory", t->path);
    return st;
}

/* The TemplateProcessing post-processor, at top level or inside a Sequence; NULL if none. */
static const spqr_json *find_template(const spqr_json *pp) {
    const char *type = spqr_json_str(spqr_json_get(pp, "type"));
    if (!type) return NULL;
    if (strcmp(type, "TemplateProcessing") == 0) return pp;
    const spqr_json *list = spqr_json_get(pp, "processors");
    if (strcmp(type, "Sequence") == 0 && list && list->type == SPQR_JSON_ARRAY)
        for (size_t i = 0; i < list->n; i++)
            if (spqr_json_str(spqr_json_get(&list->items[i], "type")) &&
                strcmp(spqr_json_str(spqr_json_get(&list->items[i], "type")), "TemplateProcessing") == 0)
                return &list->items[i];
    return NULL;
}

/* BOS: the special token that starts the single-sequence template, else "<s>"; EOS: "</s>". */
static spqr_status find_bos_eos(spqr_tokenizer *t, const spqr_json *root, spqr_error *err) {
    t->bos = spqr_tok_lookup(t, "<s>", 3);
    t->eos = spqr_tok_lookup(t, "</s>", 4);
    const spqr_json *tp = find_template(spqr_json_get(root, "post_processor"));
    const spqr_json *single = spqr_json_get(tp, "single");
    if (!single || single->type != SPQR_JSON_ARRAY || single->n == 0) return SPQR_OK;
    const spqr_json *name = spqr_json_get(spqr_json_get(&single->items[0], "SpecialToken"), "id");
    if (!spqr_json_str(name)) return SPQR_OK; /* the template adds no BOS */
    const spqr_json *ids = spqr_json_get(spqr_json_get(spqr_json_get(tp, "special_tokens"), name->str), "ids");
    int64_t id = -1;
    if (ids && ids->type == SPQR_JSON_ARRAY && ids->n >= 1) {
        if (!spqr_json_i64(&ids->items[0], &id) || id < 0 || id >= t->n_vocab) id = -2;
    } else {
        id = spqr_tok_lookup(t, name->str, name->len);
    }
    if (id < 0) {
        char b[96];
        return spqr_set_err(err, SPQR_E_FORMAT, "%s: post_processor: BOS token %s is not a valid id", t->path,
                            show(name->str, name->len, b, sizeof b));
    }
    t->bos = (int32_t)id;
    return SPQR_OK;
}

/* Everything after the JSON is parsed: model checks, pipeline, vocabulary, merges. */
static spqr_status load_root(spqr_tokenizer *t, const spqr_json *root, spqr_error *err) {
    const spqr_json *model = spqr_json_get(root, "model");
    if (!model || model->type != SPQR_JSON_OBJECT)
        return spqr_set_err(err, SPQR_E_UNSUPPORTED,
                            "%s: JSON without a \"model\" object: not a Hugging Face tokenizer.json", t->path);
    const spqr_json *type = spqr_json_get(model, "type");
    char b[96];
    if (type && !(spqr_json_str(type) && strcmp(type->str, "BPE") == 0))
        return spqr_set_err(err, SPQR_E_UNSUPPORTED, "%s: model.type: %s models are not supported (only BPE)", t->path,
                            spqr_json_str(type) ? show(type->str, type->len, b, sizeof b) : "non-string");
    const spqr_json *vocab = spqr_json_get(model, "vocab"), *merges = spqr_json_get(model, "merges");
    if (!vocab || vocab->type != SPQR_JSON_OBJECT)
        return spqr_set_err(err, type ? SPQR_E_FORMAT : SPQR_E_UNSUPPORTED,
                            "%s: model.vocab: missing or not an object (piece -> id)", t->path);
    if (!type && !merges)
        return spqr_set_err(err, SPQR_E_UNSUPPORTED, "%s: model has neither a \"type\" nor \"merges\": not a BPE model",
                            t->path);
    const spqr_json *added = spqr_json_get(root, "added_tokens");
    if (added && added->type == SPQR_JSON_NULL) added = NULL;
    if (added && added->type != SPQR_JSON_ARRAY)
        return spqr_set_err(err, SPQR_E_FORMAT, "%s: added_tokens: not an array", t->path);

    spqr_status st = check_pre_tokenizer(t, spqr_json_get(root, "pre_tokenizer"), 0, err);
    if (st == SPQR_OK) st = parse_normalizer(t, spqr_json_get(root, "normalizer"), 0, err);
    if (st == SPQR_OK) st = parse_model_options(t, model, err);
    if (st == SPQR_OK) st = build_vocab(t, vocab, added, err);
    if (st == SPQR_OK) st = parse_added(t, added, err);
    if (st != SPQR_OK) return st;
    spqr_tok_find_bytes(t);

    const spqr_json *unk = spqr_json_get(model, "unk_token");
    if (unk && unk->type != SPQR_JSON_NULL) {
        if (!spqr_json_str(unk)) return spqr_set_err(err, SPQR_E_FORMAT, "%s: model.unk_token: not a string", t->path);
        t->unk = spqr_tok_lookup(t, unk->str, unk->len);
        if (t->unk < 0)
            return spqr_set_err(err, SPQR_E_FORMAT, "%s: model.unk_token: %s is not in the vocabulary", t->path,
                                show(unk->str, unk->len, b, sizeof b));
    }
    st = parse_merges(t, merges, err);
    if (st == SPQR_OK) st = find_bos_eos(t, root, err);
    for (int i = 0; i < t->n_norm; i++)
        if (t->norm[i].kind == TOK_NORM_PREPEND) t->strip_after_bos = true;
    return st;
}

spqr_status spqr_tok_load_hf(spqr_tokenizer *t, const char *text, size_t len, spqr_error *err) {
    char msg[200];
    spqr_json *root = spqr_json_parse(text, len, msg, sizeof msg);
    if (!root) return spqr_set_err(err, SPQR_E_FORMAT, "%s: starts like JSON but is not valid JSON: %s", t->path, msg);
    spqr_status st =
        root->type == SPQR_JSON_OBJECT
            ? load_root(t, root, err)
            : spqr_set_err(err, SPQR_E_UNSUPPORTED, "%s: JSON that is not an object: not a tokenizer.json", t->path);
    spqr_json_free(root);
    return st;
}
