/* Internal access to an open wc_file for the encoder, decoders and tools. */
#ifndef WC_READER_H
#define WC_READER_H

#include "format.h"

const wc_entry *wc_file_entry(const wc_file *f, size_t i);
/* The file's own descriptor (open for reading, O_CLOEXEC; owned by f, valid
 * until wc_file_close): every read of the file goes through it, with pread,
 * from any thread. */
int wc_file_fd(const wc_file *f);
/* Reads len bytes at offset off into buf through that descriptor; a failed
 * or short read (the file shrank after it was opened) is wc_read_fail's
 * WC_EIO, naming the tensor e (NULL: none). */
int wc_file_pread(const wc_file *f, const wc_entry *e, uint64_t off, uint64_t len, void *buf, wc_err *err);
/* The message of a failed read of the file `label` (sys_errno 0: it ended
 * early); returns WC_EIO. */
int wc_read_fail(const char *label, const wc_entry *e, uint64_t off, uint64_t len, int sys_errno, wc_err *err);

/* Whether out_size bytes (and, when scales, room for n_scales) hold the
 * decoded tensor e; WC_EINVAL with the message otherwise. */
int wc_entry_check_dst(const wc_file *f, const wc_entry *e, size_t out_size, const float *scales,
                       size_t n_scales, wc_err *err);
/* The message of a record whose XXH3 is wrong; returns WC_ECHECKSUM. */
int wc_record_hash_fail(const wc_file *f, const wc_entry *e, wc_err *err);
/* Reads the record of e through the file's descriptor and checks it against
 * its XXH3: 0, wc_record_hash_fail's WC_ECHECKSUM, or a read's WC_EIO. */
int wc_record_verify(const wc_file *f, const wc_entry *e, wc_err *err);
/* Checks the record of e (at rec) against its XXH3: 0 or wc_record_hash_fail. */
int wc_record_check_hash(const wc_file *f, const wc_entry *e, const uint8_t *rec, wc_err *err);

/* The decoder routines: the plain references, or the fastest for this CPU. */
struct wc_dsp;
const struct wc_dsp *wc_dsp_get(bool reference);

#endif
