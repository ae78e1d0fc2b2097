/* The subcommands of the wcodec tool; each returns the process exit code. */
#ifndef WCT_CMDS_H
#define WCT_CMDS_H

#include <wcodec/wcodec.h>

int wct_encode(int argc, char **argv);
int wct_decode(int argc, char **argv);
/* decode --folder: DIR/model.safetensors and the metadata's JSON files. */
int wct_decode_folder(const char *in, const char *dir, wc_dtype dtype, bool force, bool quiet);
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
