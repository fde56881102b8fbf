/*
 * calib.h — calibration data: random windows of seqlen tokens from text files.
 *
 * Each file is tokenized whole (BOS first). A window starts at any position s with
 * s + seqlen < len(file tokens), every such (file, s) equally likely (files weighted by their number
 * of starts), drawn with xorshift64* seeded from `seed`: the same files and seed give the same
 * windows everywhere. Only a window starting at 0 begins with BOS, as in the GPTQ/SpQR code.
 */
#ifndef SPQR_CALIB_H
#define SPQR_CALIB_H

#include "core/core.h"

/* Fills out[nsamples][seqlen]. Appends to `meta` a JSON array describing the files (path, bytes,
 * tokens, sha256). */
spqr_status spqr_calib_sample(const spqr_tokenizer *tok, const char *const *files, int n_files, int nsamples, int seqlen, uint64_t seed,
                              int32_t *out, spqr_sb *meta, spqr_error *err);

#endif
