/* unit_sandbox: runs a command under the part of wcodecd.service's sandbox
 * that a process can put on itself, without root or systemd, so that the GPU
 * tests can show on the GPU machine (which has no systemd) that the CUDA
 * driver works inside it:
 *   NoNewPrivileges=yes
 *   SystemCallFilter=@system-service, ~@privileged @resources (EPERM)
 *   MemoryDenyWriteExecute=yes   (mmap W+X, mprotect/pkey_mprotect +X,
 *                                 shmat SHM_EXEC: EPERM, as systemd 252's
 *                                 seccomp filter does it)
 *   RestrictAddressFamilies=AF_UNIX (socket() of another family: EAFNOSUPPORT)
 *   LockPersonality=yes, SystemCallArchitectures=native
 * The device policy, namespaces and mounts need a manager: systemd-analyze
 * checks those in tests/daemon/test_units.sh.
 * Before it executes the command it checks that the filter is in force
 * (each rule above refuses what it should), and exits 1 if not.
 * usage: unit_sandbox COMMAND [ARGS...] */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define SANDBOX_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SANDBOX_ARCH AUDIT_ARCH_AARCH64
#else
#error "unit_sandbox knows x86_64 and aarch64"
#endif
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "unit_sandbox reads the low word of an argument at its little-endian offset"
#endif

static const int allowed[] = {
#include "unit_syscalls.h"
};

#define ARG_LO(i) ((unsigned)(offsetof(struct seccomp_data, args) + 8 * (i)))
#define RET_ALLOW BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)
#define RET_ERRNO(e) BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((e) & SECCOMP_RET_DATA))
#define LOAD(off) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (off))
#define MAX_INSNS 4096

typedef struct {
    struct sock_filter insn[MAX_INSNS];
    unsigned short n;
} prog_t;

static int emit(prog_t *p, struct sock_filter f)
{
    if (p->n >= MAX_INSNS) return -1;
    p->insn[p->n++] = f;
    return 0;
}

/* Calls `nr` whose argument `arg` has every bit of `mask` set get EPERM. The
 * block is skipped (A still holding nr) for any other call. */
static int emit_mask_rule(prog_t *p, int nr, unsigned arg, unsigned mask)
{
    int r = 0;
    r |= emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 5));
    r |= emit(p, (struct sock_filter)LOAD(ARG_LO(arg)));
    r |= emit(p, (struct sock_filter)BPF_STMT(BPF_ALU | BPF_AND | BPF_K, mask));
    r |= emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, mask, 0, 1));
    r |= emit(p, (struct sock_filter)RET_ERRNO(EPERM));
    r |= emit(p, (struct sock_filter)RET_ALLOW);
    return r;
}

static int build(prog_t *p)
{
    int r = 0;
    p->n = 0;
    /* SystemCallArchitectures=native; on x86_64 the x32 ABI is not native. */
    r |= emit(p, (struct sock_filter)LOAD(offsetof(struct seccomp_data, arch)));
    r |= emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SANDBOX_ARCH, 1, 0));
    r |= emit(p, (struct sock_filter)RET_ERRNO(EPERM));
    r |= emit(p, (struct sock_filter)LOAD(offsetof(struct seccomp_data, nr)));
#if defined(__x86_64__)
    r |= emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1));
    r |= emit(p, (struct sock_filter)RET_ERRNO(EPERM));
#endif
    /* MemoryDenyWriteExecute= */
    r |= emit_mask_rule(p, __NR_mmap, 2, PROT_WRITE | PROT_EXEC);
    r |= emit_mask_rule(p, __NR_mprotect, 2, PROT_EXEC);
#ifdef __NR_pkey_mprotect
    r |= emit_mask_rule(p, __NR_pkey_mprotect, 2, PROT_EXEC);
#endif
    r |= emit_mask_rule(p, __NR_shmat, 2, SHM_EXEC);
    /* RestrictAddressFamilies=AF_UNIX */
    r |= emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, 4));
    r |= emit(p, (struct sock_filter)LOAD(ARG_LO(0)));
    r |= emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 0, 1));
    r |= emit(p, (struct sock_filter)RET_ALLOW);
    r |= emit(p, (struct sock_filter)RET_ERRNO(EAFNOSUPPORT));
    /* LockPersonality=: only the query and the default personality */
    r |= emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_personality, 0, 5));
    r |= emit(p, (struct sock_filter)LOAD(ARG_LO(0)));
    r |= emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0xffffffffu, 2, 0));
    r |= emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0 /* PER_LINUX */, 1, 0));
    r |= emit(p, (struct sock_filter)RET_ERRNO(EPERM));
    r |= emit(p, (struct sock_filter)RET_ALLOW);
    /* SystemCallFilter=: the allow list, EPERM for the rest */
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++) {
        r |= emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)allowed[i], 0, 1));
        r |= emit(p, (struct sock_filter)RET_ALLOW);
    }
    r |= emit(p, (struct sock_filter)RET_ERRNO(EPERM));
    return r;
}

/* Each rule refuses what it should; a call on the list still works. */
static int check_in_force(void)
{
    int bad = 0;
    long pg = sysconf(_SC_PAGESIZE);
    void *m = mmap(NULL, (size_t)pg, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m != MAP_FAILED || errno != EPERM) { fprintf(stderr, "unit_sandbox: mmap(W+X) was not refused\n"); bad = 1; }
    m = mmap(NULL, (size_t)pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) { perror("unit_sandbox: mmap(RW)"); return 1; }
    if (mprotect(m, (size_t)pg, PROT_READ | PROT_EXEC) == 0 || errno != EPERM) {
        fprintf(stderr, "unit_sandbox: mprotect(+X) was not refused\n"); bad = 1;
    }
    munmap(m, (size_t)pg);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s >= 0 || errno != EAFNOSUPPORT) { fprintf(stderr, "unit_sandbox: socket(AF_INET) was not refused\n"); bad = 1; }
    if (s >= 0) close(s);
    s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (s < 0) { perror("unit_sandbox: socket(AF_UNIX)"); bad = 1; } else close(s);
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    /* @resources is off the list: sched_setaffinity gets EPERM. */
    if (syscall(__NR_sched_setaffinity, 0, sizeof set, &set) == 0 || errno != EPERM) {
        fprintf(stderr, "unit_sandbox: sched_setaffinity (@resources) was not refused\n"); bad = 1;
    }
    return bad;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fprintf(argc < 2 ? stderr : stdout,
                "usage: unit_sandbox COMMAND [ARGS...]\n"
                "Runs COMMAND under wcodecd.service's seccomp rules (SystemCallFilter=,\n"
                "MemoryDenyWriteExecute=, RestrictAddressFamilies=AF_UNIX, LockPersonality=)\n"
                "and NoNewPrivileges=, after checking that they are in force.\n");
        return argc < 2 ? 2 : 0;
    }
    static prog_t p;
    if (build(&p)) { fprintf(stderr, "unit_sandbox: filter longer than %d instructions\n", MAX_INSNS); return 1; }
    struct sock_fprog fp = { .len = p.n, .filter = p.insn };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) { perror("unit_sandbox: PR_SET_NO_NEW_PRIVS"); return 1; }
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fp)) { perror("unit_sandbox: PR_SET_SECCOMP"); return 1; }
    if (check_in_force()) return 1;
    execvp(argv[1], argv + 1);
    fprintf(stderr, "unit_sandbox: exec %s: %s\n", argv[1], strerror(errno));
    return 127;
}
