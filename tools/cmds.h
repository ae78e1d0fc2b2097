/* The subcommands of the wcodec tool; each returns the process exit code. */
#ifndef WCT_CMDS_H
#define WCT_CMDS_H

#include <wcodec/wcodec.h>

int wct_encode(int argc, char **argv);
int wct_decode(int argc, char **argv);
/* decode --folder: DIR/model.safetensors and the metadata's JSON files. */
int wct_decode_folder(const char *in, const char *dir, wc_dtype dtype, bool force, bool quiet);
/* Encodes in (a file, or a folder into one file) to out with a progress bar
 * labelled `label`; with verbose, the summary line. The exit code. */
int wct_encode_one(const char *in, const char *out, bool folder, wc_encode_opts *o,
                   const char *label, bool quiet, bool verbose);
/* 1 with a message if out exists and !force, else 0. */
int wct_check_output(const char *out, bool force);
/* encode --shards: a .wcodec per shard of dir into outdir, and the index. */
int wct_encode_shards(const char *dir, const char *outdir, wc_encode_opts *o, bool force,
                      bool quiet, bool verbose);
int wct_info(int argc, char **argv);
int wct_verify(int argc, char **argv);
int wct_bench(int argc, char **argv);

/* Prints "wcodec: <message>" for a failed call. */
int wct_report(const wc_err *e, int code);
/* Parses a positive integer option value, or exits with usage. */
long wct_parse_long(const char *opt, const char *v, long min, long max);
/* Index of v in the NULL-ended names, or exits with usage. */
int wct_parse_name(const char *opt, const char *v, const char *const *names);
extern const char *const wct_pred_names[], *const wct_tx_names[];

#endif
