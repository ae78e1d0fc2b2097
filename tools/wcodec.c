/* wcodec: encode, decode, inspect and benchmark .wcodec files. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmds.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *what;
} cmds[] = {
    {"encode", wct_encode, "safetensors or a Hugging Face folder -> .wcodec (INT8, coded losslessly)"},
    {"decode", wct_decode, ".wcodec -> safetensors (N as I8 beside N_scale)"},
    {"info", wct_info, "show the tensors of a .wcodec file (--json for scripts)"},
    {"verify", wct_verify, "check every checksum and decode every tensor"},
    {"bench", wct_bench, "encode, decode and verify a model; print sizes and speeds"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: wcodec <command> [options] ...\n\ncommands:\n");
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        fprintf(out, "  %-8s %s\n", cmds[i].name, cmds[i].what);
    fprintf(out, "\n'wcodec <command> --help' describes each. Exit status: 0 on success, 1 on "
                 "failure, 2 on bad usage.\n");
}

int wct_report(const wc_err *e, int code)
{
    if (e->code == code && e->msg[0]) fprintf(stderr, "wcodec: %s\n", e->msg);
    else fprintf(stderr, "wcodec: %s\n", wc_strerror(code));
    return 1;
}

long wct_parse_long(const char *opt, const char *v, long min, long max)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || *end || end == v || x < min || x > max) {
        fprintf(stderr, "wcodec: %s needs an integer from %ld to %ld, not '%s'\n", opt, min, max, v);
        exit(2);
    }
    return x;
}

int wct_parse_name(const char *opt, const char *v, const char *const *names)
{
    for (int i = 0; names[i]; i++)
        if (!strcmp(v, names[i])) return i;
    fprintf(stderr, "wcodec: %s takes one of:", opt);
    for (int i = 0; names[i]; i++) fprintf(stderr, " %s", names[i]);
    fprintf(stderr, "; not '%s'\n", v);
    exit(2);
}

const char *const wct_pred_names[] = {"none", "left", "top", "avg", "planar", NULL};
const char *const wct_tx_names[] = {"none", "haar", "wht4", NULL};

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("wcodec %s (libwcodec %s, writes format version %d)\n", WC_VERSION_STRING, wc_version(), WC_FORMAT_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(argv[1], cmds[i].name)) return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "wcodec: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
