/* calib.c — see calib.h. */
#include "quant/calib.h"

#include <nettle/sha2.h>
#include <stdio.h>
#include <stdlib.h>

#define CALIB_MAX_FILE (1ull << 30)

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

spqr_status spqr_calib_sample(const spqr_tokenizer *tok, const char *const *files, int n_files, int nsamples, int seqlen, uint64_t seed,
                              int32_t *out, spqr_sb *meta, spqr_error *err) {
    if (n_files < 1) return spqr_set_err(err, SPQR_E_ARG, "calibration: no files (--calib FILE[,FILE...])");
    if (nsamples < 1 || seqlen < 2) return spqr_set_err(err, SPQR_E_ARG, "calibration: nsamples %d, seqlen %d", nsamples, seqlen);
    int32_t **toks = calloc((size_t)n_files, sizeof *toks);
    size_t *lens = calloc((size_t)n_files, sizeof *lens);
    if (!toks || !lens) { free(toks); free(lens); return spqr_set_err(err, SPQR_E_NOMEM, "out of memory"); }
    spqr_status st = SPQR_OK;
    uint64_t starts = 0;
    spqr_sb_printf(meta, "[");
    for (int f = 0; f < n_files && !st; f++) {
        char *text;
        size_t len;
        if ((st = spqr_read_file(files[f], CALIB_MAX_FILE, &text, &len, err))) break;
        struct sha256_ctx h;
        uint8_t dg[SHA256_DIGEST_SIZE];
        sha256_init(&h);
        sha256_update(&h, len, (const uint8_t *)text);
        sha256_digest(&h, sizeof dg, dg);
        st = spqr_tokenizer_encode(tok, text, len, 1, &toks[f], &lens[f], err);
        free(text);
        if (st) break;
        spqr_sb_printf(meta, "%s{\"path\":", f ? "," : "");
        spqr_sb_json_str(meta, files[f]);
        spqr_sb_printf(meta, ",\"bytes\":%zu,\"tokens\":%zu,\"sha256\":\"", len, lens[f]);
        for (size_t i = 0; i < sizeof dg; i++) spqr_sb_printf(meta, "%02x", dg[i]);
        spqr_sb_printf(meta, "\"}");
        if (lens[f] > (size_t)seqlen) starts += lens[f] - (size_t)seqlen;
    }
    spqr_sb_printf(meta, "]");
    if (!st && starts == 0) st = spqr_set_err(err, SPQR_E_RANGE, "calibration: no file has more than %d tokens", seqlen);
    if (!st) {
        uint64_t rng = seed * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL;
        if (!rng) rng = 1;
        for (int s = 0; s < nsamples; s++) {
            uint64_t r = rng_next(&rng) % starts;
            int f = 0;
            for (;; f++) {
                uint64_t k = lens[f] > (size_t)seqlen ? lens[f] - (size_t)seqlen : 0;
                if (r < k) break;
                r -= k;
            }
            memcpy(out + (size_t)s * seqlen, toks[f] + r, (size_t)seqlen * sizeof *out);
        }
    }
    for (int f = 0; f < n_files; f++) spqr_free(toks[f]);
    free(toks);
    free(lens);
    return st;
}
