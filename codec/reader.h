/* Internal access to an open wc_file for the encoder, decoders and tools. */
#ifndef WC_READER_H
#define WC_READER_H

#include "format.h"

const wc_entry *wc_file_entry(const wc_file *f, size_t i);
const uint8_t *wc_file_base(const wc_file *f);

/* The decoder routines: the plain references, or the fastest for this CPU. */
struct wc_dsp;
const struct wc_dsp *wc_dsp_get(bool reference);

#endif
