/* test_core.c — the strict JSON reader: valid documents, every error kind, exact integers. */
#include "harness.h"
#include "spqr.h"
#include "core/core.h"
#include "core/json.h"

#include <stdlib.h>
#include <string.h>

/* Parses a NUL-free string; reports a failure and returns NULL if it does not parse. */
static spqr_json *parse_ok(const char *text) {
    char msg[200] = "";
    spqr_json *j = spqr_json_parse(text, strlen(text), msg, sizeof msg);
    CHECKF(j != NULL, "%s: %s", text, msg);
    return j;
}

/* text[0..len) must not parse; the message must be "line L, column C: ..." containing `needle`. */
static void parse_fail_n(const char *text, size_t len, const char *needle) {
    char msg[200] = "";
    spqr_json *j = spqr_json_parse(text, len, msg, sizeof msg);
    CHECKF(j == NULL, "parsed but should not: %.*s", (int)len, text);
    spqr_json_free(j);
    if (j) return;
    CHECKF(strncmp(msg, "line ", 5) == 0 && strstr(msg, "column"), "%.*s: message \"%s\"", (int)len, text, msg);
    CHECKF(!needle || strstr(msg, needle), "%.*s: message \"%s\" lacks \"%s\"", (int)len, text, msg, needle);
}

/* parse_fail_n for a NUL-free string. */
static void parse_fail(const char *text, const char *needle) { parse_fail_n(text, strlen(text), needle); }

/* Every value type, escapes, repeated keys, nesting up to the limit. */
static void test_json_valid(void) {
    spqr_json *j = parse_ok(" {\"a\": [1, -2.5e3, true, false, null, \"x\"], \"b\": {}, \"c\": [], \"a\": 7}\n");
    if (!j) return;
    CHECK(j->type == SPQR_JSON_OBJECT && j->n == 4);
    CHECK(strcmp(j->keys[0].str, "a") == 0 && strcmp(j->keys[3].str, "a") == 0); /* file order kept */
    const spqr_json *a = &j->items[0];
    CHECK(a->type == SPQR_JSON_ARRAY && a->n == 6);
    double d;
    CHECK(spqr_json_num(&a->items[1], &d) && d == -2500.0);
    CHECK(a->items[2].type == SPQR_JSON_BOOL && a->items[2].boolean);
    CHECK(a->items[3].type == SPQR_JSON_BOOL && !a->items[3].boolean);
    CHECK(a->items[4].type == SPQR_JSON_NULL);
    CHECK(spqr_json_str(&a->items[5]) && strcmp(spqr_json_str(&a->items[5]), "x") == 0);
    CHECK(spqr_json_str(&a->items[0]) == NULL);
    int64_t v;
    CHECK(spqr_json_i64(spqr_json_get(j, "a"), &v) && v == 7); /* the last of repeated keys */
    CHECK(spqr_json_get(j, "b")->type == SPQR_JSON_OBJECT && spqr_json_get(j, "b")->n == 0);
    CHECK(spqr_json_get(j, "c")->type == SPQR_JSON_ARRAY && spqr_json_get(j, "c")->n == 0);
    CHECK(spqr_json_get(j, "zz") == NULL && spqr_json_get(a, "a") == NULL && spqr_json_get(NULL, "a") == NULL);
    spqr_json_free(j);

    /* scalars at top level */
    j = parse_ok("42");
    CHECK(j && spqr_json_i64(j, &v) && v == 42);
    spqr_json_free(j);
    j = parse_ok("\"top\"");
    CHECK(j && j->len == 3);
    spqr_json_free(j);
    j = parse_ok("-0");
    CHECK(j && spqr_json_i64(j, &v) && v == 0);
    spqr_json_free(j);
    j = parse_ok("0.5e-2");
    CHECK(j && spqr_json_num(j, &d) && d == 0.005 && !spqr_json_i64(j, &v));
    spqr_json_free(j);

    /* escapes: all simple ones, \u to UTF-8 of 1..4 bytes, surrogate pairs, \u0000 kept with len */
    j = parse_ok(
        "[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\", \"\\u0041\\u00e9\\u20AC\\ud83e\\udd99\", \"a\\u0000b\", \"raw \xC3\xA9\"]");
    if (j) {
        CHECK(strcmp(j->items[0].str, "\"\\/\b\f\n\r\t") == 0 && j->items[0].len == 8);
        CHECK(strcmp(j->items[1].str, "A\xC3\xA9\xE2\x82\xAC\xF0\x9F\xA6\x99") == 0 && j->items[1].len == 10);
        CHECK(j->items[2].len == 3 && memcmp(j->items[2].str, "a\0b", 3) == 0);
        CHECK(strcmp(j->items[3].str, "raw \xC3\xA9") == 0);
    }
    spqr_json_free(j);

    /* 64 levels of nesting are fine */
    char deep[200];
    size_t k = 0;
    for (int i = 0; i < 64; i++) deep[k++] = '[';
    for (int i = 0; i < 64; i++) deep[k++] = ']';
    deep[k] = 0;
    j = parse_ok(deep);
    spqr_json_free(j);
}

/* Each kind of error is reported with its position. */
static void test_json_errors(void) {
    parse_fail("", "end of input");
    parse_fail("   ", "end of input");
    parse_fail("{} x", "trailing");
    parse_fail("1 2", "trailing");
    parse_fail("[1] ]", "trailing");
    parse_fail("\"abc", "unterminated");
    parse_fail("\"a\\q\"", "bad escape");
    parse_fail("\"a\\x41\"", "bad escape");
    parse_fail("\"\\u12G4\"", "\\u");
    parse_fail("\"\\u12\"", "\\u");
    parse_fail("\"\\ud800\"", "surrogate");
    parse_fail("\"\\udc00\"", "surrogate");
    parse_fail("\"\\ud800\\u0041\"", "surrogate");
    parse_fail("\"\\ud800x\"", "surrogate");
    parse_fail("\"\\udbff\\udbff\"", "surrogate");
    parse_fail("\"tab\there\"", "control");
    parse_fail("\"nl\nhere\"", "control");
    parse_fail("01", "trailing");
    parse_fail("1.", "number");
    parse_fail(".5", NULL);
    parse_fail("-", "number");
    parse_fail("-a", "number");
    parse_fail("+1", NULL);
    parse_fail("1e", "number");
    parse_fail("1e+", "number");
    parse_fail("tru", NULL);
    parse_fail("nul", NULL);
    parse_fail("True", NULL);
    parse_fail("[1,]", NULL);
    parse_fail("[,1]", NULL);
    parse_fail("[1 2]", "','");
    parse_fail("{\"a\":1,}", "member name");
    parse_fail("{\"a\" 1}", "':'");
    parse_fail("{1:2}", "member name");
    parse_fail("{\"a\":1 \"b\":2}", "','");
    parse_fail("{'a':1}", "member name");
    parse_fail("[1", "end of input");
    parse_fail("{\"a\":", "end of input");
    parse_fail_n("[1,\0]", 5, NULL);
    parse_fail("\xEF\xBB\xBF{}", NULL); /* a byte order mark is not JSON */

    /* nesting deeper than the limit fails cleanly, even when absurdly deep */
    size_t n = 100000;
    char *deep = malloc(2 * n + 1);
    if (deep) {
        for (size_t i = 0; i < n; i++) deep[i] = '[';
        for (size_t i = 0; i < n; i++) deep[n + i] = ']';
        deep[2 * n] = 0;
        parse_fail(deep, "deep");
        parse_fail_n(deep, 132, "deep"); /* 132 '[' and nothing else: too deep before the end */
        for (size_t i = 0; i < n; i++) deep[i] = i % 2 ? '[' : '{';
        parse_fail_n(deep, n, NULL);
        free(deep);
    }

    /* line and column of the error */
    char msg[200];
    spqr_json *j = spqr_json_parse("{\n  \"a\": tru\n}", 14, msg, sizeof msg);
    CHECKF(!j && strncmp(msg, "line 2, column 8", 16) == 0, "message \"%s\"", msg);
    spqr_json_free(j);
    /* a tiny or absent message buffer is fine */
    j = spqr_json_parse("[", 1, msg, 4);
    CHECK(!j && strlen(msg) == 3);
    CHECK(spqr_json_parse("[", 1, NULL, 0) == NULL);
}

/* Every proper prefix of a document fails, with a message and without crashing or leaking. */
static void test_json_truncated(void) {
    const char *doc = "{\"name\": \"t\\u00e9st \\ud83e\\udd99\", \"list\": [1, -2.5e+3, true, false, null, [], {}],\n"
                      " \"nested\": {\"a\": {\"b\": [\"x\\n\", 18446744073709551615]}}, \"e\": \"\\\"\\\\\"}";
    size_t len = strlen(doc);
    spqr_json *j = parse_ok(doc);
    spqr_json_free(j);
    for (size_t cut = 0; cut < len; cut++) {
        char *copy = malloc(cut ? cut : 1); /* exact size: ASan catches any read past the end */
        if (!copy) continue;
        memcpy(copy, doc, cut);
        char msg[200] = "";
        spqr_json *p = spqr_json_parse(copy, cut, msg, sizeof msg);
        CHECKF(p == NULL && msg[0], "prefix of %zu bytes: %s", cut, p ? "parsed" : "no message");
        spqr_json_free(p);
        free(copy);
    }
}

/* Reads `text` as a number and checks the exact readers. */
static void check_int(const char *text, int u_ok, uint64_t u_want, int i_ok, int64_t i_want) {
    spqr_json *j = parse_ok(text);
    if (!j) return;
    uint64_t u = 12345;
    int64_t i = 12345;
    bool gu = spqr_json_u64(j, &u), gi = spqr_json_i64(j, &i);
    CHECKF(gu == (bool)u_ok && (!u_ok || u == u_want), "u64 of %s: %d %llu", text, gu, (unsigned long long)u);
    CHECKF(gi == (bool)i_ok && (!i_ok || i == i_want), "i64 of %s: %d %lld", text, gi, (long long)i);
    CHECKF(u_ok || u == 12345, "u64 of %s changed *out on failure", text);
    spqr_json_free(j);
}

/* Exact u64/i64 readers at and beyond their limits. */
static void test_json_integers(void) {
    check_int("0", 1, 0, 1, 0);
    check_int("-0", 0, 0, 1, 0);
    check_int("7", 1, 7, 1, 7);
    check_int("-7", 0, 0, 1, -7);
    check_int("9223372036854775807", 1, 9223372036854775807ull, 1, INT64_MAX);
    check_int("9223372036854775808", 1, 9223372036854775808ull, 0, 0);
    check_int("-9223372036854775808", 0, 0, 1, INT64_MIN);
    check_int("-9223372036854775809", 0, 0, 0, 0);
    check_int("18446744073709551615", 1, UINT64_MAX, 0, 0);
    check_int("18446744073709551616", 0, 0, 0, 0);
    check_int("99999999999999999999999999", 0, 0, 0, 0);
    check_int("1.0", 0, 0, 0, 0);
    check_int("1e3", 0, 0, 0, 0);
    check_int("1E3", 0, 0, 0, 0);
    check_int("-1.5", 0, 0, 0, 0);
    spqr_json *j = parse_ok("[\"5\", null, true]");
    uint64_t u;
    int64_t i;
    double d;
    for (size_t k = 0; j && k < j->n; k++)
        CHECK(!spqr_json_u64(&j->items[k], &u) && !spqr_json_i64(&j->items[k], &i) && !spqr_json_num(&j->items[k], &d));
    CHECK(!spqr_json_u64(NULL, &u) && !spqr_json_i64(NULL, &i) && !spqr_json_num(NULL, &d) && !spqr_json_str(NULL));
    spqr_json_free(j);
    j = parse_ok("1e400"); /* overflows a double: still a number, not an integer */
    CHECK(j && spqr_json_num(j, &d) && d > 1e308 && !spqr_json_i64(j, &i));
    spqr_json_free(j);
}

const th_test suite_core[] = {
    {"core_json_valid", test_json_valid},
    {"core_json_errors", test_json_errors},
    {"core_json_truncated", test_json_truncated},
    {"core_json_integers", test_json_integers},
    {NULL, NULL},
};
