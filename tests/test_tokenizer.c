/* test_tokenizer.c — tokenizer loading, encoding against the reference ids, decoding, hostile files. */
#include "harness.h"
#include "spqr.h"
#include "core/core.h"
#include "core/json.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------- */
/* Helpers                                                                                        */
/* ---------------------------------------------------------------------------------------------- */

/* Loads a tokenizer, reporting a failure; NULL on error. */
static spqr_tokenizer *load_tok(const char *path) {
    spqr_tokenizer *t = NULL;
    spqr_error e;
    CHECK_OK(spqr_tokenizer_load(path, &t, &e), &e);
    return t;
}

/* Writes len bytes to a file of the test's temporary folder; returns its path (static buffer). */
static const char *write_tmp(const char *name, const void *data, size_t len) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", th_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    CHECKF(f != NULL, "cannot create %s", path);
    if (f) {
        if (len) CHECK(fwrite(data, 1, len, f) == len);
        fclose(f);
    }
    return path;
}

/* Reads a whole file into a heap buffer; reports a failure and returns NULL if it cannot. */
static char *read_all(const char *path, size_t *len) {
    char *data = NULL;
    spqr_error e;
    spqr_status s = spqr_read_file(path, 1 << 26, &data, len, &e);
    CHECKF(s == SPQR_OK, "%s", e.msg);
    return s == SPQR_OK ? data : NULL;
}

/* write_tmp for a NUL-free string. */
static const char *write_str(const char *name, const char *text) { return write_tmp(name, text, strlen(text)); }

/* write_tmp for a string literal that may contain NULs. */
#define write_lit(name, lit) write_tmp(name, lit, sizeof lit - 1)

/* Encodes text; on failure reports it and returns NULL with *n = 0. Release with spqr_free. */
static int32_t *enc(const spqr_tokenizer *t, const char *text, size_t len, int add_bos, size_t *n) {
    int32_t *ids = NULL;
    spqr_error e;
    *n = 0;
    CHECK_OK(spqr_tokenizer_encode(t, text, len, add_bos, &ids, n, &e), &e);
    return ids;
}

/* Concatenates the token texts of ids (as a streaming decoder would); heap string, *len bytes. */
static char *decode(const spqr_tokenizer *t, const int32_t *ids, size_t n, size_t *len) {
    size_t cap = 64, k = 0;
    char *out = malloc(cap);
    int prev = -1;
    for (size_t i = 0; out && i < n; i++) {
        size_t need = spqr_tokenizer_token_text(t, prev, ids[i], NULL, 0);
        if (k + need + 1 > cap) {
            while (k + need + 1 > cap) cap *= 2;
            char *o = realloc(out, cap);
            if (!o) {
                free(out);
                return NULL;
            }
            out = o;
        }
        size_t got = spqr_tokenizer_token_text(t, prev, ids[i], out + k, cap - k);
        CHECK(got == need);
        k += got;
        prev = ids[i];
    }
    if (out) out[k] = 0;
    *len = k;
    return out;
}

/* True if ids[0..n) equal the JSON integer array ref. */
static int ids_match(const int32_t *ids, size_t n, const spqr_json *ref) {
    if (!ref || ref->type != SPQR_JSON_ARRAY || ref->n != n) return 0;
    for (size_t i = 0; i < n; i++) {
        int64_t v;
        if (!spqr_json_i64(&ref->items[i], &v) || v != ids[i]) return 0;
    }
    return 1;
}

/* True if ids[0..n) equal want[0..nw). */
static int ids_eq(const int32_t *ids, size_t n, const int32_t *want, size_t nw) {
    return n == nw && (n == 0 || memcmp(ids, want, n * sizeof *ids) == 0);
}

/* Formats ids for a failure message (static buffer). */
static const char *fmt_ids(const int32_t *ids, size_t n) {
    static char buf[512];
    size_t k = 0;
    buf[0] = 0;
    for (size_t i = 0; i < n && k + 16 < sizeof buf; i++)
        k += (size_t)snprintf(buf + k, sizeof buf - k, "%s%d", i ? " " : "", ids[i]);
    return buf;
}

/* Parses the shared reference cases; NULL (after reporting) if unreadable. */
static spqr_json *read_cases(void) {
    size_t len;
    char msg[200];
    char *data = read_all(th_asset("models/evalmodel/reference/tokenizer_cases.json"), &len);
    if (!data) return NULL;
    spqr_json *j = spqr_json_parse(data, len, msg, sizeof msg);
    free(data);
    CHECKF(j && j->type == SPQR_JSON_ARRAY && j->n > 0, "tokenizer_cases.json: %s", j ? "not an array" : msg);
    return j;
}

/* Encodes every reference case with add_bos and compares with member `field`. */
static void check_cases(const char *tok_rel, const char *field) {
    NEED_SHARED();
    spqr_tokenizer *t = load_tok(th_asset(tok_rel));
    spqr_json *cases = read_cases();
    CHECK(t && cases);
    if (!t || !cases) {
        spqr_tokenizer_free(t);
        spqr_json_free(cases);
        return;
    }
    CHECK(cases->n == 314);
    size_t bad = 0;
    for (size_t i = 0; i < cases->n; i++) {
        const spqr_json *text = spqr_json_get(&cases->items[i], "text"), *ref = spqr_json_get(&cases->items[i], field);
        CHECKF(text && text->type == SPQR_JSON_STRING && ref, "case %zu is malformed", i);
        if (!text || text->type != SPQR_JSON_STRING || !ref) continue;
        size_t n;
        int32_t *ids = enc(t, text->str, text->len, 1, &n);
        if (!ids_match(ids, n, ref)) {
            bad++;
            th_fail(__FILE__, __LINE__, "case %zu (%.40s...): %s ids differ; got %s", i, text->str, field,
                    fmt_ids(ids, n));
        }
        spqr_free(ids);
    }
    CHECKF(bad == 0, "%zu of %zu cases differ", bad, cases->n);
    spqr_json_free(cases);
    spqr_tokenizer_free(t);
}

/* Loading `path` must fail with `code` (or any error if code < 0), a one-line message that starts
 * with the path and contains `needle` (if not NULL). */
static void expect_fail(const char *path, int code, const char *needle, const char *what) {
    spqr_tokenizer *t = (spqr_tokenizer *)&t; /* must be reset to NULL */
    spqr_error e;
    memset(&e, 0, sizeof e);
    spqr_status s = spqr_tokenizer_load(path, &t, &e);
    CHECKF(s != SPQR_OK, "%s: loaded but should have failed", what);
    CHECKF(t == NULL, "%s: *out not NULL after failure", what);
    if (s == SPQR_OK) {
        spqr_tokenizer_free(t);
        return;
    }
    CHECKF(e.code == s, "%s: err.code %d != status %d", what, (int)e.code, (int)s);
    CHECKF(code < 0 || (int)s == code, "%s: status %s, expected %s (%s)", what, spqr_status_str(s),
           spqr_status_str((spqr_status)code), e.msg);
    CHECKF(e.msg[0] && !strchr(e.msg, '\n'), "%s: empty or multi-line message", what);
    CHECKF(strncmp(e.msg, path, strlen(path)) == 0, "%s: message does not start with the file: %s", what, e.msg);
    CHECKF(!needle || strstr(e.msg, needle), "%s: message lacks \"%s\": %s", what, needle, e.msg);
}

/* ---------------------------------------------------------------------------------------------- */
/* Reference tokenizers                                                                           */
/* ---------------------------------------------------------------------------------------------- */

/* The evalmodel tokenizer.json: sizes, special ids, pieces, empty input. */
static void test_hf_basics(void) {
    NEED_SHARED();
    double t0 = spqr_now();
    spqr_tokenizer *t = load_tok(th_asset("models/evalmodel/tokenizer.json"));
    double dt = spqr_now() - t0;
    if (!t) return;
    CHECKF(dt < 5.0, "loading tokenizer.json took %.2f s", dt);
    CHECK(spqr_tokenizer_vocab_size(t) == 32000);
    CHECK(spqr_tokenizer_bos(t) == 1);
    CHECK(spqr_tokenizer_eos(t) == 2);
    CHECK(strcmp(spqr_tokenizer_piece(t, 0), "<unk>") == 0);
    CHECK(strcmp(spqr_tokenizer_piece(t, 1), "<s>") == 0);
    CHECK(strcmp(spqr_tokenizer_piece(t, 13), "<0x0A>") == 0);
    CHECK(strcmp(spqr_tokenizer_piece(t, 259), "\xE2\x96\x81\xE2\x96\x81") == 0);
    CHECK(spqr_tokenizer_piece(t, -1) == NULL);
    CHECK(spqr_tokenizer_piece(t, 32000) == NULL);
    size_t n;
    int32_t *ids = enc(t, "", 0, 1, &n);
    CHECK(n == 1 && ids && ids[0] == 1);
    spqr_free(ids);
    ids = enc(t, "", 0, 0, &n);
    CHECK(n == 0 && ids != NULL);
    spqr_free(ids);
    ids = enc(t, NULL, 0, 0, &n);
    CHECK(n == 0);
    spqr_free(ids);
    spqr_tokenizer_free(t);
}

/* All reference cases through tokenizer.json equal the HF tokenizers ids. */
static void test_hf_cases(void) { check_cases("models/evalmodel/tokenizer.json", "ids_hf"); }
/* All reference cases through the llama2.c tokenizer.bin equal the SentencePiece ids. */
static void test_bin_cases(void) { check_cases("models/llama2-tokenizer/tokenizer.bin", "ids_sp"); }

/* The Llama-2 tokenizer.bin: pieces converted back to "▁", controls normalised. */
static void test_bin_basics(void) {
    NEED_SHARED();
    spqr_tokenizer *t = load_tok(th_asset("models/llama2-tokenizer/tokenizer.bin"));
    if (!t) return;
    CHECK(spqr_tokenizer_vocab_size(t) == 32000);
    CHECK(spqr_tokenizer_bos(t) == 1 && spqr_tokenizer_eos(t) == 2);
    CHECK(strcmp(spqr_tokenizer_piece(t, 0), "<unk>") == 0);
    CHECK(strcmp(spqr_tokenizer_piece(t, 1), "<s>") == 0);
    CHECK(strcmp(spqr_tokenizer_piece(t, 2), "</s>") == 0);
    CHECK(strcmp(spqr_tokenizer_piece(t, 3), "<0x00>") == 0);
    CHECK(strcmp(spqr_tokenizer_piece(t, 259), "\xE2\x96\x81\xE2\x96\x81") == 0); /* stored as "  " */
    /* Special-token text is not parsed: "<s>" is spelled out. */
    size_t n;
    int32_t *ids = enc(t, "<s>", 3, 0, &n);
    CHECK(n == 3 && ids && ids[0] != 1 && ids[1] != 1 && ids[2] != 1);
    spqr_free(ids);
    spqr_tokenizer_free(t);
}

/* Both formats of the Llama-2 vocabulary must agree with the reference count on all of WikiText-2. */
static void test_wikitext_count(void) {
    NEED_SHARED();
    size_t len, ref_len;
    char *text = read_all(th_asset("text/wikitext2-test.txt"), &len);
    char *ref_text = read_all(th_asset("models/evalmodel/reference/reference_ppl.json"), &ref_len);
    if (!text || !ref_text) {
        free(text);
        free(ref_text);
        return;
    }
    char msg[200];
    spqr_json *ref = spqr_json_parse(ref_text, ref_len, msg, sizeof msg);
    free(ref_text);
    const spqr_json *w = spqr_json_get(ref, "wikitext2-test");
    int64_t n_hf = -1, n_sp = -1;
    CHECK(spqr_json_i64(spqr_json_get(w, "n_tokens_hf"), &n_hf) && n_hf == 341469);
    CHECK(spqr_json_i64(spqr_json_get(w, "n_tokens_sp"), &n_sp) && n_sp == 341469);
    spqr_json_free(ref);

    spqr_tokenizer *hf = load_tok(th_asset("models/evalmodel/tokenizer.json"));
    spqr_tokenizer *sp = load_tok(th_asset("models/llama2-tokenizer/tokenizer.bin"));
    if (hf && sp) {
        size_t a, b;
        double t0 = spqr_now();
        int32_t *ia = enc(hf, text, len, 1, &a);
        double dt = spqr_now() - t0;
        int32_t *ib = enc(sp, text, len, 1, &b);
        CHECKF((int64_t)a == n_hf, "tokenizer.json: %zu tokens, reference %lld", a, (long long)n_hf);
        CHECKF((int64_t)b == n_sp, "tokenizer.bin: %zu tokens, reference %lld", b, (long long)n_sp);
        CHECKF(ids_eq(ia, a, ib, b), "tokenizer.json and tokenizer.bin give different ids");
        CHECKF(dt < 10.0, "encoding WikiText-2 took %.2f s (quadratic?)", dt); /* ~0.2 s at -O2 */
        size_t dl;
        char *back = decode(hf, ia, a, &dl);
        CHECKF(back && dl == len && memcmp(back, text, len) == 0, "WikiText-2 does not round-trip");
        free(back);
        spqr_free(ia);
        spqr_free(ib);
    }
    spqr_tokenizer_free(hf);
    spqr_tokenizer_free(sp);
    free(text);
}

/* decode(encode(text)) == text, with and without BOS. */
static void check_roundtrip(const spqr_tokenizer *t, const char *what, const char *text, size_t len) {
    for (int bos = 0; bos < 2; bos++) {
        size_t n, dl;
        int32_t *ids = enc(t, text, len, bos, &n);
        char *back = decode(t, ids, n, &dl);
        CHECKF(back && dl == len && memcmp(back, text, len) == 0, "%s: \"%.40s\" (bos %d) decodes to \"%.40s\"", what,
               text, bos, back ? back : "(null)");
        free(back);
        spqr_free(ids);
    }
}

static const char *const extra_texts[] = {
    "Hello",
    " leading",
    "  two leading",
    "trailing ",
    "a  b   c",
    "\n\nnewlines first",
    "\ttab",
    "日本語のテキスト",
    "emoji 🦙🚀",
    "ümlaut café",
    "x\xC2\xA0nbsp",
    "mixed\r\nCRLF",
    "\xFF\xFE invalid \xE6\x94",
    "\xC0\xAF overlong",
    "\xED\xA0\x80 surrogate",
    "\xF4\x90\x80\x80 too big",
    "1234567890 3.14159",
    "<0x41> literal",
    "a",
};

/* Decoding the encoding gives the text back, for every case and some awkward strings. */
static void test_roundtrip(void) {
    NEED_SHARED();
    spqr_tokenizer *toks[2] = {load_tok(th_asset("models/evalmodel/tokenizer.json")),
                               load_tok(th_asset("models/llama2-tokenizer/tokenizer.bin"))};
    spqr_json *cases = read_cases();
    CHECK(cases && toks[0] && toks[1]);
    size_t checked = 0;
    for (int k = 0; k < 2 && cases; k++) {
        if (!toks[k]) continue;
        for (size_t i = 0; i < cases->n; i++) {
            const spqr_json *text = spqr_json_get(&cases->items[i], "text");
            /* special-token text does not survive the HF tokenizer; NUL-free text only */
            if (!text || (k == 0 && strstr(text->str, "<s>"))) continue;
            check_roundtrip(toks[k], k ? "tokenizer.bin" : "tokenizer.json", text->str, text->len);
            checked++;
        }
        for (size_t i = 0; i < sizeof extra_texts / sizeof *extra_texts; i++)
            check_roundtrip(toks[k], k ? "tokenizer.bin" : "tokenizer.json", extra_texts[i], strlen(extra_texts[i]));
        check_roundtrip(toks[k], "NUL byte", "a\0b", 3);
    }
    CHECKF(checked == 313 + 314, "%zu cases round-tripped", checked);
    /* Invalid UTF-8: each bad byte goes through byte fallback on its own. */
    size_t n;
    int32_t *ids = toks[0] ? enc(toks[0], "\xFF\xE6\x94", 3, 0, &n) : NULL;
    if (ids) {
        const int32_t want[] = {29871, 3 + 0xFF, 3 + 0xE6, 3 + 0x94};
        CHECKF(ids_eq(ids, n, want, 4), "invalid UTF-8 gives %s", fmt_ids(ids, n));
    }
    spqr_free(ids);
    spqr_json_free(cases);
    spqr_tokenizer_free(toks[0]);
    spqr_tokenizer_free(toks[1]);
}

/* Streaming decode of single tokens, with snprintf-like truncation. */
static void test_token_text(void) {
    NEED_SHARED();
    spqr_tokenizer *t = load_tok(th_asset("models/evalmodel/tokenizer.json"));
    if (!t) return;
    char buf[64];
    /* 15043 = "▁Hello", 29892 = ",", 13 = "<0x0A>", 259 = "▁▁" */
    CHECK(spqr_tokenizer_token_text(t, 1, 15043, buf, sizeof buf) == 5 && strcmp(buf, "Hello") == 0);
    CHECK(spqr_tokenizer_token_text(t, -1, 15043, buf, sizeof buf) == 5 && strcmp(buf, "Hello") == 0);
    CHECK(spqr_tokenizer_token_text(t, 29892, 15043, buf, sizeof buf) == 6 && strcmp(buf, " Hello") == 0);
    CHECK(spqr_tokenizer_token_text(t, 1, 259, buf, sizeof buf) == 1 && strcmp(buf, " ") == 0);
    CHECK(spqr_tokenizer_token_text(t, 5, 259, buf, sizeof buf) == 2 && strcmp(buf, "  ") == 0);
    CHECK(spqr_tokenizer_token_text(t, 5, 13, buf, sizeof buf) == 1 && strcmp(buf, "\n") == 0);
    CHECK(spqr_tokenizer_token_text(t, 1, 13, buf, sizeof buf) == 1 && strcmp(buf, "\n") == 0);
    CHECK(spqr_tokenizer_token_text(t, -1, 3, buf, sizeof buf) == 1 && buf[0] == 0); /* <0x00> */
    CHECK(spqr_tokenizer_token_text(t, -1, 1, buf, sizeof buf) == 0 && buf[0] == 0); /* <s> */
    CHECK(spqr_tokenizer_token_text(t, 5, 2, buf, sizeof buf) == 0 && buf[0] == 0);  /* </s> */
    CHECK(spqr_tokenizer_token_text(t, 5, 0, buf, sizeof buf) == 0 && buf[0] == 0);  /* <unk> */
    /* snprintf-like truncation and size queries */
    CHECK(spqr_tokenizer_token_text(t, 5, 15043, NULL, 0) == 6);
    memset(buf, 'x', sizeof buf);
    CHECK(spqr_tokenizer_token_text(t, 5, 15043, buf, 4) == 6 && strcmp(buf, " He") == 0 && buf[4] == 'x');
    CHECK(spqr_tokenizer_token_text(t, 5, 15043, buf, 1) == 6 && buf[0] == 0);
    buf[0] = 'x';
    CHECK(spqr_tokenizer_token_text(t, 5, 32000, buf, sizeof buf) == 0 && buf[0] == 0);
    CHECK(spqr_tokenizer_token_text(t, 5, -3, buf, sizeof buf) == 0);
    CHECK(spqr_tokenizer_token_text(NULL, 5, 3, buf, sizeof buf) == 0);
    spqr_tokenizer_free(t);
}

/* The stories260K tokenizer: known ids worked out by hand from the scores. */
static void test_tok512(void) {
    NEED_SHARED();
    spqr_tokenizer *t = load_tok(th_asset("models/stories260K/tok512.bin"));
    if (!t) return;
    CHECK(spqr_tokenizer_vocab_size(t) == 512);
    CHECK(spqr_tokenizer_bos(t) == 1 && spqr_tokenizer_eos(t) == 2);
    /* Worked out independently from the piece scores: ▁Once ▁upon ▁a ▁time. */
    size_t n;
    int32_t *ids = enc(t, "Once upon a time", 16, 1, &n);
    const int32_t want[] = {1, 403, 407, 261, 378};
    CHECKF(ids_eq(ids, n, want, 5), "\"Once upon a time\" gives %s", fmt_ids(ids, n));
    spqr_free(ids);
    /* "Hello world! 🦙": the emoji is not in this vocabulary and falls back to bytes */
    const char *h = "Hello world! \xF0\x9F\xA6\x99";
    ids = enc(t, h, strlen(h), 1, &n);
    const int32_t want2[] = {1, 346, 306, 414, 263, 304, 341, 443, 410, 243, 162, 169, 156};
    CHECKF(ids_eq(ids, n, want2, 13), "\"%s\" gives %s", h, fmt_ids(ids, n));
    spqr_free(ids);
    check_roundtrip(t, "tok512", "Once upon a time, there was a little girl named Lily.", 53);
    for (size_t i = 0; i < sizeof extra_texts / sizeof *extra_texts; i++)
        check_roundtrip(t, "tok512", extra_texts[i], strlen(extra_texts[i]));
    spqr_tokenizer_free(t);
}

/* NULL arguments and unreadable paths. */
static void test_api_args(void) {
    spqr_error e;
    spqr_tokenizer *t = (spqr_tokenizer *)&e;
    CHECK(spqr_tokenizer_load(NULL, &t, &e) == SPQR_E_ARG && t == NULL && e.msg[0]);
    CHECK(spqr_tokenizer_load("x", NULL, &e) == SPQR_E_ARG);
    int32_t *ids = (int32_t *)&e;
    size_t n = 7;
    CHECK(spqr_tokenizer_encode(NULL, "a", 1, 1, &ids, &n, &e) == SPQR_E_ARG && ids == NULL && n == 0);
    CHECK(spqr_tokenizer_vocab_size(NULL) == 0 && spqr_tokenizer_bos(NULL) == -1 && spqr_tokenizer_eos(NULL) == -1);
    CHECK(spqr_tokenizer_piece(NULL, 0) == NULL);
    spqr_tokenizer_free(NULL);
    expect_fail("/nonexistent/dir/tokenizer.json", SPQR_E_IO, NULL, "missing file");
    expect_fail(th_tmpdir(), SPQR_E_IO, NULL, "directory");
}

/* ---------------------------------------------------------------------------------------------- */
/* Small hand-made tokenizer.json files                                                           */
/* ---------------------------------------------------------------------------------------------- */

/* The parts of a tiny SentencePiece-style tokenizer.json; NULL fields take the defaults below. */
typedef struct tiny_spec {
    const char *added, *normalizer, *pre, *post, *model_extra, *vocab, *merges;
} tiny_spec;

#define TINY_VOCAB                                                                                                     \
    "\"<unk>\":0,\"<s>\":1,\"</s>\":2,\"\u2581\":3,\"a\":4,\"b\":5,\"\u2581a\":6,\"ab\":7,\"\u2581ab\":8,"             \
    "\"<0xC3>\":9,\"<0xA9>\":10,\"\u2581b\":11"
#define TINY_ADDED                                                                                                     \
    "{\"id\":0,\"content\":\"<unk>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"                         \
    "\"normalized\":false,\"special\":true},"                                                                          \
    "{\"id\":1,\"content\":\"<s>\",\"normalized\":false,\"special\":true},"                                            \
    "{\"id\":2,\"content\":\"</s>\",\"normalized\":false,\"special\":true}"
#define TINY_NORM                                                                                                      \
    "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\u2581\"},"                           \
    "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\u2581\"}]}"
#define TINY_POST                                                                                                      \
    "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"                  \
    "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[1],"            \
    "\"tokens\":[\"<s>\"]}}}"

/* Writes the tokenizer.json described by s (with defaults) and returns its path. */
static const char *tiny_json(const char *name, const tiny_spec *s) {
    static char buf[8192];
    snprintf(buf, sizeof buf,
             "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[%s],\"normalizer\":%s,"
             "\"pre_tokenizer\":%s,\"post_processor\":%s,\"decoder\":null,\"model\":{\"type\":\"BPE\","
             "\"dropout\":null,\"unk_token\":\"<unk>\",\"continuing_subword_prefix\":null,"
             "\"end_of_word_suffix\":null,%s\"vocab\":{%s},\"merges\":[%s]}}",
             s->added ? s->added : TINY_ADDED, s->normalizer ? s->normalizer : TINY_NORM, s->pre ? s->pre : "null",
             s->post ? s->post : TINY_POST,
             s->model_extra ? s->model_extra : "\"fuse_unk\":true,\"byte_fallback\":true,",
             s->vocab ? s->vocab : TINY_VOCAB, s->merges ? s->merges : "\"\u2581 a\",\"a b\",\"\u2581a b\"");
    return write_tmp(name, buf, strlen(buf));
}

/* Loads a tiny tokenizer and checks that `text` encodes to want[0..nw) (with BOS if add_bos). */
static void tiny_expect(const char *what, const tiny_spec *s, const char *text, int add_bos, const int32_t *want,
                        size_t nw) {
    spqr_tokenizer *t = load_tok(tiny_json("tiny.json", s));
    if (!t) {
        th_fail(__FILE__, __LINE__, "%s: does not load", what);
        return;
    }
    size_t n;
    int32_t *ids = enc(t, text, strlen(text), add_bos, &n);
    CHECKF(ids_eq(ids, n, want, nw), "%s: \"%s\" gives [%s]", what, text, fmt_ids(ids, n));
    spqr_free(ids);
    spqr_tokenizer_free(t);
}

#define EXPECT(what, spec, text, bos, ...)                                                                             \
    do {                                                                                                               \
        const int32_t w_[] = {__VA_ARGS__};                                                                            \
        tiny_expect(what, spec, text, bos, w_, sizeof w_ / sizeof *w_);                                                \
    } while (0)

/* Hand-made tokenizer.json files exercise each encoding rule on its own. */
static void test_tiny_json(void) {
    const tiny_spec def = {0};
    EXPECT("basic", &def, "ab ab", 1, 1, 8, 8);
    EXPECT("no bos", &def, "ab ab", 0, 8, 8);
    EXPECT("ranks", &def, "aab", 0, 6, 7);
    EXPECT("empty", &def, "", 1, 1);
    EXPECT("byte fallback", &def, "\xC3\xA9", 0, 3, 9, 10);
    EXPECT("unk fused", &def, "xyz", 0, 3, 0);
    EXPECT("added tokens", &def, "<s></s>a<unk>", 0, 1, 2, 6, 0);
    EXPECT("added tokens split segments", &def, "a</s> b", 1, 1, 6, 2, 3, 3, 5); /* " b" -> "▁▁b" */
    tiny_spec nofuse = {.model_extra = "\"fuse_unk\":false,\"byte_fallback\":true,"};
    EXPECT("unk not fused", &nofuse, "xyz", 0, 3, 0, 0, 0);
    tiny_spec nobf = {.model_extra = "\"fuse_unk\":false,\"byte_fallback\":false,"};
    EXPECT("no byte fallback", &nobf, "\xC3\xA9", 0, 3, 0);
    tiny_spec pairs = {.merges = "[\"\u2581\",\"a\"],[\"a\",\"b\"],[\"\u2581a\",\"b\"]"};
    EXPECT("merges as pairs", &pairs, "ab ab", 1, 1, 8, 8);
    tiny_spec order = {.merges = "\"a b\",\"\u2581 a\",\"\u2581a b\""};
    EXPECT("merge order", &order, "ab", 0, 3, 7); /* "a b" first: ▁ + ab, and no rule "▁ ab" */
    tiny_spec ignore = {.model_extra = "\"ignore_merges\":true,\"byte_fallback\":true,"};
    EXPECT("ignore_merges", &ignore, "b", 0, 11);
    EXPECT("without ignore_merges", &def, "b", 0, 3, 5);
    /* A normalized added token is matched after the normalizer: "a b" -> "▁a▁b" -> "▁a", "▁b". */
    tiny_spec normadd = {.added =
                             TINY_ADDED ",{\"id\":11,\"content\":\"\u2581b\",\"normalized\":true,\"special\":false}"};
    EXPECT("normalized added token", &normadd, "a b", 0, 6, 11);
    /* Added tokens: leftmost match first, then the longest one at that position. */
    tiny_spec longest = {.added = TINY_ADDED ",{\"id\":12,\"content\":\"<x>\",\"normalized\":false,\"special\":true},"
                                             "{\"id\":13,\"content\":\"<x>a\",\"normalized\":false,\"special\":true},"
                                             "{\"id\":14,\"content\":\"b<x>\",\"normalized\":false,\"special\":true}"};
    EXPECT("longest added token", &longest, "<x>a<x>b", 0, 13, 12, 3, 5);
    EXPECT("leftmost added token", &longest, "b<x>a", 0, 14, 6);
    /* Ties between equal ranks go to the leftmost pair. */
    tiny_spec tie = {.added = "",
                     .normalizer = "null",
                     .post = "null",
                     .vocab = "\"<unk>\":0,\"a\":1,\"aa\":2",
                     .merges = "\"a a\""};
    EXPECT("leftmost tie", &tie, "aaa", 0, 2, 1);
    EXPECT("leftmost tie 4", &tie, "aaaa", 0, 2, 2);
    tiny_spec plain = {.normalizer = "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\u2581\"}"};
    EXPECT("Replace only", &plain, "a b", 0, 4, 3, 5); /* a ▁ b: no rule applies */
    tiny_spec seqpre = {.pre = "{\"type\":\"Sequence\",\"pretokenizers\":[]}"};
    EXPECT("empty pre-tokenizer sequence", &seqpre, "ab", 0, 8);

    /* BOS from the template, else "<s>"; EOS "</s>" */
    tiny_spec nopost = {.post = "null"};
    EXPECT("no post_processor", &nopost, "a", 1, 1, 6);
    tiny_spec eosbos = {.post = "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"</s>\"}}]}"};
    EXPECT("template BOS by name", &eosbos, "a", 1, 2, 6);
    tiny_spec nobos = {.added = "",
                       .vocab = "\"<unk>\":0,\"\u2581\":1,\"a\":2,\"\u2581a\":3",
                       .merges = "\"\u2581 a\"",
                       .post = "null"};
    EXPECT("no BOS in vocabulary", &nobos, "a", 1, 3);
    spqr_tokenizer *t = load_tok(tiny_json("nobos.json", &nobos));
    if (t) {
        CHECK(spqr_tokenizer_bos(t) == -1 && spqr_tokenizer_eos(t) == -1 && spqr_tokenizer_vocab_size(t) == 4);
        char buf[16];
        CHECK(spqr_tokenizer_token_text(t, -1, 3, buf, sizeof buf) == 1 && strcmp(buf, "a") == 0);
        spqr_tokenizer_free(t);
    }
    /* added tokens beyond the model vocabulary extend it; non-special ones print verbatim */
    tiny_spec extra = {.added = TINY_ADDED ",{\"id\":12,\"content\":\"<pad>\",\"normalized\":false,\"special\":false}"};
    t = load_tok(tiny_json("extra.json", &extra));
    if (t) {
        CHECK(spqr_tokenizer_vocab_size(t) == 13);
        char buf[16];
        CHECK(spqr_tokenizer_token_text(t, 1, 12, buf, sizeof buf) == 5 && strcmp(buf, "<pad>") == 0);
        size_t n;
        int32_t *ids = enc(t, "a<pad>", 6, 0, &n);
        const int32_t want[] = {6, 12};
        CHECK(ids_eq(ids, n, want, 2));
        spqr_free(ids);
        spqr_tokenizer_free(t);
    }
}

/* Malformed or unsupported tokenizer.json files fail cleanly with a useful message. */
static void test_hostile_json(void) {
    const char *p;
    p = write_str("bad1.json", "{ not json");
    expect_fail(p, SPQR_E_FORMAT, "JSON", "not JSON");
    p = write_str("bad2.json", "[1, 2]");
    expect_fail(p, SPQR_E_UNSUPPORTED, NULL, "array");
    p = write_str("bad3.json", "{\"a\": 1}");
    expect_fail(p, SPQR_E_UNSUPPORTED, "model", "no model");
    p = write_str("bad4.json", "{\"model\": 5}");
    expect_fail(p, SPQR_E_UNSUPPORTED, "model", "model not an object");
    p = write_str("bad5.json", "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}");
    expect_fail(p, SPQR_E_UNSUPPORTED, "Unigram", "Unigram");
    p = write_str("bad6.json", "  \n");
    expect_fail(p, -1, NULL, "whitespace only");

    struct {
        const char *what;
        tiny_spec s;
        int code;
        const char *needle;
    } cases[] = {
        {"duplicate id", {.vocab = TINY_VOCAB ",\"c\":4"}, SPQR_E_FORMAT, "id 4"},
        {"id out of range", {.vocab = TINY_VOCAB ",\"c\":99"}, SPQR_E_FORMAT, "\"c\""},
        {"negative id", {.vocab = TINY_VOCAB ",\"c\":-1"}, SPQR_E_FORMAT, "\"c\""},
        {"fractional id", {.vocab = TINY_VOCAB ",\"c\":12.5"}, SPQR_E_FORMAT, "\"c\""},
        {"huge id", {.vocab = TINY_VOCAB ",\"c\":99999999999999999999999"}, SPQR_E_FORMAT, "\"c\""},
        {"string id", {.vocab = TINY_VOCAB ",\"c\":\"12\""}, SPQR_E_FORMAT, "\"c\""},
        {"hole", {.vocab = TINY_VOCAB ",\"c\":13"}, SPQR_E_FORMAT, "id 12"},
        {"repeated piece", {.vocab = TINY_VOCAB ",\"a\":12"}, SPQR_E_FORMAT, "\"a\""},
        {"NUL in piece", {.vocab = TINY_VOCAB ",\"x\\u0000y\":12"}, SPQR_E_FORMAT, "NUL"},
        {"empty vocab", {.vocab = "", .added = "", .merges = ""}, SPQR_E_FORMAT, "empty"},
        {"merge of unknown piece", {.merges = "\"a z\""}, SPQR_E_FORMAT, "\"z\""},
        {"merged piece missing", {.merges = "\"b a\""}, SPQR_E_FORMAT, "merges[0]"},
        {"merge without space", {.merges = "\"ab\""}, SPQR_E_FORMAT, "merges[0]"},
        {"merge with two spaces", {.merges = "\"a b\",\"a b c\""}, SPQR_E_FORMAT, "merges[1]"},
        {"merge pair of one", {.merges = "[\"a\"]"}, SPQR_E_FORMAT, "merges[0]"},
        {"merge number", {.merges = "5"}, SPQR_E_FORMAT, "merges[0]"},
        {"byte-level",
         {.pre = "{\"type\":\"ByteLevel\",\"add_prefix_space\":false}"},
         SPQR_E_UNSUPPORTED,
         "byte-level"},
        {"byte-level in sequence",
         {.pre = "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\"},{\"type\":\"ByteLevel\"}]}"},
         SPQR_E_UNSUPPORTED,
         "Split"},
        {"metaspace", {.pre = "{\"type\":\"Metaspace\",\"replacement\":\"\u2581\"}"}, SPQR_E_UNSUPPORTED, "Metaspace"},
        {"pre-tokenizer not an object", {.pre = "7"}, SPQR_E_FORMAT, "pre_tokenizer"},
        {"NFKC normalizer", {.normalizer = "{\"type\":\"NFKC\"}"}, SPQR_E_UNSUPPORTED, "NFKC"},
        {"NFC in sequence",
         {.normalizer = "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"}]}"},
         SPQR_E_UNSUPPORTED,
         "NFC"},
        {"regex replace",
         {.normalizer = "{\"type\":\"Replace\",\"pattern\":{\"Regex\":\" +\"},\"content\":\"\u2581\"}"},
         SPQR_E_UNSUPPORTED,
         "Regex"},
        {"empty replace",
         {.normalizer = "{\"type\":\"Replace\",\"pattern\":{\"String\":\"\"},\"content\":\"x\"}"},
         SPQR_E_FORMAT,
         "empty"},
        {"normalizer without type", {.normalizer = "{}"}, SPQR_E_FORMAT, "normalizer"},
        {"deep normalizer",
         {.normalizer = "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Sequence\",\"normalizers\":[{\"type\":"
                        "\"Sequence\",\"normalizers\":[{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Sequence\","
                        "\"normalizers\":[{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Sequence\","
                        "\"normalizers\":[{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Sequence\","
                        "\"normalizers\":[]}]}]}]}]}]}]}]}]}"},
         SPQR_E_FORMAT,
         "deep"},
        {"unknown unk", {.model_extra = "\"unk_token\":\"<nope>\","}, SPQR_E_FORMAT, "<nope>"},
        {"added content differs", {.added = "{\"id\":1,\"content\":\"<S>\",\"special\":true}"}, SPQR_E_FORMAT, "<S>"},
        {"added id out of range",
         {.added = "{\"id\":100,\"content\":\"<x>\",\"special\":true}"},
         SPQR_E_FORMAT,
         "added_tokens[0]"},
        {"added empty content",
         {.added = "{\"id\":12,\"content\":\"\",\"special\":true}"},
         SPQR_E_FORMAT,
         "added_tokens[0]"},
        {"added lstrip",
         {.added = "{\"id\":12,\"content\":\"<m>\",\"lstrip\":true,\"special\":true}"},
         SPQR_E_UNSUPPORTED,
         "<m>"},
        {"added flag type", {.added = "{\"id\":12,\"content\":\"<m>\",\"special\":1}"}, SPQR_E_FORMAT, "flag"},
        {"added duplicate content",
         {.added = "{\"id\":12,\"content\":\"ab\",\"special\":true}"},
         SPQR_E_FORMAT,
         "\"ab\""},
        {"dropout", {.model_extra = "\"dropout\":0.1,"}, SPQR_E_UNSUPPORTED, "dropout"},
        {"subword prefix", {.model_extra = "\"continuing_subword_prefix\":\"##\","}, SPQR_E_UNSUPPORTED, "prefix"},
        {"byte_fallback type", {.model_extra = "\"byte_fallback\":\"yes\","}, SPQR_E_FORMAT, "byte_fallback"},
        {"bad BOS template",
         {.post = "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\"}}],"
                  "\"special_tokens\":{\"<s>\":{\"ids\":[99]}}}"},
         SPQR_E_FORMAT,
         "<s>"},
        {"unknown BOS template",
         {.post = "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<bos>\"}}]}"},
         SPQR_E_FORMAT,
         "<bos>"},
        {"vocab not an object", {.vocab = "x", .model_extra = "\"vocab\":[],"}, SPQR_E_FORMAT, "vocab"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        if (strcmp(cases[i].what, "vocab not an object") == 0) continue; /* handled below */
        expect_fail(tiny_json("case.json", &cases[i].s), cases[i].code, cases[i].needle, cases[i].what);
    }
    p = write_str("novocab.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":[],\"merges\":[]}}");
    expect_fail(p, SPQR_E_FORMAT, "vocab", "vocab not an object");
    p = write_str("nomerges.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}}}");
    expect_fail(p, SPQR_E_FORMAT, "merges", "merges missing");

    /* Every truncation of a valid file fails cleanly; the whole file loads. */
    const tiny_spec def = {0};
    const char *full = tiny_json("full.json", &def);
    size_t len;
    char *data = read_all(full, &len);
    if (!data) return;
    spqr_tokenizer *t = load_tok(full);
    spqr_tokenizer_free(t);
    for (size_t cut = 0; cut < len; cut++) {
        char what[64];
        snprintf(what, sizeof what, "tokenizer.json cut at %zu", cut);
        expect_fail(write_tmp("cut.json", data, cut), -1, NULL, what);
    }
    free(data);
}

/* ---------------------------------------------------------------------------------------------- */
/* llama2.c tokenizer.bin files                                                                   */
/* ---------------------------------------------------------------------------------------------- */

/* A tokenizer.bin being built in memory. */
typedef struct bin_buf {
    unsigned char d[16384];
    size_t n;
} bin_buf;

/* Appends raw bytes. */
static void bin_raw(bin_buf *b, const void *p, size_t n) {
    if (b->n + n > sizeof b->d) return;
    memcpy(b->d + b->n, p, n);
    b->n += n;
}

/* Appends one record: score, length, bytes. */
static void bin_piece(bin_buf *b, float score, const char *s) {
    int32_t len = (int32_t)strlen(s);
    bin_raw(b, &score, 4);
    bin_raw(b, &len, 4);
    bin_raw(b, s, (size_t)len);
}

/* A small llama2.c vocabulary: controls, all 256 bytes, then normal pieces with scores. */
static void bin_tiny(bin_buf *b, size_t *record_end, size_t *n_records) {
    int32_t max_len = 8;
    b->n = 0;
    bin_raw(b, &max_len, 4);
    size_t k = 0;
    bin_piece(b, 0, "<unk>");
    record_end[k++] = b->n;
    bin_piece(b, 0, "\n<s>\n");
    record_end[k++] = b->n;
    bin_piece(b, 0, "\n</s>\n");
    record_end[k++] = b->n;
    for (int i = 0; i < 256; i++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", i);
        bin_piece(b, 0, s);
        record_end[k++] = b->n;
    }
    /* 259 "▁a" (-1), 260 "bc" (-2), 261 "ab" (-2), 262 "▁ab" (-3), 263 "▁" (-10), 264.. "a" "b" "c" */
    static const struct {
        float s;
        const char *p;
    } normal[] = {
        {-1, " a"}, {-2, "bc"}, {-2, "ab"}, {-3, " ab"}, {-10, " "}, {-20, "a"}, {-21, "b"}, {-22, "c"},
    };
    for (size_t i = 0; i < sizeof normal / sizeof *normal; i++) {
        bin_piece(b, normal[i].s, normal[i].p);
        record_end[k++] = b->n;
    }
    *n_records = k;
}

/* A hand-made tokenizer.bin: score-ranked merges, ties, byte fallback. */
static void test_tiny_bin(void) {
    bin_buf b;
    size_t ends[300], nrec;
    bin_tiny(&b, ends, &nrec);
    spqr_tokenizer *t = load_tok(write_tmp("tiny.bin", b.d, b.n));
    if (!t) return;
    CHECK(spqr_tokenizer_vocab_size(t) == 267);
    CHECK(spqr_tokenizer_bos(t) == 1 && spqr_tokenizer_eos(t) == 2);
    CHECK(strcmp(spqr_tokenizer_piece(t, 1), "<s>") == 0);
    CHECK(strcmp(spqr_tokenizer_piece(t, 259), "\xE2\x96\x81"
                                               "a") == 0);
    size_t n;
    int32_t *ids = enc(t, "ab ab", 5, 1, &n);
    const int32_t w1[] = {1, 262, 262};
    CHECKF(ids_eq(ids, n, w1, 3), "\"ab ab\" gives %s", fmt_ids(ids, n));
    spqr_free(ids);
    /* "▁abc": (▁,a) first, then "bc" (-2) beats "▁a"+"b" (-3); there is no "▁abc" */
    ids = enc(t, "abc", 3, 0, &n);
    const int32_t w2[] = {259, 260};
    CHECKF(ids_eq(ids, n, w2, 2), "\"abc\" gives %s", fmt_ids(ids, n));
    spqr_free(ids);
    /* Equal scores: "bc" (id 260) and "ab" (id 261) are both -2; SentencePiece takes the leftmost
     * pair, not the lower id. U+200A is not in the vocabulary: byte fallback. */
    ids = enc(t,
              "bc"
              "\xE2\x80\x8A"
              "abc",
              8, 0, &n);
    const int32_t w3[] = {263, 260, 3 + 0xE2, 3 + 0x80, 3 + 0x8A, 261, 266};
    CHECKF(ids_eq(ids, n, w3, 7), "tie gives %s", fmt_ids(ids, n));
    spqr_free(ids);
    ids = enc(t, "<s>", 3, 0, &n); /* not parsed as a special token */
    CHECK(n > 1 && ids[0] != 1);
    spqr_free(ids);
    check_roundtrip(t, "tiny.bin", "ab abc cab", 10);
    check_roundtrip(t, "tiny.bin", " x\xFFy\n", 5);
    spqr_tokenizer_free(t);
}

/* Truncated and corrupted tokenizer.bin files, and other formats, fail cleanly. */
static void test_hostile_bin(void) {
    bin_buf b;
    size_t ends[300], nrec;
    bin_tiny(&b, ends, &nrec);
    /* Truncation: a cut at a record boundary is a smaller valid vocabulary, anything else an error. */
    size_t next_end = 0;
    for (size_t cut = 0; cut < b.n; cut++) {
        while (next_end < nrec && ends[next_end] < cut) next_end++;
        int boundary = next_end < nrec && ends[next_end] == cut;
        const char *p = write_tmp("cut.bin", b.d, cut);
        if (boundary) {
            spqr_tokenizer *t = load_tok(p);
            CHECKF(t && spqr_tokenizer_vocab_size(t) == (int)next_end + 1, "cut at %zu: %d pieces", cut,
                   spqr_tokenizer_vocab_size(t));
            spqr_tokenizer_free(t);
        } else {
            char what[64];
            snprintf(what, sizeof what, "tokenizer.bin cut at %zu", cut);
            expect_fail(p, cut < 4 ? -1 : SPQR_E_FORMAT, NULL, what);
        }
    }

    /* Corrupt single fields of the record of piece 3 ("<0x00>", at offset ends[2]). */
    size_t at = ends[2];
    struct {
        const char *what;
        size_t off;
        uint32_t value;
        int code;
        const char *needle;
    } pokes[] = {
        {"negative length", at + 4, 0xFFFFFFFFu, SPQR_E_FORMAT, "length -1"},
        {"huge length", at + 4, 0x7FFFFFFFu, SPQR_E_FORMAT, "length"},
        {"length over max_token_length", at + 4, 9, SPQR_E_FORMAT, "max_token_length"},
        {"zero length", at + 4, 0, SPQR_E_FORMAT, "length 0"},
        {"NaN score", at, 0x7FC00000u, SPQR_E_FORMAT, "NaN"},
        {"infinite score", at, 0x7F800000u, SPQR_E_FORMAT, "infinite"},
        {"-inf score", at, 0xFF800000u, SPQR_E_FORMAT, "infinite"},
        {"NUL in piece", at + 8, 0x78303c00u, SPQR_E_FORMAT, "NUL"},
        {"max_token_length 0", 0, 0, SPQR_E_UNSUPPORTED, "max_token_length"},
        {"max_token_length -5", 0, (uint32_t)-5, SPQR_E_UNSUPPORTED, "-5"},
        {"max_token_length 1<<20", 0, 1u << 20, SPQR_E_UNSUPPORTED, "1048576"},
        {"max_token_length too small", 0, 2, SPQR_E_FORMAT, "max_token_length"},
    };
    for (size_t i = 0; i < sizeof pokes / sizeof *pokes; i++) {
        bin_buf c = b;
        memcpy(c.d + pokes[i].off, &pokes[i].value, 4);
        expect_fail(write_tmp("poke.bin", c.d, c.n), pokes[i].code, pokes[i].needle, pokes[i].what);
    }
    int32_t hdr = 8;
    expect_fail(write_tmp("hdr.bin", &hdr, 4), SPQR_E_FORMAT, "no pieces", "header only");
    expect_fail(write_str("empty.bin", ""), SPQR_E_FORMAT, "empty", "empty file");
    expect_fail(write_str("short.bin", "ab"), SPQR_E_UNSUPPORTED, NULL, "2 bytes");

    /* Other formats are named. */
    expect_fail(write_lit("x.gguf", "GGUF\3\0\0\0\0\0\0\0"), SPQR_E_UNSUPPORTED, "GGUF", "GGUF");
    expect_fail(write_lit("x.pt", "\x80\x02}q\0"), SPQR_E_UNSUPPORTED, "pickle", "pickle");
    expect_fail(write_lit("x.zip", "PK\3\4\0\0\0\0"), SPQR_E_UNSUPPORTED, "zip", "zip");
    expect_fail(write_lit("x.model", "\x0a\x0e\x0a\x05<unk>\x15\0\0\0\0\x18\x02"), SPQR_E_UNSUPPORTED, "SentencePiece",
                "protobuf");
    expect_fail(write_str("x.txt", "hello world\n"), SPQR_E_UNSUPPORTED, "not a recognised tokenizer", "text");
    expect_fail(write_lit("x.safetensors", "\x10\0\0\0\0\0\0\0{\"a\":{}}      "), SPQR_E_UNSUPPORTED, "safetensors",
                "safetensors");
    int32_t ckpt[64] = {64, 172, 5, 8, 4, -512, 512};
    for (int i = 7; i < 64; i++) {
        float f = 0.01f * (float)i;
        memcpy(&ckpt[i], &f, 4);
    }
    expect_fail(write_tmp("model.bin", ckpt, sizeof ckpt), SPQR_E_UNSUPPORTED, "checkpoint", "llama2.c checkpoint");
    /* headers that start like other formats' magic but are valid tokenizer.bin files */
    static const int32_t odd_headers[] = {'{', 0x280 /* 80 02: pickle-like */, 0x0A0A /* protobuf-like */, ' '};
    for (size_t i = 0; i < sizeof odd_headers / sizeof *odd_headers; i++) {
        bin_buf c = b;
        memcpy(c.d, &odd_headers[i], 4);
        spqr_tokenizer *t = load_tok(write_tmp("odd.bin", c.d, c.n));
        CHECKF(t && spqr_tokenizer_vocab_size(t) == (int)nrec, "max_token_length %d", odd_headers[i]);
        spqr_tokenizer_free(t);
    }
}

/* The shared GGUF, SentencePiece, safetensors and checkpoint files are named; tok512 cuts fail cleanly. */
static void test_real_other_formats(void) {
    NEED_SHARED();
    expect_fail(th_asset("models/llama2-tokenizer/vocab-only.gguf"), SPQR_E_UNSUPPORTED, "GGUF", "vocab-only.gguf");
    expect_fail(th_asset("models/llama2-tokenizer/tokenizer.model"), SPQR_E_UNSUPPORTED, "SentencePiece",
                "tokenizer.model");
    expect_fail(th_asset("models/evalmodel/config.json"), SPQR_E_UNSUPPORTED, "model", "config.json");
    expect_fail(th_asset("models/stories260K/stories260K.bin"), SPQR_E_UNSUPPORTED, "checkpoint", "stories260K.bin");
    expect_fail(th_asset("models/evalmodel/model-00001-of-00002.safetensors"), SPQR_E_UNSUPPORTED, "safetensors",
                "safetensors");
    /* Truncations of the real tokenizer.bin at many offsets. */
    size_t len;
    spqr_error e;
    char *data = read_all(th_asset("models/stories260K/tok512.bin"), &len);
    if (!data) return;
    for (size_t cut = 4; cut < len; cut += 7) {
        const char *p = write_tmp("cut512.bin", data, cut);
        spqr_tokenizer *t = NULL;
        spqr_status s = spqr_tokenizer_load(p, &t, &e);
        CHECKF(s == SPQR_OK || (s == SPQR_E_FORMAT && e.msg[0]), "cut at %zu: %s", cut, spqr_status_str(s));
        CHECK((s == SPQR_OK) == (t != NULL));
        spqr_tokenizer_free(t);
    }
    free(data);
}

const th_test suite_tokenizer[] = {
    {"tokenizer_api_args", test_api_args},
    {"tokenizer_hf_basics", test_hf_basics},
    {"tokenizer_hf_cases", test_hf_cases},
    {"tokenizer_bin_basics", test_bin_basics},
    {"tokenizer_bin_cases", test_bin_cases},
    {"tokenizer_wikitext_count", test_wikitext_count},
    {"tokenizer_roundtrip", test_roundtrip},
    {"tokenizer_token_text", test_token_text},
    {"tokenizer_tok512", test_tok512},
    {"tokenizer_tiny_json", test_tiny_json},
    {"tokenizer_tiny_bin", test_tiny_bin},
    {"tokenizer_hostile_json", test_hostile_json},
    {"tokenizer_hostile_bin", test_hostile_bin},
    {"tokenizer_other_formats", test_real_other_formats},
    {NULL, NULL},
};
