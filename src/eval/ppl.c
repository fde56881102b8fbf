/*
 * ppl.c — perplexity over a token stream, with the GPTQ/SpQR protocol or llama.cpp's.
 *
 * gptq:     chunk i = tokens[i*ctx, (i+1)*ctx) as they are (only chunk 0 starts with BOS);
 *           positions 0..ctx-2 predict the next token; chunk NLL = mean over those ctx-1.
 * llamacpp: chunk i = the same window with its first token replaced by BOS; positions
 *           ctx/2 .. ctx-2 predict the next token (llama-perplexity's "second half").
 * ppl = exp(total NLL / scored tokens). NLL = logsumexp(logits) - logit[target], in double.
 */
#include "model/forward.h"

#include <math.h>
#include <stdlib.h>


typedef struct {
    const float *logits; /* [rows][vocab] */
    const int32_t *targets;
    int rows, vocab;
    double *nll;         /* [rows] */
} nll_job;

static void nll_task(void *arg, int ith, int nth) {
    const nll_job *j = arg;
    int lo, hi;
    spqr_split(j->rows, ith, nth, 1, &lo, &hi);
    for (int r = lo; r < hi; r++) {
        const float *z = j->logits + (size_t)r * j->vocab;
        float mx = z[0];
        for (int v = 1; v < j->vocab; v++) mx = z[v] > mx ? z[v] : mx;
        double s = 0;
        for (int v = 0; v < j->vocab; v++) s += exp((double)(z[v] - mx));
        j->nll[r] = log(s) + (double)mx - (double)z[j->targets[r]];
    }
}

spqr_status spqr_ppl_eval(spqr_ctx *c, const int32_t *tokens, size_t n_tokens, const spqr_ppl_opts *opts, spqr_ppl_result *out,
                          spqr_error *err) {
    memset(out, 0, sizeof *out);
    spqr_ppl_opts o = {0};
    if (opts) o = *opts;
    const spqr_config *cfg = &spqr_ctx_model(c)->cfg;
    const int n_ctx = spqr_ctx_n_ctx(c), n_batch = spqr_ctx_n_batch(c);
    int ctx = o.n_ctx ? o.n_ctx : (n_ctx < 2048 ? n_ctx : 2048);
    if (ctx < 2 || ctx > n_ctx) return spqr_set_err(err, SPQR_E_RANGE, "perplexity: chunk length %d must be in [2, %d] (the context size)", ctx, n_ctx);
    if (o.protocol != SPQR_PPL_GPTQ && o.protocol != SPQR_PPL_LLAMACPP) return spqr_set_err(err, SPQR_E_ARG, "perplexity: unknown protocol");
    if (o.protocol == SPQR_PPL_LLAMACPP && cfg->bos_id < 0) return spqr_set_err(err, SPQR_E_ARG, "perplexity: the llamacpp protocol needs a BOS token");
    for (size_t i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= cfg->vocab_size) return spqr_set_err(err, SPQR_E_ARG, "perplexity: token %zu (%d) is outside the vocabulary", i, tokens[i]);
    int n_chunks = (int)(n_tokens / (size_t)ctx < (size_t)INT32_MAX ? n_tokens / (size_t)ctx : INT32_MAX);
    if (o.max_chunks > 0 && o.max_chunks < n_chunks) n_chunks = o.max_chunks;
    if (n_chunks < 1) return spqr_set_err(err, SPQR_E_RANGE, "perplexity: %zu tokens are fewer than one chunk of %d", n_tokens, ctx);

    const int first = o.protocol == SPQR_PPL_GPTQ ? 0 : ctx / 2; /* first scored position */
    const int per_chunk = ctx - 1 - first;
    out->chunk_nll = calloc((size_t)n_chunks, sizeof(double));
    int32_t *chunk = malloc((size_t)ctx * sizeof *chunk);
    double *nll = malloc((size_t)n_batch * sizeof *nll);
    if (!out->chunk_nll || !chunk || !nll) {
        free(chunk);
        free(nll);
        spqr_free(out->chunk_nll);
        out->chunk_nll = NULL;
        return spqr_set_err(err, SPQR_E_NOMEM, "perplexity: out of memory");
    }
    const double t0 = spqr_now();
    double total = 0;
    spqr_status st = SPQR_OK;
    for (int ci = 0; ci < n_chunks && !st; ci++) {
        memcpy(chunk, tokens + (size_t)ci * ctx, (size_t)ctx * sizeof *chunk);
        if (o.protocol == SPQR_PPL_LLAMACPP) chunk[0] = cfg->bos_id;
        double sum = 0;
        for (int p = 0; p < ctx - 1 && !st; p += n_batch) {
            /* positions p..p+nb-1; the last position of the chunk predicts nothing */
            int nb = ctx - p < n_batch ? ctx - p : n_batch;
            if ((st = spqr_ctx_forward(c, chunk + p, nb, p, 1, err))) break;
            int lo = first > p ? first - p : 0, hi = p + nb > ctx - 1 ? ctx - 1 - p : nb; /* rows to score */
            if (lo >= hi) continue;
            nll_job j = {spqr_ctx_logits(c) + (size_t)lo * cfg->vocab_size, chunk + p + lo + 1, hi - lo, cfg->vocab_size, nll};
            spqr_pool_run(spqr_ctx_pool(c), nll_task, &j);
            for (int r = 0; r < hi - lo; r++) sum += nll[r];
        }
        if (st) break;
        out->chunk_nll[ci] = sum / per_chunk;
        total += sum;
        if (o.progress) {
            spqr_ppl_progress pr;
            pr.chunk = ci + 1;
            pr.n_chunks = n_chunks;
            pr.ppl = exp(total / ((double)per_chunk * (ci + 1)));
            pr.seconds = spqr_now() - t0;
            pr.eta_seconds = pr.seconds / (ci + 1) * (n_chunks - ci - 1);
            o.progress(&pr, o.progress_user);
        }
    }
    free(chunk);
    free(nll);
    if (st) {
        spqr_free(out->chunk_nll);
        out->chunk_nll = NULL;
        return st;
    }
    out->chunks = n_chunks;
    out->tokens = (int64_t)n_chunks * ctx;
    out->scored = (int64_t)n_chunks * per_chunk;
    out->nll = total / (double)out->scored;
    out->ppl = exp(out->nll);
    out->seconds = spqr_now() - t0;
    return SPQR_OK;
}
