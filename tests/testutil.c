/* testutil.c — scratch files and tiny synthetic models for the tests (see testutil.h). */
#include "testutil.h"

#include "harness.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- paths and files --------------------------------------------------------------------------- */

#define TU_RING 16
static char tu_ring[TU_RING][1024];
static int tu_ring_pos;

static char *ring_next(void) {
    char *b = tu_ring[tu_ring_pos];
    tu_ring_pos = (tu_ring_pos + 1) % TU_RING;
    return b;
}

const char *tu_newdir(const char *tag) {
    /* kept for the whole run: tests hold on to their directories */
    static char dirs[1024][256];
    static unsigned used, counter;
    if (used == sizeof dirs / sizeof dirs[0]) {
        fprintf(stderr, "tu_newdir: too many directories\n");
        abort();
    }
    char *b = dirs[used++];
    for (;;) {
        snprintf(b, sizeof dirs[0], "%s/%s-%u", th_tmpdir(), tag, counter++);
        if (mkdir(b, 0700) == 0) return b;
    }
}

const char *tu_cat(const char *dir, const char *name) {
    char *b = ring_next();
    snprintf(b, sizeof tu_ring[0], "%s/%s", dir, name);
    return b;
}

int tu_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int bad = n && fwrite(data, 1, n, f) != n;
    bad |= fclose(f) != 0;
    return bad ? -1 : 0;
}

int tu_write_text(const char *path, const char *text) { return tu_write_file(path, text, strlen(text)); }

unsigned char *tu_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, len = 0;
    unsigned char *buf = malloc(cap + 1);
    size_t got;
    while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            unsigned char *nb = realloc(buf, 2 * cap + 1);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf) return NULL;
    buf[len] = 0;
    *n = len;
    return buf;
}

int tu_write_st_raw_len(const char *path, uint64_t header_len, const char *header, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(header_len >> (8 * i));
    size_t hl = strlen(header);
    int bad = fwrite(len8, 1, 8, f) != 8;
    bad |= hl && fwrite(header, 1, hl, f) != hl;
    bad |= n && fwrite(data, 1, n, f) != n;
    bad |= fclose(f) != 0;
    return bad ? -1 : 0;
}

int tu_write_st_raw(const char *path, const char *header, const void *data, size_t n) {
    return tu_write_st_raw_len(path, strlen(header), header, data, n);
}

char *tu_replace(const char *text, const char *from, const char *to) {
    const char *at = strstr(text, from);
    if (!at) {
        fprintf(stderr, "tu_replace: \"%s\" not found\n", from);
        abort();
    }
    size_t a = (size_t)(at - text), fl = strlen(from), tl = strlen(to), rest = strlen(at + fl);
    char *r = malloc(a + tl + rest + 1);
    if (!r) abort();
    memcpy(r, text, a);
    memcpy(r + a, to, tl);
    memcpy(r + a + tl, at + fl, rest + 1);
    return r;
}

/* ---- half floats ------------------------------------------------------------------------------- */

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

uint16_t tu_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN, kept quiet */
    u += 0x7fffu + ((u >> 16) & 1);                                           /* nearest even */
    return (uint16_t)(u >> 16);
}

uint16_t tu_f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00;  /* NaN */
    if (a >= 0x477ff000u) return sign | 0x7c00; /* rounds to or past 65520: Inf */
    if (a < 0x33000001u) return sign;           /* below half the smallest subnormal: zero */
    int e = (int)(a >> 23) - 127;
    uint32_t man = (a & 0x7fffff) | 0x800000; /* 24 significant bits */
    int shift;                                /* bits dropped from the 24-bit significand */
    uint32_t base;
    if (e >= -14) {                           /* normal half */
        shift = 13;
        base = (uint32_t)(e + 15) << 10;
        man &= 0x7fffff;                      /* drop the implicit bit: base carries it */
    } else {                                  /* subnormal half: value = m * 2^-24 */
        shift = 13 + (-14 - e);
        base = 0;
    }
    uint32_t q = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return (uint16_t)(sign | (base + q)); /* a carry into the exponent is the correct rounding */
}

/* ---- a growable string ------------------------------------------------------------------------- */

typedef struct { char *s; size_t n, cap; } sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (need < 0) return;
    if (b->n + (size_t)need + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + (size_t)need + 1) nc *= 2;
        char *ns = realloc(b->s, nc);
        if (!ns) abort();
        b->s = ns;
        b->cap = nc;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    b->n += (size_t)need;
}

/* ---- synthetic Hugging Face models ------------------------------------------------------------- */

void tu_spec_default(tu_spec *s) {
    memset(s, 0, sizeof *s);
    s->dim = 16;
    s->hidden = 40;
    s->layers = 2;
    s->heads = 4;
    s->kv_heads = 2;
    s->vocab = 48;
    s->dtype = SPQR_DTYPE_F32;
    s->seed = 1;
    s->poison_index = 3;
}

static int spec_head_dim(const tu_spec *s) { return s->head_dim ? s->head_dim : s->dim / s->heads; }

static void add_t(tu_tensor *out, int cap, int *n, const char *name, int nd, int64_t d0, int64_t d1) {
    if (*n < cap) {
        tu_tensor *t = &out[*n];
        snprintf(t->name, sizeof t->name, "%s", name);
        t->n_dims = nd;
        t->shape[0] = d0;
        t->shape[1] = nd > 1 ? d1 : 0;
    }
    (*n)++;
}

int tu_tensor_list(const tu_spec *s, tu_tensor *out, int cap) {
    int n = 0;
    const int64_t hd = spec_head_dim(s), qd = s->heads * hd, kvd = s->kv_heads * hd;
    char name[96];
    add_t(out, cap, &n, "model.embed_tokens.weight", 2, s->vocab, s->dim);
    for (int l = 0; l < s->layers; l++) {
#define T(suffix, nd, d0, d1)                                                   \
        snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);           \
        add_t(out, cap, &n, name, nd, d0, d1);
        T("input_layernorm.weight", 1, s->dim, 0);
        T("self_attn.q_proj.weight", 2, qd, s->dim);
        T("self_attn.k_proj.weight", 2, kvd, s->dim);
        T("self_attn.v_proj.weight", 2, kvd, s->dim);
        if (s->bias) {
            T("self_attn.q_proj.bias", 1, qd, 0);
            T("self_attn.k_proj.bias", 1, kvd, 0);
            T("self_attn.v_proj.bias", 1, kvd, 0);
        }
        T("self_attn.o_proj.weight", 2, s->dim, qd);
        T("post_attention_layernorm.weight", 1, s->dim, 0);
        T("mlp.gate_proj.weight", 2, s->hidden, s->dim);
        T("mlp.up_proj.weight", 2, s->hidden, s->dim);
        T("mlp.down_proj.weight", 2, s->dim, s->hidden);
#undef T
    }
    add_t(out, cap, &n, "model.norm.weight", 1, s->dim, 0);
    if (!s->tied) add_t(out, cap, &n, "lm_head.weight", 2, s->vocab, s->dim);
    return n;
}

int64_t tu_tensor_numel(const tu_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->n_dims; d++) n *= t->shape[d];
    return n;
}

static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

float tu_value(const tu_spec *s, const char *name, int64_t i) {
    uint64_t h = 1469598103934665603ull ^ s->seed;
    for (const char *p = name; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    uint64_t r = mix64(h ^ mix64((uint64_t)i));
    if (s->poison && i == s->poison_index && !strcmp(name, s->poison)) return s->poison_value;
    if (strstr(name, "norm")) return (float)(112 + (int)(r % 33)) / 128.0f; /* 0.875 .. 1.125 */
    return (float)((int)(r % 129) - 64) / 256.0f;                           /* -0.25 .. 0.25 */
}

static const char *dtype_str(spqr_dtype t) {
    return t == SPQR_DTYPE_F32 ? "F32" : t == SPQR_DTYPE_F16 ? "F16" : "BF16";
}

static uint64_t dtype_bytes(spqr_dtype t) { return t == SPQR_DTYPE_F32 ? 4 : 2; }

int tu_write_safetensors(const char *path, const tu_spec *s, const tu_tensor *ts, int n) {
    return tu_write_safetensors_ex(path, s, ts, n, NULL, NULL, 0);
}

int tu_write_safetensors_ex(const char *path, const tu_spec *s, const tu_tensor *ts, int n, const char *extra_members,
                            const void *extra_data, size_t extra_n) {
    sbuf h = {0};
    sb_printf(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
    if (extra_members) sb_printf(&h, ",%s", extra_members);
    uint64_t off = extra_n;
    for (int i = 0; i < n; i++) {
        uint64_t nb = (uint64_t)tu_tensor_numel(&ts[i]) * dtype_bytes(s->dtype);
        sb_printf(&h, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", ts[i].name, dtype_str(s->dtype));
        for (int d = 0; d < ts[i].n_dims; d++) sb_printf(&h, "%s%lld", d ? "," : "", (long long)ts[i].shape[d]);
        sb_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off, (unsigned long long)(off + nb));
        off += nb;
    }
    sb_printf(&h, "}");
    /* pad with spaces: to a multiple of 8 like the reference writer, or to 8k+2 to misalign */
    size_t want = (h.n + 7) / 8 * 8 + (s->misalign ? 2 : 0);
    while (h.n < want) sb_printf(&h, " ");
    unsigned char *data = malloc(off ? off : 1);
    if (!data) abort();
    if (extra_n) memcpy(data, extra_data, extra_n);
    uint64_t p = extra_n;
    for (int i = 0; i < n; i++) {
        int64_t ne = tu_tensor_numel(&ts[i]);
        for (int64_t k = 0; k < ne; k++) {
            float v = tu_value(s, ts[i].name, k);
            if (s->dtype == SPQR_DTYPE_F32) {
                uint32_t u = f32_bits(v);
                for (int b = 0; b < 4; b++) data[p++] = (unsigned char)(u >> (8 * b));
            } else {
                uint16_t u = s->dtype == SPQR_DTYPE_F16 ? tu_f32_to_f16(v) : tu_f32_to_bf16(v);
                data[p++] = (unsigned char)u;
                data[p++] = (unsigned char)(u >> 8);
            }
        }
    }
    int rc = tu_write_st_raw(path, h.s, data, (size_t)off);
    free(data);
    free(h.s);
    return rc;
}

int tu_write_config(const char *dir, const tu_spec *s) {
    const char *arch = s->arch ? s->arch : "LlamaForCausalLM";
    const char *mt = s->model_type;
    if (!mt) mt = !strcmp(arch, "Qwen2ForCausalLM") ? "qwen2" : !strcmp(arch, "MistralForCausalLM") ? "mistral" : "llama";
    sbuf b = {0};
    sb_printf(&b, "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n", arch, mt);
    sb_printf(&b, "  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n  \"num_hidden_layers\": %d,\n", s->dim, s->hidden, s->layers);
    sb_printf(&b, "  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n  \"vocab_size\": %d,\n", s->heads, s->kv_heads, s->vocab);
    sb_printf(&b, "  \"max_position_embeddings\": %d,\n  \"rms_norm_eps\": 1e-05,\n  \"hidden_act\": \"silu\",\n", s->max_pos ? s->max_pos : 64);
    if (s->head_dim_in_config) sb_printf(&b, "  \"head_dim\": %d,\n", spec_head_dim(s));
    sb_printf(&b, "  \"torch_dtype\": \"%s\",\n", s->dtype == SPQR_DTYPE_F32 ? "float32" : s->dtype == SPQR_DTYPE_F16 ? "float16" : "bfloat16");
    if (s->extra) sb_printf(&b, "  %s,\n", s->extra);
    sb_printf(&b, "  \"tie_word_embeddings\": %s\n}\n", s->tied ? "true" : "false");
    int rc = tu_write_text(tu_cat(dir, "config.json"), b.s);
    free(b.s);
    return rc;
}

int tu_write_hf(const char *dir, const tu_spec *s) {
    if (tu_write_config(dir, s)) return -1;
    int n = tu_tensor_list(s, NULL, 0);
    tu_tensor *all = calloc((size_t)n, sizeof *all), *kept = calloc((size_t)n, sizeof *kept);
    if (!all || !kept) abort();
    tu_tensor_list(s, all, n);
    int nk = 0;
    for (int i = 0; i < n; i++)
        if (!s->omit || strcmp(all[i].name, s->omit) != 0) kept[nk++] = all[i];
    int rc;
    if (s->shards < 2) {
        rc = tu_write_safetensors(tu_cat(dir, "model.safetensors"), s, kept, nk);
    } else {
        static const char *const names[2] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
        int half = nk / 2;
        rc = tu_write_safetensors(tu_cat(dir, names[0]), s, kept, half);
        if (!rc) rc = tu_write_safetensors(tu_cat(dir, names[1]), s, kept + half, nk - half);
        sbuf b = {0};
        uint64_t total = 0;
        for (int i = 0; i < nk; i++) total += (uint64_t)tu_tensor_numel(&kept[i]) * dtype_bytes(s->dtype);
        sb_printf(&b, "{\n  \"metadata\": {\"total_size\": %llu},\n  \"weight_map\": {\n", (unsigned long long)total);
        for (int i = 0; i < nk; i++)
            sb_printf(&b, "    \"%s\": \"%s\"%s\n", kept[i].name, names[i >= half], i + 1 < nk ? "," : "");
        sb_printf(&b, "  }\n}\n");
        if (!rc) rc = tu_write_text(tu_cat(dir, "model.safetensors.index.json"), b.s);
        free(b.s);
    }
    free(all);
    free(kept);
    return rc;
}

/* ---- synthetic llama2.c checkpoints ------------------------------------------------------------ */

uint64_t tu_l2c_size(const tu_l2c *h) {
    if (h->dim <= 0 || h->hidden <= 0 || h->layers <= 0 || h->heads <= 0 || h->kv_heads <= 0 || h->vocab == 0 || h->seq_len <= 0)
        return 0;
    uint64_t dim = (uint64_t)h->dim, hid = (uint64_t)h->hidden, L = (uint64_t)h->layers;
    uint64_t hs = dim / (uint64_t)h->heads, kvd = hs * (uint64_t)h->kv_heads, qd = hs * (uint64_t)h->heads;
    uint64_t V = (uint64_t)(h->vocab < 0 ? -(int64_t)h->vocab : h->vocab);
    uint64_t floats = V * dim                        /* token embedding */
                      + L * dim                      /* rms_att */
                      + L * (qd * dim + 2 * kvd * dim + dim * qd) /* wq wk wv wo */
                      + L * dim                      /* rms_ffn */
                      + L * 3 * hid * dim            /* w1 w2 w3 */
                      + dim                          /* rms_final */
                      + 2 * (uint64_t)h->seq_len * (hs / 2) /* freq_cis real + imag */
                      + (h->vocab < 0 ? V * dim : 0);
    return 28 + 4 * floats;
}

int tu_write_llama2c(const char *path, const tu_l2c *h, int64_t poison_float, float poison_value) {
    uint64_t size = tu_l2c_size(h);
    if (size < 28) return -1;
    unsigned char *buf = malloc((size_t)size);
    if (!buf) return -1;
    const int32_t hdr[7] = {h->dim, h->hidden, h->layers, h->heads, h->kv_heads, h->vocab, h->seq_len};
    memcpy(buf, hdr, 28);
    uint64_t nf = (size - 28) / 4;
    for (uint64_t i = 0; i < nf; i++) {
        float v = (float)((int)(mix64(i ^ 0x5eedu) % 129) - 64) / 256.0f;
        if ((int64_t)i == poison_float) v = poison_value;
        memcpy(buf + 28 + 4 * i, &v, 4);
    }
    int rc = tu_write_file(path, buf, (size_t)size);
    free(buf);
    return rc;
}

int tu_write_l2c_header(const char *path, const int32_t hdr[7], size_t payload) {
    unsigned char *buf = calloc(1, 28 + payload);
    if (!buf) return -1;
    memcpy(buf, hdr, 28);
    int rc = tu_write_file(path, buf, 28 + payload);
    free(buf);
    return rc;
}
