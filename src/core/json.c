/* json.c — strict recursive-descent JSON parser; see json.h. */
#include "core/json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 64

typedef struct {
    const char *s, *end, *start;
    char *msg;
    size_t cap;
    bool failed;
} parser;

static void fail(parser *p, const char *why) {
    if (p->failed) return;
    p->failed = true;
    size_t line = 1, col = 1;
    for (const char *q = p->start; q < p->s && q < p->end; q++) {
        if (*q == '\n') { line++; col = 1; } else col++;
    }
    if (p->msg && p->cap) snprintf(p->msg, p->cap, "line %zu, column %zu: %s", line, col, why);
}

static void skip_ws(parser *p) {
    while (p->s < p->end && (*p->s == ' ' || *p->s == '\t' || *p->s == '\n' || *p->s == '\r')) p->s++;
}

static void free_value(spqr_json *j) {
    if (!j) return;
    free(j->str);
    if (j->type == SPQR_JSON_ARRAY || j->type == SPQR_JSON_OBJECT) {
        for (size_t i = 0; i < j->n; i++) {
            free_value(&j->items[i]);
            if (j->keys) free_value(&j->keys[i]);
        }
        free(j->items);
        free(j->keys);
    }
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool read_hex4(parser *p, unsigned *out) {
    if (p->end - p->s < 4) { fail(p, "truncated \\u escape"); return false; }
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p->s[i]);
        if (h < 0) { fail(p, "bad \\u escape"); return false; }
        v = v * 16 + (unsigned)h;
    }
    p->s += 4;
    *out = v;
    return true;
}

static size_t put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* p->s at the opening quote. The unescaped string is never longer than the escaped one. */
static bool parse_string(parser *p, char **out, size_t *out_len) {
    p->s++;
    const char *q = p->s;
    while (q < p->end && *q != '"') q += (*q == '\\' && q + 1 < p->end) ? 2 : 1;
    if (q >= p->end) { fail(p, "unterminated string"); return false; }
    char *buf = malloc((size_t)(q - p->s) + 1);
    if (!buf) { fail(p, "out of memory"); return false; }
    size_t n = 0;
    while (*p->s != '"') {
        unsigned char c = (unsigned char)*p->s;
        if (c < 0x20) { fail(p, "control character in string"); free(buf); return false; }
        if (c != '\\') { buf[n++] = (char)c; p->s++; continue; }
        p->s++;
        char e = *p->s++;
        switch (e) {
        case '"': buf[n++] = '"'; break;
        case '\\': buf[n++] = '\\'; break;
        case '/': buf[n++] = '/'; break;
        case 'b': buf[n++] = '\b'; break;
        case 'f': buf[n++] = '\f'; break;
        case 'n': buf[n++] = '\n'; break;
        case 'r': buf[n++] = '\r'; break;
        case 't': buf[n++] = '\t'; break;
        case 'u': {
            unsigned cp;
            if (!read_hex4(p, &cp)) { free(buf); return false; }
            if (cp >= 0xD800 && cp <= 0xDBFF) { /* high surrogate: a low one must follow */
                unsigned lo;
                if (p->end - p->s < 6 || p->s[0] != '\\' || p->s[1] != 'u') { fail(p, "lone surrogate"); free(buf); return false; }
                p->s += 2;
                if (!read_hex4(p, &lo)) { free(buf); return false; }
                if (lo < 0xDC00 || lo > 0xDFFF) { fail(p, "bad surrogate pair"); free(buf); return false; }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                fail(p, "lone surrogate"); free(buf); return false;
            }
            n += put_utf8(buf + n, cp); /* <= 6 escaped bytes always give <= 4 output bytes */
            break;
        }
        default: fail(p, "bad escape"); free(buf); return false;
        }
    }
    p->s++; /* closing quote */
    buf[n] = 0;
    *out = buf;
    *out_len = n;
    return true;
}

static bool parse_value(parser *p, spqr_json *v, int depth);

static bool push(spqr_json **arr, size_t *n, size_t *cap, parser *p) {
    if (*n < *cap) return true;
    size_t nc = *cap ? *cap * 2 : 8;
    spqr_json *a = realloc(*arr, nc * sizeof **arr);
    if (!a) { fail(p, "out of memory"); return false; }
    *arr = a;
    *cap = nc;
    return true;
}

static bool parse_container(parser *p, spqr_json *v, int depth, bool is_obj) {
    if (depth >= JSON_MAX_DEPTH) { fail(p, "nesting too deep"); return false; }
    v->type = is_obj ? SPQR_JSON_OBJECT : SPQR_JSON_ARRAY;
    p->s++;
    size_t cap = 0, kcap = 0;
    skip_ws(p);
    if (p->s < p->end && *p->s == (is_obj ? '}' : ']')) { p->s++; return true; }
    for (;;) {
        skip_ws(p);
        if (is_obj) {
            if (p->s >= p->end || *p->s != '"') { fail(p, "expected a member name"); return false; }
            if (!push(&v->keys, &v->n, &kcap, p)) return false;
            spqr_json *k = &v->keys[v->n];
            memset(k, 0, sizeof *k);
            k->type = SPQR_JSON_STRING;
            if (!parse_string(p, &k->str, &k->len)) return false;
            skip_ws(p);
            if (p->s >= p->end || *p->s != ':') { free_value(k); fail(p, "expected ':'"); return false; }
            p->s++;
        }
        if (!push(&v->items, &v->n, &cap, p)) { if (is_obj) free_value(&v->keys[v->n]); return false; }
        spqr_json *it = &v->items[v->n];
        memset(it, 0, sizeof *it);
        if (!parse_value(p, it, depth + 1)) {
            free_value(it);
            if (is_obj) free_value(&v->keys[v->n]);
            return false;
        }
        v->n++;
        skip_ws(p);
        if (p->s >= p->end) { fail(p, "unexpected end of input"); return false; }
        if (*p->s == ',') { p->s++; continue; }
        if (*p->s == (is_obj ? '}' : ']')) { p->s++; return true; }
        fail(p, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
        return false;
    }
}

static bool parse_number(parser *p, spqr_json *v) {
    const char *b = p->s;
    if (p->s < p->end && *p->s == '-') p->s++;
    if (p->s >= p->end) { fail(p, "bad number"); return false; }
    if (*p->s == '0') p->s++;
    else if (*p->s >= '1' && *p->s <= '9') while (p->s < p->end && *p->s >= '0' && *p->s <= '9') p->s++;
    else { fail(p, "bad number"); return false; }
    if (p->s < p->end && *p->s == '.') {
        p->s++;
        if (p->s >= p->end || *p->s < '0' || *p->s > '9') { fail(p, "bad number"); return false; }
        while (p->s < p->end && *p->s >= '0' && *p->s <= '9') p->s++;
    }
    if (p->s < p->end && (*p->s == 'e' || *p->s == 'E')) {
        p->s++;
        if (p->s < p->end && (*p->s == '+' || *p->s == '-')) p->s++;
        if (p->s >= p->end || *p->s < '0' || *p->s > '9') { fail(p, "bad number"); return false; }
        while (p->s < p->end && *p->s >= '0' && *p->s <= '9') p->s++;
    }
    size_t n = (size_t)(p->s - b);
    v->type = SPQR_JSON_NUMBER;
    v->str = malloc(n + 1);
    if (!v->str) { fail(p, "out of memory"); return false; }
    memcpy(v->str, b, n);
    v->str[n] = 0;
    v->len = n;
    v->number = strtod(v->str, NULL); /* overflow gives +-HUGE_VAL; readers check ranges */
    return true;
}

static bool parse_lit(parser *p, const char *lit) {
    size_t n = strlen(lit);
    if ((size_t)(p->end - p->s) < n || memcmp(p->s, lit, n) != 0) { fail(p, "unexpected character"); return false; }
    p->s += n;
    return true;
}

static bool parse_value(parser *p, spqr_json *v, int depth) {
    skip_ws(p);
    if (p->s >= p->end) { fail(p, "unexpected end of input"); return false; }
    switch (*p->s) {
    case '{': return parse_container(p, v, depth, true);
    case '[': return parse_container(p, v, depth, false);
    case '"': v->type = SPQR_JSON_STRING; return parse_string(p, &v->str, &v->len);
    case 't': v->type = SPQR_JSON_BOOL; v->boolean = true; return parse_lit(p, "true");
    case 'f': v->type = SPQR_JSON_BOOL; v->boolean = false; return parse_lit(p, "false");
    case 'n': v->type = SPQR_JSON_NULL; return parse_lit(p, "null");
    default: return parse_number(p, v);
    }
}

spqr_json *spqr_json_parse(const char *text, size_t len, char *msg, size_t msg_cap) {
    parser p = {text, text + len, text, msg, msg_cap, false};
    spqr_json *v = calloc(1, sizeof *v);
    if (!v) { if (msg && msg_cap) snprintf(msg, msg_cap, "out of memory"); return NULL; }
    if (parse_value(&p, v, 0)) {
        skip_ws(&p);
        if (p.s == p.end) return v;
        fail(&p, "trailing characters after the value");
    }
    spqr_json_free(v);
    return NULL;
}

void spqr_json_free(spqr_json *j) {
    if (!j) return;
    free_value(j);
    free(j);
}

const spqr_json *spqr_json_get(const spqr_json *j, const char *key) {
    if (!j || j->type != SPQR_JSON_OBJECT) return NULL;
    size_t kl = strlen(key);
    for (size_t i = j->n; i-- > 0;)
        if (j->keys[i].len == kl && memcmp(j->keys[i].str, key, kl) == 0) return &j->items[i];
    return NULL;
}

bool spqr_json_u64(const spqr_json *j, uint64_t *out) {
    if (!j || j->type != SPQR_JSON_NUMBER || j->str[0] == '-') return false;
    uint64_t v = 0;
    const char *s = j->str;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (uint64_t)(*s - '0'), &v)) return false;
    }
    if (*s != 0) return false; /* fraction or exponent: not an integer literal */
    *out = v;
    return true;
}

bool spqr_json_i64(const spqr_json *j, int64_t *out) {
    if (!j || j->type != SPQR_JSON_NUMBER) return false;
    bool neg = j->str[0] == '-';
    spqr_json tmp = *j;
    tmp.str = j->str + neg;
    uint64_t u;
    if (!spqr_json_u64(&tmp, &u)) return false;
    if (neg ? u > (uint64_t)INT64_MAX + 1 : u > (uint64_t)INT64_MAX) return false;
    *out = neg ? (int64_t)(0 - u) : (int64_t)u;
    return true;
}

bool spqr_json_num(const spqr_json *j, double *out) {
    if (!j || j->type != SPQR_JSON_NUMBER) return false;
    *out = j->number;
    return true;
}

const char *spqr_json_str(const spqr_json *j) {
    return (j && j->type == SPQR_JSON_STRING) ? j->str : NULL;
}

spqr_status spqr_json_read_file(const char *path, uint64_t max_size, spqr_json **out, spqr_error *err) {
    *out = NULL;
    char *text;
    size_t len;
    spqr_status st = spqr_read_file(path, max_size, &text, &len, err);
    if (st) return st;
    char jmsg[256];
    *out = spqr_json_parse(text, len, jmsg, sizeof jmsg);
    free(text);
    return *out ? SPQR_OK : spqr_set_err(err, SPQR_E_FORMAT, "%s: not valid JSON: %s", path, jmsg);
}
