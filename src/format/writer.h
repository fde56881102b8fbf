/*
 * writer.h — writing a .spqr container (format.h, docs/FORMAT.md) atomically: a temporary file in
 * the target's directory, fsync, rename, fsync of the directory.
 */
#ifndef SPQR_WRITER_H
#define SPQR_WRITER_H

#include "core/core.h"
#include "format/format.h"

typedef struct spqr_wtensor {
    spqr_file_tensor entry; /* name, kind, n_dims, shape and (quantized) parameters, data_size; the
                               writer fills data_off and data_crc */
    const void *data;       /* entry.data_size bytes */
} spqr_wtensor;

/* Writes the file; on success *file_size (if not NULL) receives its size. */
spqr_status spqr_file_write(const char *path, const char *meta_json, const void *tok, uint64_t tok_size, spqr_wtensor *ts, uint32_t n,
                            uint64_t *file_size, spqr_error *err);

/* Appends the model config as a JSON object (the "config" member of the metadata). */
void spqr_config_json(spqr_sb *b, const spqr_config *c, int sliding_window);

#endif
