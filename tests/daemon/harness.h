/* Test harness for wcodecd: a temporary directory with a model, a daemon
 * started on a socket there (readiness read from our own NOTIFY_SOCKET),
 * and the reference decode to compare what clients map against. */
#ifndef WDT_HARNESS_H
#define WDT_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <wcodec/wcodec.h>
#include <wcodec/wcodec_client.h>

typedef struct wdt_env {
    char dir[64];          /* temporary directory, removed by wdt_env_fini */
    char models[128];      /* dir/models: the daemon's root */
    char model[192];       /* dir/models/model.wcodec */
    wc_file *ref;          /* the same file, opened in the test process */
} wdt_env;

typedef struct wdt_daemon {
    pid_t pid;
    char sock[100];
    char conf[128];
    char log[128];
    int notify_fd;         /* our NOTIFY_SOCKET, a datagram socket */
    char notify_path[100];
} wdt_daemon;

/* Creates the directory and the model: the example model when meson found
 * one, else the real weights, else a synthetic safetensors file; encoded
 * with libwcodec. Returns 0 or prints why and returns -1. */
int wdt_env_init(wdt_env *e);
void wdt_env_fini(wdt_env *e);

/* Starts wcodecd with a config file holding `config` (ini text; roots and
 * socket are added) plus extra argv, and waits for READY=1. env_extra is
 * NULL or "NAME=value" strings for the daemon's environment. */
int wdt_daemon_start(wdt_daemon *d, const wdt_env *e, const char *config, const char *const *args,
                     const char *const *env_extra);
/* When > 0, the daemon's child sets RLIMIT_NOFILE (soft and hard) to this
 * before exec: a tight descriptor limit for the daemon alone, which then
 * runs without CAP_SYS_ADMIN and CAP_SYS_RESOURCE, as it would as its own
 * user (either capability lifts the kernel's limit on descriptors in
 * flight). */
extern unsigned wdt_daemon_nofile;

/* SIGTERM and wait; returns the exit status (0 expected), or -1 after a
 * signal. */
int wdt_daemon_stop(wdt_daemon *d);
void wdt_daemon_kill(wdt_daemon *d);
/* Waits up to timeout_ms for a notify datagram containing `needle`; 1 if
 * seen, 0 if not. Every datagram read is appended to seen (may be NULL). */
int wdt_notify_wait(wdt_daemon *d, const char *needle, int timeout_ms, char *seen, size_t seen_size);

wc_client *wdt_connect(const wdt_daemon *d);

/* The reference decode of tensor i (malloc'd; scales NULL when none). */
void wdt_reference(const wdt_env *e, size_t i, void **data, float **scales);
/* Compares a mapped tensor with the reference decode; 0 when equal. */
int wdt_check_tensor(const wdt_env *e, const wc_client_tensor *t);

/* Bytes the memfd backend charges for tensor i (its page-rounded layout). */
uint64_t wdt_footprint(const wdt_env *e, size_t i);

int64_t wdt_now_ms(void);
/* Polls stats until pred holds or timeout; returns 1 when it did. */
int wdt_stats_until(wc_client *c, bool (*pred)(const wc_client_stats *), int timeout_ms, wc_client_stats *last);

#endif
