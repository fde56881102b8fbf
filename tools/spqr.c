/*
 * spqr — command-line front end of libspqr.
 *
 *   spqr ppl      MODEL --text FILE [--ctx N] [--protocol gptq|llamacpp] [--max-chunks K] [--json]
 *   spqr run      MODEL -p PROMPT [-n N] [--temp T] [--top-p P] [--seed S]
 *   spqr inspect  MODEL [--json]
 *   spqr tokenize MODEL --text STRING [--no-bos] [--json]
 *   spqr logits   MODEL --ids 1,2,3 --out FILE
 *   spqr bench    MODEL [-p 512] [-n 128] [-r 3] [--json]
 *   spqr quantize MODEL -o OUT [--method spqr|gptq|rtn] [--wbits b] [--groupsize g] [--qq-bits q]
 *                 [--qq-groupsize g2] [--outlier-threshold t|inf] [--perm act_order|identity]
 *                 [--act-order] [--percdamp p] [--simplified-outliers] [--head-bits b] [--calib F1,F2]
 *                 [--nsamples N] [--seqlen L] [--seed S] [--hessian-jitter E[,SEED]] [--gpu-device-cholesky] [--json]
 * Common: -t/--threads N (default: all cores), --tokenizer FILE.
 * Errors are one line on stderr ("spqr: FILE: reason") and exit status 1; usage errors exit 2.
 */
#include "spqr.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const char *cmd, *model, *tokenizer, *text, *prompt, *ids, *out, *protocol;
    int threads, ctx, max_chunks, n_predict, n_prompt, reps, json, no_bos, seed_set, act8, batch, gpu, gpu_dchol;
    float temp, top_p;
    unsigned long long seed;
    /* quantize: -1 / NAN = the method's default */
    const char *method, *calib, *perm;
    int wbits, groupsize, qq_bits, qq_groupsize, act_order, simplified, head_bits, nsamples, seqlen;
    double tau, percdamp, jitter;
    unsigned long long jitter_seed;
} args;

static void usage(FILE *f) {
    fputs("usage: spqr COMMAND MODEL [options]\n"
          "commands:\n"
          "  ppl       perplexity of a text file      --text FILE [--ctx N (default: 2048 or the model's\n"
          "            context if shorter)] [--protocol gptq|llamacpp] [--max-chunks K] [--batch N] [--json]\n"
          "  run       generate text                  -p PROMPT [-n 128] [--temp 0.8] [--top-p 0.95] [--seed S]\n"
          "  inspect   config, tensors and totals     [--json]\n"
          "  tokenize  print token ids                --text STRING [--no-bos] [--json]\n"
          "  logits    write fp32 logits (raw, rows = positions)   --ids 1,2,3 --out FILE\n"
          "  bench     prefill (-p tokens) and generation (-n tokens, from an empty context, as llama-bench)\n"
          "            speed  [-p 512] [-n 128] [-r 3] [--json]\n"
          "  quantize  write a compressed .spqr       -o OUT [--method spqr|gptq|rtn] [--wbits b] [--groupsize g]\n"
          "            [--qq-bits q] [--qq-groupsize g2] [--outlier-threshold t|inf] [--perm act_order|identity]\n"
          "            [--act-order] [--percdamp p] [--simplified-outliers] [--head-bits b] [--calib F1,F2,...] [--nsamples 128]\n"
          "            [--seqlen 2048] [--seed 0] [--hessian-jitter E[,SEED]] [--gpu-device-cholesky] [--json]   (defaults: see README)\n"
          "options for all: -t, --threads N (default: all cores); --tokenizer FILE (llama2.c models: default\n"
          "  tokenizer.bin, else tok<vocab>.bin, next to the checkpoint; HF directories: tokenizer.json);\n"
          "  --act8: decode one token at a time with 8-bit activations (VNNI, or the GPU's IDP4A kernel with\n"
          "  --gpu; faster, slightly less exact);\n"
          "  --batch N (ppl): tokens per forward call, default 512; 1 scores through the decode kernels;\n"
          "  --gpu: run (ppl/run/bench/logits) or quantize on the first CUDA device (make CUDA=1 builds);\n"
          "  --gpu-f16: run on the GPU with quantized matrices dequantized to fp16 (the 16-bit baseline)\n"
          "MODEL: a Hugging Face directory (config.json + safetensors) or a llama2.c .bin checkpoint\n",
          f);
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("spqr: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void die_usage(const char *fmt, const char *arg) {
    fputs("spqr: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs(" (spqr --help for usage)\n", stderr);
    exit(2);
}

static long parse_long(const char *opt, const char *v, long lo, long hi) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || *end || end == v || x < lo || x > hi) {
        fprintf(stderr, "spqr: %s: '%s' is not an integer in [%ld, %ld]\n", opt, v, lo, hi);
        exit(2);
    }
    return x;
}

static float parse_float(const char *opt, const char *v) {
    char *end;
    float x = strtof(v, &end);
    if (*end || end == v || !isfinite(x)) {
        fprintf(stderr, "spqr: %s: '%s' is not a number\n", opt, v);
        exit(2);
    }
    return x;
}

static args parse_args(int argc, char **argv) {
    args a = {0};
    a.temp = 0.8f;
    a.top_p = 0.95f;
    a.n_predict = -1;
    a.n_prompt = 512;
    a.reps = 3;
    a.seed = (unsigned long long)time(NULL);
    a.wbits = a.groupsize = a.qq_bits = a.qq_groupsize = a.act_order = a.nsamples = a.seqlen = -1;
    a.tau = a.percdamp = NAN;
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) { usage(stdout); exit(argc < 2 ? 2 : 0); }
    if (!strcmp(argv[1], "--version")) { printf("spqr %s\n", SPQR_VERSION); exit(0); }
    a.cmd = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *o = argv[i];
#define VAL() (i + 1 < argc ? argv[++i] : (die_usage("%s needs a value", o), ""))
        if (!strcmp(o, "-t") || !strcmp(o, "--threads")) a.threads = (int)parse_long(o, VAL(), 1, 512);
        else if (!strcmp(o, "--tokenizer")) a.tokenizer = VAL();
        else if (!strcmp(o, "--text")) a.text = VAL();
        else if (!strcmp(o, "--ctx") || !strcmp(o, "-c")) a.ctx = (int)parse_long(o, VAL(), 2, 1 << 22);
        else if (!strcmp(o, "--protocol")) a.protocol = VAL();
        else if (!strcmp(o, "--max-chunks")) a.max_chunks = (int)parse_long(o, VAL(), 1, 1 << 30);
        else if (!strcmp(o, "--json")) a.json = 1;
        else if (!strcmp(o, "--act8")) a.act8 = 1;
        else if (!strcmp(o, "--gpu")) a.gpu = 1;
        else if (!strcmp(o, "--gpu-f16")) a.gpu = 2;
        else if (!strcmp(o, "--gpu-device-cholesky")) a.gpu = 1, a.gpu_dchol = 1;
        else if (!strcmp(o, "--batch")) a.batch = (int)parse_long(o, VAL(), 1, 1 << 20);
        else if (!strcmp(o, "--no-bos")) a.no_bos = 1;
        else if (!strcmp(o, "-p") || !strcmp(o, "--prompt")) {
            const char *v = VAL();
            if (!strcmp(a.cmd, "bench")) a.n_prompt = (int)parse_long(o, v, 0, 1 << 20);
            else a.prompt = v;
        } else if (!strcmp(o, "-n")) a.n_predict = (int)parse_long(o, VAL(), 0, 1 << 22);
        else if (!strcmp(o, "-r")) a.reps = (int)parse_long(o, VAL(), 1, 1000);
        else if (!strcmp(o, "--temp")) a.temp = parse_float(o, VAL());
        else if (!strcmp(o, "--top-p")) a.top_p = parse_float(o, VAL());
        else if (!strcmp(o, "--seed")) { a.seed = (unsigned long long)parse_long(o, VAL(), 0, 0x7fffffffffffffffL); a.seed_set = 1; }
        else if (!strcmp(o, "--method")) a.method = VAL();
        else if (!strcmp(o, "--wbits")) a.wbits = (int)parse_long(o, VAL(), 1, 8);
        else if (!strcmp(o, "--groupsize")) a.groupsize = (int)parse_long(o, VAL(), 0, 65536);
        else if (!strcmp(o, "--qq-bits")) a.qq_bits = (int)parse_long(o, VAL(), 1, 8);
        else if (!strcmp(o, "--qq-groupsize")) a.qq_groupsize = (int)parse_long(o, VAL(), 1, 1 << 24);
        else if (!strcmp(o, "--outlier-threshold")) {
            const char *v = VAL();
            a.tau = !strcmp(v, "inf") ? INFINITY : parse_float(o, v);
        } else if (!strcmp(o, "--perm")) a.perm = VAL();
        else if (!strcmp(o, "--act-order")) a.act_order = 1;
        else if (!strcmp(o, "--percdamp")) a.percdamp = parse_float(o, VAL());
        else if (!strcmp(o, "--simplified-outliers")) a.simplified = 1;
        else if (!strcmp(o, "--head-bits")) a.head_bits = (int)parse_long(o, VAL(), 2, 8);
        else if (!strcmp(o, "--hessian-jitter")) {
            const char *v = VAL();
            char *end;
            a.jitter = strtod(v, &end);
            if (*end == ',') a.jitter_seed = strtoull(end + 1, &end, 10);
            if (*end || !(a.jitter >= 0 && a.jitter < 0.1)) die_usage("%s takes E[,SEED] with 0 <= E < 0.1", o);
        }
        else if (!strcmp(o, "--calib")) a.calib = VAL();
        else if (!strcmp(o, "--nsamples")) a.nsamples = (int)parse_long(o, VAL(), 1, 1 << 20);
        else if (!strcmp(o, "--seqlen")) a.seqlen = (int)parse_long(o, VAL(), 2, 1 << 20);
        else if (!strcmp(o, "--ids")) a.ids = VAL();
        else if (!strcmp(o, "--out") || !strcmp(o, "-o")) a.out = VAL();
        else if (!strcmp(o, "-h") || !strcmp(o, "--help")) { usage(stdout); exit(0); }
        else if (o[0] == '-' && o[1]) die_usage("unknown option %s", o);
        else if (!a.model) a.model = o;
        else die_usage("unexpected argument %s", o);
#undef VAL
    }
    if (!a.model) die_usage("%s: no MODEL given", a.cmd);
    return a;
}

static spqr_model *load_model(const args *a) {
    spqr_model *m;
    spqr_error err;
    spqr_load_opts lo = {a->tokenizer, 0};
    if (spqr_model_load(a->model, &lo, &m, &err)) die("%s", err.msg);
    return m;
}

static const spqr_tokenizer *need_tokenizer(const spqr_model *m) {
    const spqr_tokenizer *t = spqr_model_tokenizer(m);
    if (!t) die("%s: no tokenizer found next to the model; pass --tokenizer FILE", spqr_model_path(m));
    return t;
}

static spqr_ctx *new_ctx(const spqr_model *m, int n_ctx, int n_batch, const args *a) {
    spqr_ctx *c;
    spqr_error err;
    spqr_ctx_opts o = {.n_ctx = n_ctx, .n_batch = n_batch, .n_threads = a->threads, .act8 = a->act8, .gpu = a->gpu};
    if (spqr_ctx_new(m, &o, &c, &err)) die("%s", err.msg);
    return c;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fmt_dur(double s, char *buf, size_t cap) {
    if (s < 60) snprintf(buf, cap, "%.0fs", s);
    else if (s < 3600) snprintf(buf, cap, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(buf, cap, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

/* ---- ppl --------------------------------------------------------------------------------------- */

static void ppl_progress(const spqr_ppl_progress *p, void *user) {
    (void)user;
    char el[32], eta[32];
    fmt_dur(p->seconds, el, sizeof el);
    fmt_dur(p->eta_seconds, eta, sizeof eta);
    int tty = isatty(2);
    fprintf(stderr, "%s[%d/%d] ppl %.4f  %s elapsed, ETA %s%s", tty ? "\r" : "", p->chunk, p->n_chunks, p->ppl, el, eta, tty ? "   " : "\n");
    if (tty && p->chunk == p->n_chunks) fputc('\n', stderr);
}

static int cmd_ppl(const args *a) {
    if (!a->text) die_usage("%s: --text FILE is required", "ppl");
    spqr_ppl_protocol proto = SPQR_PPL_GPTQ;
    if (a->protocol && !strcmp(a->protocol, "llamacpp")) proto = SPQR_PPL_LLAMACPP;
    else if (a->protocol && strcmp(a->protocol, "gptq") != 0) die_usage("unknown protocol %s (gptq, llamacpp)", a->protocol);
    spqr_model *m = load_model(a);
    const spqr_tokenizer *tok = need_tokenizer(m);
    FILE *f = fopen(a->text, "rb");
    if (!f) die("%s: cannot open: %s", a->text, strerror(errno));
    size_t cap = 1 << 20, len = 0, r;
    char *buf = malloc(cap);
    while (buf && (r = fread(buf + len, 1, cap - len, f)) > 0) {
        len += r;
        if (len == cap) buf = realloc(buf, cap *= 2);
    }
    if (!buf || ferror(f)) die("%s: read failed", a->text);
    fclose(f);
    spqr_error err;
    int32_t *ids;
    size_t n;
    double t0 = now_s();
    if (spqr_tokenizer_encode(tok, buf, len, 1, &ids, &n, &err)) die("%s: %s", a->text, err.msg);
    free(buf);
    const int max_ctx = spqr_model_config(m)->max_seq_len;
    const int ctx = a->ctx ? a->ctx : (max_ctx < 2048 ? max_ctx : 2048);
    fprintf(stderr, "spqr: %s: %zu tokens (%.2f s); %s protocol, ctx %d, %zu chunks%s\n", a->text, n, now_s() - t0,
            proto == SPQR_PPL_GPTQ ? "gptq" : "llamacpp", ctx, n / (size_t)ctx, a->max_chunks ? " (limited by --max-chunks)" : "");
    spqr_ctx *c = new_ctx(m, ctx, a->batch ? (a->batch < ctx ? a->batch : ctx) : ctx < 512 ? ctx : 512, a);
    spqr_ppl_opts po = {ctx, proto, a->max_chunks, ppl_progress, NULL};
    spqr_ppl_result res;
    if (spqr_ppl_eval(c, ids, n, &po, &res, &err)) die("%s", err.msg);
    double tps = res.tokens / res.seconds;
    if (a->json) {
        printf("{\"model\":");
        json_str(stdout, a->model);
        printf(",\"text\":");
        json_str(stdout, a->text);
        printf(",\"protocol\":\"%s\",\"ctx\":%d,\"threads\":%d,\"ppl\":%.6f,\"nll\":%.8f,\"chunks\":%d,\"tokens\":%lld,\"scored\":%lld,"
               "\"text_tokens\":%zu,\"seconds\":%.3f,\"tokens_per_second\":%.1f,\"chunk_nll\":[",
               proto == SPQR_PPL_GPTQ ? "gptq" : "llamacpp", ctx, spqr_ctx_n_threads(c), res.ppl, res.nll, res.chunks,
               (long long)res.tokens, (long long)res.scored, n, res.seconds, tps);
        for (int i = 0; i < res.chunks; i++) printf("%s%.8f", i ? "," : "", res.chunk_nll[i]);
        printf("]}\n");
    } else {
        printf("ppl = %.4f  (nll %.6f over %lld scored tokens, %d chunks of %d; %.1f s, %.0f tokens/s, %d threads)\n", res.ppl, res.nll,
               (long long)res.scored, res.chunks, ctx, res.seconds, tps, spqr_ctx_n_threads(c));
    }
    spqr_free(res.chunk_nll);
    spqr_free(ids);
    spqr_ctx_free(c);
    spqr_model_free(m);
    return 0;
}

/* ---- run --------------------------------------------------------------------------------------- */

static int cmd_run(const args *a) {
    spqr_model *m = load_model(a);
    const spqr_config *cfg = spqr_model_config(m);
    const spqr_tokenizer *tok = need_tokenizer(m);
    const char *prompt = a->prompt ? a->prompt : "";
    spqr_error err;
    int32_t *ids;
    size_t n;
    if (spqr_tokenizer_encode(tok, prompt, strlen(prompt), 1, &ids, &n, &err)) die("%s", err.msg);
    int n_gen = a->n_predict >= 0 ? a->n_predict : 128;
    long total = (long)n + n_gen;
    if (total > cfg->max_seq_len) {
        if ((long)n >= cfg->max_seq_len) die("prompt of %zu tokens does not fit the model's context of %d", n, cfg->max_seq_len);
        n_gen = cfg->max_seq_len - (int)n;
        total = cfg->max_seq_len;
    }
    spqr_ctx *c = new_ctx(m, (int)total, 0, a);
    spqr_sampler *s;
    if (spqr_sampler_new(cfg->vocab_size, a->temp, a->top_p, a->seed, &s, &err)) die("%s", err.msg);
    char piece[256];
    for (size_t i = 0; i < n; i++) { /* echo the prompt as the tokenizer sees it */
        spqr_tokenizer_token_text(tok, i ? ids[i - 1] : -1, ids[i], piece, sizeof piece);
        fputs(piece, stdout);
    }
    fflush(stdout);
    double t0 = now_s();
    const int nb = spqr_ctx_n_batch(c);
    for (size_t p = 0; p < n; p += (size_t)nb) {
        int k = n - p < (size_t)nb ? (int)(n - p) : nb;
        if (spqr_ctx_forward(c, ids + p, k, (int)p, 0, &err)) die("%s", err.msg);
    }
    double t1 = now_s();
    int prev = ids[n - 1], pos = (int)n, generated = 0;
    while (generated < n_gen) {
        int next = spqr_sampler_sample(s, spqr_ctx_logits(c));
        if (next == cfg->eos_id) break;
        spqr_tokenizer_token_text(tok, prev, next, piece, sizeof piece);
        fputs(piece, stdout);
        fflush(stdout);
        generated++;
        prev = next;
        if (generated == n_gen) break;
        int32_t t = next;
        if (spqr_ctx_forward(c, &t, 1, pos++, 0, &err)) die("%s", err.msg);
    }
    double t2 = now_s();
    printf("\n");
    fflush(stdout);
    fprintf(stderr, "spqr: prompt %zu tokens in %.3f s (%.1f tok/s); generated %d tokens in %.3f s (%.1f tok/s); %d threads\n", n, t1 - t0,
            n / (t1 - t0), generated, t2 - t1, generated > 1 ? (generated - 1) / (t2 - t1) : 0.0, spqr_ctx_n_threads(c));
    spqr_sampler_free(s);
    spqr_free(ids);
    spqr_ctx_free(c);
    spqr_model_free(m);
    return 0;
}

/* ---- inspect ----------------------------------------------------------------------------------- */

static const char *rope_name(const spqr_config *c) {
    static const char *styles[] = {"rotate-half", "interleaved"};
    return styles[c->rope_style == SPQR_ROPE_INTERLEAVED];
}

static const char *scaling_name(const spqr_config *c) {
    return c->rope_scaling == SPQR_ROPE_SCALING_LINEAR ? "linear" : c->rope_scaling == SPQR_ROPE_SCALING_LLAMA3 ? "llama3" : "none";
}

static int cmd_inspect(const args *a) {
    spqr_model *m = load_model(a);
    const spqr_config *c = spqr_model_config(m);
    const spqr_tokenizer *tok = spqr_model_tokenizer(m);
    int nt = spqr_model_n_tensors(m);
    uint64_t bytes = 0;
    spqr_tensor_info ti;
    for (int i = 0; i < nt; i++) { spqr_model_tensor_info(m, i, &ti); bytes += ti.nbytes; }
    if (a->json) {
        printf("{\"model\":");
        json_str(stdout, a->model);
        printf(",\"arch\":");
        json_str(stdout, c->arch);
        printf(",\"dim\":%d,\"hidden_dim\":%d,\"n_layers\":%d,\"n_heads\":%d,\"n_kv_heads\":%d,\"head_dim\":%d,\"vocab_size\":%d,"
               "\"max_seq_len\":%d,\"norm_eps\":%g,\"rope_theta\":%g,\"rope_style\":\"%s\",\"rope_scaling\":\"%s\",\"rope_factor\":%g,"
               "\"tied_embeddings\":%s,\"attn_bias\":%s,\"bos_id\":%d,\"eos_id\":%d,\"n_params\":%lld,\"bytes\":%llu,",
               c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->vocab_size, c->max_seq_len, c->norm_eps,
               c->rope_theta, rope_name(c), scaling_name(c), c->rope_factor, c->tied_embeddings ? "true" : "false",
               c->attn_bias ? "true" : "false", c->bos_id, c->eos_id, (long long)spqr_model_n_params(m), (unsigned long long)bytes);
        if (spqr_model_meta(m)) printf("\"meta\":%s,", spqr_model_meta(m)); /* the .spqr metadata, verbatim JSON */
        printf("\"tensors\":[");
        for (int i = 0; i < nt; i++) {
            spqr_model_tensor_info(m, i, &ti);
            printf("%s{\"name\":", i ? "," : "");
            json_str(stdout, ti.name);
            printf(",\"dtype\":\"%s\",\"shape\":[", spqr_dtype_name(ti.dtype));
            for (int d = 0; d < ti.n_dims; d++) printf("%s%lld", d ? "," : "", (long long)ti.shape[d]);
            printf("],\"bytes\":%llu}", (unsigned long long)ti.nbytes);
        }
        printf("]}\n");
    } else {
        printf("model        %s\narch         %s\n", a->model, c->arch);
        printf("dim          %d\nhidden_dim   %d\nn_layers     %d\nn_heads      %d\nn_kv_heads   %d\nhead_dim     %d\n", c->dim, c->hidden_dim,
               c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim);
        printf("vocab_size   %d\nmax_seq_len  %d\nnorm_eps     %g\nrope         theta %g, %s, scaling %s", c->vocab_size, c->max_seq_len,
               c->norm_eps, c->rope_theta, rope_name(c), scaling_name(c));
        if (c->rope_scaling) printf(" (factor %g)", c->rope_factor);
        printf("\ntied         %s\nattn_bias    %s\nbos/eos      %d / %d\n", c->tied_embeddings ? "yes" : "no", c->attn_bias ? "yes" : "no",
               c->bos_id, c->eos_id);
        if (tok) printf("tokenizer    %d pieces\n", spqr_tokenizer_vocab_size(tok));
        else printf("tokenizer    none found\n");
        spqr_quant_info qi;
        if (spqr_model_quant_info(m, &qi) == SPQR_OK) {
            printf("quantization %s w%d", qi.method, qi.wbits);
            if (qi.groupsize) printf(" g%d", qi.groupsize);
            if (!strcmp(qi.method, "spqr")) {
                printf(", stats %d bits / %d rows, outlier threshold %g", qi.qq_bits, qi.qq_groupsize, qi.outlier_threshold);
            }
            if (qi.nsamples) printf(", %s, percdamp %g, calibration %d x %d", qi.act_order ? "act order" : "identity order", qi.percdamp, qi.nsamples, qi.seqlen);
            printf("\n             %lld weights, %.3f%% outliers, %.4f bits (paper), %.4f bits (file)\n", (long long)qi.quantized_weights,
                   qi.quantized_weights ? 100.0 * qi.n_outliers / qi.quantized_weights : 0.0, qi.bits_paper, qi.bits_file);
        }
        printf("\n%-56s %-5s %-16s %12s\n", "tensor", "dtype", "shape", "bytes");
        for (int i = 0; i < nt; i++) {
            spqr_model_tensor_info(m, i, &ti);
            char shape[64] = "";
            for (int d = 0; d < ti.n_dims; d++) snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%lld", d ? " x " : "", (long long)ti.shape[d]);
            printf("%-56s %-5s %-16s %12llu\n", ti.name, spqr_dtype_name(ti.dtype), shape, (unsigned long long)ti.nbytes);
        }
        printf("\n%d tensors, %lld parameters, %llu bytes (%.2f MiB)\n", nt, (long long)spqr_model_n_params(m), (unsigned long long)bytes,
               bytes / 1048576.0);
    }
    spqr_model_free(m);
    return 0;
}

/* ---- tokenize ---------------------------------------------------------------------------------- */

static int cmd_tokenize(const args *a) {
    if (!a->text) die_usage("%s: --text STRING is required", "tokenize");
    spqr_load_opts lo = {a->tokenizer, 0};
    spqr_model *m;
    spqr_error err;
    if (spqr_model_load(a->model, &lo, &m, &err)) die("%s", err.msg);
    const spqr_tokenizer *tok = need_tokenizer(m);
    int32_t *ids;
    size_t n;
    if (spqr_tokenizer_encode(tok, a->text, strlen(a->text), !a->no_bos, &ids, &n, &err)) die("%s", err.msg);
    if (a->json) {
        printf("{\"n_tokens\":%zu,\"ids\":[", n);
        for (size_t i = 0; i < n; i++) printf("%s%d", i ? "," : "", ids[i]);
        printf("],\"pieces\":[");
        for (size_t i = 0; i < n; i++) {
            if (i) putchar(',');
            json_str(stdout, spqr_tokenizer_piece(tok, ids[i]));
        }
        printf("]}\n");
    } else {
        for (size_t i = 0; i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
        printf("\n");
    }
    spqr_free(ids);
    spqr_model_free(m);
    return 0;
}

/* ---- logits ------------------------------------------------------------------------------------ */

static int cmd_logits(const args *a) {
    if (!a->ids || !a->out) die_usage("%s: --ids LIST and --out FILE are required", "logits");
    size_t cap = 16, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    for (const char *p = a->ids; ids && *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > INT32_MAX || (*end && *end != ',')) die_usage("--ids: '%s' is not a comma-separated list of token ids", a->ids);
        if (n == cap) ids = realloc(ids, (cap *= 2) * sizeof *ids);
        if (!ids) break;
        ids[n++] = (int32_t)v;
        p = *end ? end + 1 : end;
    }
    if (!ids) die("out of memory");
    if (!n) die_usage("--ids: '%s' has no ids", a->ids);
    spqr_load_opts lo = {a->tokenizer, 1};
    spqr_model *m;
    spqr_error err;
    if (spqr_model_load(a->model, &lo, &m, &err)) die("%s", err.msg);
    const spqr_config *cfg = spqr_model_config(m);
    if ((long)n > cfg->max_seq_len) die("%zu ids exceed the model's context of %d", n, cfg->max_seq_len);
    spqr_ctx *c = new_ctx(m, (int)n, (int)n, a);
    if (spqr_ctx_forward(c, ids, (int)n, 0, 1, &err)) die("%s", err.msg);
    FILE *f = fopen(a->out, "wb");
    if (!f) die("%s: cannot create: %s", a->out, strerror(errno));
    size_t count = n * (size_t)cfg->vocab_size;
    if (fwrite(spqr_ctx_logits(c), sizeof(float), count, f) != count || fclose(f) != 0) die("%s: write failed", a->out);
    fprintf(stderr, "spqr: wrote %zu x %d float32 logits to %s\n", n, cfg->vocab_size, a->out);
    free(ids);
    spqr_ctx_free(c);
    spqr_model_free(m);
    return 0;
}

/* ---- bench ------------------------------------------------------------------------------------- */

static void mean_std(const double *x, int n, double *mean, double *sd) {
    double s = 0, ss = 0;
    for (int i = 0; i < n; i++) s += x[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) ss += (x[i] - *mean) * (x[i] - *mean);
    *sd = n > 1 ? sqrt(ss / (n - 1)) : 0;
}

static int cmd_bench(const args *a) {
    spqr_load_opts lo = {a->tokenizer, 1};
    spqr_model *m;
    spqr_error err;
    if (spqr_model_load(a->model, &lo, &m, &err)) die("%s", err.msg);
    const spqr_config *cfg = spqr_model_config(m);
    int np = a->n_prompt, ng = a->n_predict >= 0 ? a->n_predict : 128;
    if (np > cfg->max_seq_len || ng > cfg->max_seq_len) die("-p %d or -n %d exceeds the model's context of %d", np, ng, cfg->max_seq_len);
    if (np + ng < 1) die_usage("%s: nothing to run (-p 0 -n 0)", "bench");
    spqr_ctx *c = new_ctx(m, np > ng ? np : ng, np > 0 ? (np < 512 ? np : 512) : 1, a); /* prefill and decode are separate tests */
    int32_t *ids = malloc((size_t)(np + 1) * sizeof *ids);
    uint64_t rng = 42;
    for (int i = 0; i <= np; i++) { /* fixed pseudo-random tokens: speed does not depend on them */
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        ids[i] = (int32_t)((rng >> 33) % (uint64_t)cfg->vocab_size);
    }
    double pp[1000], tg[1000];
    const int nb = spqr_ctx_n_batch(c);
    for (int r = -1; r < a->reps; r++) { /* r = -1: warm-up */
        double t0 = now_s();
        for (int p = 0; p < np; p += nb) {
            int k = np - p < nb ? np - p : nb;
            if (spqr_ctx_forward(c, ids + p, k, p, 0, &err)) die("%s", err.msg);
        }
        double t1 = now_s();
        for (int i = 0; i < ng; i++) { /* generation from an empty context, as llama-bench's tg test */
            int32_t t = ids[i % (np + 1)];
            if (spqr_ctx_forward(c, &t, 1, i, 0, &err)) die("%s", err.msg);
        }
        double t2 = now_s();
        if (r >= 0) {
            pp[r] = np > 0 ? np / (t1 - t0) : 0;
            tg[r] = ng > 0 ? ng / (t2 - t1) : 0;
        }
    }
    double pm, ps, tm, ts;
    mean_std(pp, a->reps, &pm, &ps);
    mean_std(tg, a->reps, &tm, &ts);
    /* the memory roofline: weights read per decoded token against this machine's read bandwidth
       (a 2 GiB buffer: well above the last-level cache), and against the bandwidth of a buffer the
       size of the weights (where they fit in the last-level cache, decode reads them from there) */
    const int64_t wbytes = spqr_model_decode_bytes(m);
    double bw = 0, bw_model = 0;
    if (spqr_measure_read_bandwidth((size_t)2 << 30, spqr_ctx_n_threads(c), &bw, &err)) die("%s", err.msg);
    if (spqr_measure_read_bandwidth((size_t)wbytes, spqr_ctx_n_threads(c), &bw_model, &err)) die("%s", err.msg);
    const double eff = tm * (double)wbytes / 1e9, roof = bw > 0 ? eff / bw : 0, roof_model = bw_model > 0 ? eff / bw_model : 0;
    if (a->json) {
        printf("{\"model\":");
        json_str(stdout, a->model);
        printf(",\"threads\":%d,\"kernels\":\"%s\",\"blas_core\":\"%s\",\"n_prompt\":%d,\"n_gen\":%d,\"reps\":%d,\"prefill_tok_s\":%.2f,\"prefill_tok_s_std\":%.2f,"
               "\"decode_tok_s\":%.2f,\"decode_tok_s_std\":%.2f,\"weight_bytes_per_token\":%lld,\"effective_gbs\":%.2f,\"mem_read_gbs\":%.2f,"
               "\"roofline_fraction\":%.4f,\"model_size_read_gbs\":%.2f,\"model_size_roofline_fraction\":%.4f}\n",
               spqr_ctx_n_threads(c), spqr_ctx_kernels(c), spqr_blas_core(), np, ng, a->reps, pm, ps, tm, ts, (long long)wbytes, eff, bw, roof,
               bw_model, roof_model);
    } else {
        printf("BLAS: OpenBLAS, %s kernels\n", spqr_blas_core());
        printf("| model | threads | kernels | test | t/s |\n|---|---|---|---|---|\n");
        if (np) printf("| %s | %d | %s | pp%d | %.1f ± %.1f |\n", a->model, spqr_ctx_n_threads(c), spqr_ctx_kernels(c), np, pm, ps);
        if (ng) printf("| %s | %d | %s | tg%d | %.1f ± %.1f |\n", a->model, spqr_ctx_n_threads(c), spqr_ctx_kernels(c), ng, tm, ts);
        printf("decode reads %.1f MB of weights per token: %.1f GB/s effective, %.0f%% of the %.1f GB/s read bandwidth measured with 2 GiB\n"
               "(%.0f%% of the %.1f GB/s measured with a buffer of the weights' size, which may sit in cache)\n",
               wbytes / 1e6, eff, 100 * roof, bw, 100 * roof_model, bw_model);
    }
    free(ids);
    spqr_ctx_free(c);
    spqr_model_free(m);
    return 0;
}

/* ---- quantize --------------------------------------------------------------------------------- */

typedef struct { char *s; size_t n, cap; } strbuf; /* growable string */

typedef struct {
    double percdamp;     /* requested */
    strbuf layers; /* JSON array of per-module results */
} quant_ui;

static void quant_progress(const spqr_quant_module *pm, void *user) {
    quant_ui *ui = user;
    const double requested = ui->percdamp;
    char *p = ui->layers.s;
    size_t need = ui->layers.n + 512;
    if (need > ui->layers.cap) {
        p = realloc(ui->layers.s, need * 2);
        if (!p) die("out of memory");
        ui->layers.s = p;
        ui->layers.cap = need * 2;
    }
    ui->layers.n += (size_t)snprintf(ui->layers.s + ui->layers.n, ui->layers.cap - ui->layers.n,
                                     "%s{\"block\":%d,\"module\":\"%s\",\"rows\":%d,\"cols\":%d,\"outlier_share\":%.6f,\"rel_err\":%.6f,"
                                     "\"bits_paper\":%.4f,\"bits_file\":%.4f,\"percdamp\":%g,\"seconds\":%.3f}",
                                     ui->layers.n ? "," : "", pm->block - 1, pm->module, pm->rows, pm->cols, pm->outlier_share,
                                     isnan(pm->rel_err) ? -1.0 : pm->rel_err, pm->bits_paper, pm->bits_file, pm->percdamp_used, pm->seconds);
    char el[32], eta[32], err[32];
    fmt_dur(pm->elapsed, el, sizeof el);
    fmt_dur(pm->eta, eta, sizeof eta);
    if (isnan(pm->rel_err)) snprintf(err, sizeof err, "-");
    else snprintf(err, sizeof err, "%.4f", pm->rel_err);
    fprintf(stderr, "[%2d/%d] %-17s %5dx%-5d outliers %6.3f%%  rel.err %s  bits %.3f/%.3f  %5.2fs  (%s elapsed, ETA %s)", pm->block, pm->n_blocks,
            pm->module, pm->rows, pm->cols, 100 * pm->outlier_share, err, pm->bits_paper, pm->bits_file, pm->seconds, el, eta);
    if (pm->percdamp_used > requested * (1 + 1e-9)) fprintf(stderr, "  H not positive definite: damping raised to %g", pm->percdamp_used);
    fputc('\n', stderr);
}

static int cmd_quantize(const args *a) {
    if (!a->out) die_usage("%s: -o OUT is required", "quantize");
    spqr_method method = SPQR_METHOD_SPQR;
    if (a->method && !strcmp(a->method, "gptq")) method = SPQR_METHOD_GPTQ;
    else if (a->method && !strcmp(a->method, "rtn")) method = SPQR_METHOD_RTN;
    else if (a->method && strcmp(a->method, "spqr") != 0) die_usage("unknown method %s (spqr, gptq, rtn)", a->method);
    spqr_quant_opts o = spqr_quant_defaults(method);
    if (a->wbits >= 0) o.wbits = a->wbits;
    if (a->groupsize >= 0) o.groupsize = a->groupsize;
    if (a->qq_bits >= 0) o.qq_bits = a->qq_bits;
    if (a->qq_groupsize >= 0) o.qq_groupsize = a->qq_groupsize;
    if (!isnan(a->tau)) o.outlier_threshold = a->tau;
    if (a->act_order >= 0) o.act_order = a->act_order;
    if (a->perm && !strcmp(a->perm, "identity")) o.act_order = 0;
    else if (a->perm && !strcmp(a->perm, "act_order")) o.act_order = 1;
    else if (a->perm) die_usage("unknown --perm %s (act_order, identity)", a->perm);
    if (!isnan(a->percdamp)) o.percdamp = a->percdamp;
    if (a->simplified) o.simplified_outliers = 1;
    o.head_bits = a->head_bits;
    o.hessian_jitter = a->jitter;
    o.jitter_seed = a->jitter_seed;
    o.gpu = a->gpu != 0;
    o.gpu_device_cholesky = a->gpu_dchol;
    if (a->nsamples > 0) o.nsamples = a->nsamples;
    if (a->seqlen > 0) o.seqlen = a->seqlen;
    o.seed = a->seed_set ? a->seed : 0;
    o.n_threads = a->threads;
    quant_ui ui = {o.percdamp, {0}};
    o.progress = quant_progress;
    o.progress_user = &ui;
    char *calib = a->calib ? strdup(a->calib) : NULL;
    const char *files[64];
    int nf = 0;
    for (char *tok = calib ? strtok(calib, ",") : NULL; tok; tok = strtok(NULL, ","))
        if (nf < 64) files[nf++] = tok;
        else die_usage("%s: at most 64 calibration files", "--calib");
    if (method != SPQR_METHOD_RTN && nf == 0) die_usage("%s: GPTQ and SpQR need calibration text: --calib FILE[,FILE...]", "quantize");
    o.calib_files = files;
    o.n_calib_files = nf;
    spqr_model *m = load_model(a);
    if (!spqr_model_tokenizer(m)) need_tokenizer(m);
    const spqr_config *cfg = spqr_model_config(m);
    if (o.seqlen > cfg->max_seq_len && method != SPQR_METHOD_RTN) o.seqlen = cfg->max_seq_len;
    fprintf(stderr, "spqr: quantizing %s with %s, w%d", a->model, a->method ? a->method : "spqr", o.wbits);
    if (o.groupsize) fprintf(stderr, " g%d", o.groupsize);
    if (method == SPQR_METHOD_SPQR) fprintf(stderr, ", qq %d bits / %d rows, outlier threshold %g", o.qq_bits, o.qq_groupsize, o.outlier_threshold);
    if (method != SPQR_METHOD_RTN)
        fprintf(stderr, ", %s, percdamp %g; calibration %d x %d tokens, seed %llu", o.act_order ? "act order" : "identity order", o.percdamp,
                o.nsamples, o.seqlen, (unsigned long long)o.seed);
    fputc('\n', stderr);
    spqr_quant_summary s;
    spqr_error err;
    if (spqr_quantize(m, a->out, &o, &s, &err)) die("%s", err.msg);
    fprintf(stderr, "spqr: wrote %s: %.2f MiB; %lld quantized weights at %.4f bits (paper) / %.4f bits (file); outliers %.3f%%; "
                    "%.2f MiB kept in 16/32 bits (embeddings, head, norms); %.1f s with %d threads\n",
            a->out, s.file_bytes / 1048576.0, (long long)s.quantized_weights, s.bits_paper, s.bits_file, 100.0 * s.n_outliers / s.quantized_weights,
            s.kept_bytes / 1048576.0, s.seconds, s.threads);
    if (a->json) {
        printf("{\"model\":");
        json_str(stdout, a->model);
        printf(",\"out\":");
        json_str(stdout, a->out);
        printf(",\"method\":\"%s\",\"wbits\":%d,\"groupsize\":%d,\"quantized_weights\":%lld,\"outliers\":%lld,\"outlier_share\":%.6f,"
               "\"bits_paper\":%.6f,\"bits_file\":%.6f,\"file_bytes\":%llu,\"kept_bytes\":%llu,\"calib_seconds\":%.2f,\"seconds\":%.2f,\"threads\":%d,"
               "\"layers\":[%s]}\n",
               a->method ? a->method : "spqr", o.wbits, o.groupsize, (long long)s.quantized_weights, (long long)s.n_outliers,
               (double)s.n_outliers / s.quantized_weights, s.bits_paper, s.bits_file, (unsigned long long)s.file_bytes, (unsigned long long)s.kept_bytes,
               s.calib_seconds, s.seconds, s.threads, ui.layers.s ? ui.layers.s : "");
    }
    free(ui.layers.s);
    free(calib);
    spqr_model_free(m);
    return 0;
}

/* OpenBLAS picks its kernels when it loads; on a CPU newer than it, its generic ones (see
 * spqr_blas_core_advice): re-execute once with OPENBLAS_CORETYPE set. A set variable is kept. */
static void blas_core_fixup(char **argv) {
    const char *want = getenv("OPENBLAS_CORETYPE") ? NULL : spqr_blas_core_advice();
    if (!want) return;
    setenv("OPENBLAS_CORETYPE", want, 1);
    execv("/proc/self/exe", argv); /* on failure, carry on with the generic kernels */
}

int main(int argc, char **argv) {
    blas_core_fixup(argv);
    args a = parse_args(argc, argv);
    if (!strcmp(a.cmd, "ppl")) return cmd_ppl(&a);
    if (!strcmp(a.cmd, "run")) return cmd_run(&a);
    if (!strcmp(a.cmd, "inspect")) return cmd_inspect(&a);
    if (!strcmp(a.cmd, "tokenize")) return cmd_tokenize(&a);
    if (!strcmp(a.cmd, "logits")) return cmd_logits(&a);
    if (!strcmp(a.cmd, "bench")) return cmd_bench(&a);
    if (!strcmp(a.cmd, "quantize")) return cmd_quantize(&a);
    die_usage("unknown command %s", a.cmd);
    return 2;
}
