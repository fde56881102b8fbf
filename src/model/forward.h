/*
 * forward.h — internal entry points of the forward pass, for evaluation and quantization code.
 */
#ifndef SPQR_FORWARD_H
#define SPQR_FORWARD_H

#include "core/pool.h"
#include "model/model_internal.h"

/* Receives the inputs of a block's linear layers: which = 0 (q/k/v), 1 (o), 2 (gate/up), 3 (down);
 * X is [n][cols], valid during the call. */
typedef void (*spqr_capture_fn)(void *user, int which, const float *X, int n, int cols);

/* spqr_ctx_new with the logits buffer optional (calibration never needs it). */
spqr_status spqr_ctx_new_ex(const spqr_model *m, const spqr_ctx_opts *opts, int with_logits, spqr_ctx **out, spqr_error *err);
/* Runs block `layer` alone on in[n][dim] (positions pos..pos+n-1 of a sequence whose earlier
 * positions went through this block in earlier calls) and writes out[n][dim] (may be NULL). */
spqr_status spqr_ctx_block(spqr_ctx *c, int layer, const float *in, float *out, int n, int pos, spqr_capture_fn cap, void *user,
                           spqr_error *err);
/* The embeddings of ids[0..n) into out[n][dim]; ids must be valid. */
void spqr_ctx_embed(const spqr_ctx *c, const int32_t *ids, int n, float *out);
spqr_pool *spqr_ctx_pool(spqr_ctx *c);
const spqr_model *spqr_ctx_model(const spqr_ctx *c);

#endif
