/* wcodecd: command line, configuration, and the loop. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wcd.h"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: wcodecd [options]\n"
        "\n"
        "Resident decode service for .wcodec model files: decodes tensors once, keeps them\n"
        "in shared memory and hands them to clients over a Unix socket (libwcodec-client).\n"
        "\n"
        "options (each overrides the same setting of the config file):\n"
        "  -c, --config FILE        ini file to read at start and on SIGHUP\n"
        "  -s, --socket PATH        listening socket (default " WC_CLIENT_DEFAULT_SOCKET ");\n"
        "                           ignored when systemd passes a socket\n"
        "  -r, --root DIR           serve model files only beneath DIR (repeatable)\n"
        "  -u, --allow-uids LIST    uids or user names allowed to connect ('*': any)\n"
        "  -g, --allow-gids LIST    gids or group names allowed to connect\n"
        "                           (neither given: only the daemon's own uid)\n"
        "  -b, --budget SIZE        memory for decoded tensors, e.g. 8G (default 4G)\n"
        "  -t, --threads N          decode threads (default: one per CPU)\n"
        "  -m, --socket-mode MODE   octal mode of the socket file (default 0660)\n"
        "      --max-frame SIZE     largest request frame accepted (default 1M)\n"
        "  -l, --log-level LEVEL    error, warning, notice, info (default) or debug\n"
        "      --backend MODE       auto (default: a GPU where one is usable, else the CPU),\n"
        "                           gpu (fail to start without one) or cpu\n"
        "  -o, --set S.KEY=VALUE    any setting of the config file, e.g. gpu.budget=40G,\n"
        "                           gpu.devices=0,1, gpu.ipc=legacy (repeatable)\n"
        "      --check-config       validate the configuration and exit\n"
        "  -h, --help               this text\n"
        "  -V, --version            print the version\n"
        "\n"
        "Signals: SIGTERM/SIGINT stop, SIGHUP reloads the config file. Logs go to stderr,\n"
        "one line per event. See docs/OPERATIONS.md.\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'},   {"socket", required_argument, 0, 's'},
        {"root", required_argument, 0, 'r'},     {"allow-uids", required_argument, 0, 'u'},
        {"allow-gids", required_argument, 0, 'g'}, {"budget", required_argument, 0, 'b'},
        {"threads", required_argument, 0, 't'},  {"socket-mode", required_argument, 0, 'm'},
        {"max-frame", required_argument, 0, 'F'}, {"log-level", required_argument, 0, 'l'},
        {"check-config", no_argument, 0, 'C'},   {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},        {"backend", required_argument, 0, 'B'},
        {"set", required_argument, 0, 'o'},      {0, 0, 0, 0},
    };
    const char *config_path = NULL;
    bool check_only = false;
    wcd_setting *cli = calloc((size_t)argc + 1, sizeof *cli);
    size_t n_cli = 0;
    if (!cli) return 1;
    int o;
    while ((o = getopt_long(argc, argv, "c:s:r:u:g:b:t:m:l:o:hV", opts, NULL)) != -1) {
        wcd_setting *s = &cli[n_cli];
        s->value = optarg;
        switch (o) {
        case 'c': config_path = optarg; continue;
        case 's': s->section = "daemon", s->key = "socket"; break;
        case 'r': s->section = "security", s->key = "roots"; break;
        case 'u': s->section = "security", s->key = "allow_uids"; break;
        case 'g': s->section = "security", s->key = "allow_gids"; break;
        case 'b': s->section = "cache", s->key = "budget"; break;
        case 't': s->section = "daemon", s->key = "threads"; break;
        case 'm': s->section = "daemon", s->key = "socket_mode"; break;
        case 'F': s->section = "limits", s->key = "max_frame"; break;
        case 'l': s->section = "daemon", s->key = "log_level"; break;
        case 'B': s->section = "daemon", s->key = "backend"; break;
        case 'o': {
            /* SECTION.KEY=VALUE, cut in place */
            char *dot = strchr(optarg, '.'), *eq = strchr(optarg, '=');
            if (!dot || !eq || dot > eq || dot == optarg || eq == dot + 1) {
                fprintf(stderr, "wcodecd: --set '%s': expected SECTION.KEY=VALUE, e.g. gpu.budget=40G\n", optarg);
                free(cli);
                return 2;
            }
            *dot = *eq = 0;
            s->section = optarg, s->key = dot + 1, s->value = eq + 1;
            break;
        }
        case 'C': check_only = true; continue;
        case 'h': usage(stdout); free(cli); return 0;
        case 'V': printf("wcodecd %s (protocol %d)\n", WCD_VERSION, WC_PROTOCOL_VERSION); free(cli); return 0;
        default: usage(stderr); free(cli); return 2;
        }
        n_cli++;
    }
    if (optind < argc) {
        fprintf(stderr, "wcodecd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        free(cli);
        return 2;
    }

    wcd_ctx ctx = {0};
    ctx.cli = cli;
    ctx.n_cli = n_cli;
    wc_err err = {0};
    int r = wcd_config_build(&ctx.cfg, config_path, cli, n_cli, &err);
    if (r) {
        wcd_log(WCD_LOG_ERR, "configuration: %s", err.msg[0] ? err.msg : wc_client_strerror(r));
        free(cli);
        return 1;
    }
    if (check_only) {
        static const char *const backends[] = {"auto", "cpu", "gpu"};
        char gb[32];
        if (ctx.cfg.gpu_budget) snprintf(gb, sizeof gb, "%llu bytes", (unsigned long long)ctx.cfg.gpu_budget);
        else snprintf(gb, sizeof gb, "%u%%", ctx.cfg.gpu_budget_pct);
        printf("configuration ok: socket %s, %zu roots, budget %llu bytes; backend %s, GPU budget %s a device, "
               "%s hand-off, %s\n",
               ctx.cfg.socket_path, ctx.cfg.n_roots, (unsigned long long)ctx.cfg.budget, backends[ctx.cfg.backend], gb,
               ctx.cfg.gpu_ipc == WCD_IPC_LEGACY ? "legacy IPC" : "VMM", ctx.cfg.n_gpu_devices ? "listed devices" : "all devices");
        wcd_config_free(&ctx.cfg);
        free(cli);
        return 0;
    }
    /* The pool size is read once, when the loop first queues work. */
    unsigned threads = ctx.cfg.threads ? ctx.cfg.threads : (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
    char tbuf[16];
    snprintf(tbuf, sizeof tbuf, "%u", threads ? threads : 1);
    setenv("UV_THREADPOOL_SIZE", tbuf, 1);
    signal(SIGPIPE, SIG_IGN);

    uv_loop_t loop;
    uv_loop_init(&loop);
    r = wcd_ctx_init(&ctx, &loop, &err);
    if (!r) r = wcd_server_start(&ctx, &err);
    if (r) {
        wcd_log(WCD_LOG_ERR, "cannot start: %s", err.msg[0] ? err.msg : wc_client_strerror(r));
        if (ctx.roots) wcd_ctx_fini(&ctx);
        else wcd_config_free(&ctx.cfg);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        free(cli);
        return 1;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    wcd_cache_totals t;
    wcd_cache_totals_get(&ctx.cache, &t);
    wcd_log(WCD_LOG_NOTICE, "stopped: %llu requests, %llu decodes, %llu errors",
            (unsigned long long)ctx.requests, (unsigned long long)t.decodes,
            (unsigned long long)ctx.errors);
    wcd_ctx_fini(&ctx);
    uv_loop_close(&loop);
    free(cli);
    return 0;
}
