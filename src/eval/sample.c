/*
 * sample.c — token sampling: greedy, temperature, nucleus (top-p). xorshift64* random numbers, so a
 * seed gives the same tokens on every machine. The candidate buffer is allocated once.
 */
#include "core/core.h"

#include <math.h>
#include <stdlib.h>

typedef struct { float p; int id; } cand;

struct spqr_sampler {
    int vocab;
    float temp, top_p;
    uint64_t rng;
    cand *c; /* [vocab] */
};

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

static float rng_f32(uint64_t *s) { return (float)(rng_next(s) >> 40) / 16777216.0f; } /* [0, 1) */

spqr_status spqr_sampler_new(int vocab_size, float temp, float top_p, uint64_t seed, spqr_sampler **out, spqr_error *err) {
    *out = NULL;
    if (vocab_size < 1) return spqr_set_err(err, SPQR_E_ARG, "sampler: vocab size %d", vocab_size);
    if (!isfinite(temp) || !(top_p > 0 && top_p <= 1)) return spqr_set_err(err, SPQR_E_ARG, "sampler: temperature must be finite and top-p in (0, 1]");
    spqr_sampler *s = calloc(1, sizeof *s);
    if (!s) return spqr_set_err(err, SPQR_E_NOMEM, "out of memory");
    s->c = spqr_calloc_array((size_t)vocab_size, sizeof *s->c);
    if (!s->c) { free(s); return spqr_set_err(err, SPQR_E_NOMEM, "out of memory"); }
    s->vocab = vocab_size;
    s->temp = temp;
    s->top_p = top_p;
    s->rng = seed * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL; /* never 0 */
    if (!s->rng) s->rng = 1;
    *out = s;
    return SPQR_OK;
}

void spqr_sampler_free(spqr_sampler *s) {
    if (!s) return;
    free(s->c);
    free(s);
}

static int cand_desc(const void *a, const void *b) {
    float x = ((const cand *)a)->p, y = ((const cand *)b)->p;
    return x < y ? 1 : x > y ? -1 : 0;
}

int spqr_sampler_sample(spqr_sampler *s, const float *logits) {
    int best = 0;
    for (int i = 1; i < s->vocab; i++)
        if (logits[i] > logits[best]) best = i;
    if (s->temp <= 0) return best;
    const float mx = logits[best];
    double sum = 0;
    for (int i = 0; i < s->vocab; i++) {
        s->c[i].id = i;
        s->c[i].p = expf((logits[i] - mx) / s->temp);
        sum += s->c[i].p;
    }
    int n = s->vocab;
    if (s->top_p < 1) {
        /* keep only candidates that can be in the nucleus (p >= (1-top_p)/(n-1) of the mass), then sort */
        const float cutoff = (float)((1 - s->top_p) / (s->vocab > 1 ? s->vocab - 1 : 1) * sum);
        n = 0;
        for (int i = 0; i < s->vocab; i++)
            if (s->c[i].p >= cutoff) s->c[n++] = (cand){s->c[i].p, i};
        qsort(s->c, (size_t)n, sizeof *s->c, cand_desc);
        double acc = 0;
        int k = 0;
        while (k < n) { acc += s->c[k++].p; if (acc >= s->top_p * sum) break; }
        n = k;
        sum = acc;
    }
    const double r = rng_f32(&s->rng) * sum;
    double acc = 0;
    for (int i = 0; i < n; i++) {
        acc += s->c[i].p;
        if (r < acc) return s->c[i].id;
    }
    return s->c[n - 1].id;
}
