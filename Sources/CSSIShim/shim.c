#define _GNU_SOURCE
#include "ssi_shim.h"
#include <linux/openat2.h>
#include <linux/falloc.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <string.h>

/* The one EINTR loop of the C side (the Swift side's is SSICore's
 * `syscall`): retries a call a signal interrupted, returns its result. */
#define SSI_RETRY(call) ({ long ssi_r_; do ssi_r_ = (long)(call); while (ssi_r_ == -1 && errno == EINTR); ssi_r_; })

int ssi_open_in_root(int dirfd, const char *path, int flags) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (unsigned long long)flags;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

#include <stdlib.h>

/* The Swift runtime seeds its hashing from getrandom(2) in a static
 * initializer, before main. Early in boot the kernel's random pool is not
 * ready yet, and getrandom blocks until it is: about a second under qemu
 * TCG, and on real machines without a hardware RNG. PID 1 in the initramfs
 * needs no hash-flooding protection, so ask the runtime for its
 * deterministic seed. This constructor has a priority, so it runs before
 * every default-priority initializer of the runtime. Only PID 1: every
 * other command keeps randomized hashing. */
__attribute__((constructor(101)))
static void ssi_early_init(void) {
    if (getpid() == 1) {
        setenv("SWIFT_DETERMINISTIC_HASHING", "1", 0);
    }
}

#include <fcntl.h>
#include <signal.h>

#include <errno.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <time.h>

/* Waits for the forked child `pid` at most timeout_ms: its exit code (an
 * errno value), ECANCELED when a signal ended it, ETIMEDOUT when the wait
 * ran out; then the child is killed, and reaped only when `reap` is set
 * (a child stuck in the kernel may not die at once). */
static int wait_bounded(pid_t pid, int timeout_ms, int reap) {
    struct timespec start, now, nap = { 0, 20 * 1000 * 1000 };
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        int status = 0;
        pid_t r = (pid_t)SSI_RETRY(waitpid(pid, &status, WNOHANG));
        /* Killed by a signal: the call was cancelled, and ECANCELED says
           so (interrupted waits are retried by SSI_RETRY). */
        if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : ECANCELED;
        if (r < 0) return errno;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (ms >= timeout_ms) {
            kill(pid, SIGKILL);
            if (reap) (void)SSI_RETRY(waitpid(pid, &status, 0));
            return ETIMEDOUT;
        }
        nanosleep(&nap, NULL);
    }
}

int ssi_mount_bounded(const char *source, const char *target, const char *type,
                      unsigned long flags, const char *data, int timeout_ms) {
    pid_t pid = fork();
    if (pid < 0) return errno;
    if (pid == 0) {
        /* Child: async-signal-safe calls only. The exit code carries errno. */
        if (mount(source, target, type, flags, data) == 0) _exit(0);
        _exit(errno > 0 && errno < 255 ? errno : 255);
    }
    return wait_bounded(pid, timeout_ms, 1);
}

int ssi_umount_bounded(const char *target, int flags, int timeout_ms) {
    pid_t pid = fork();
    if (pid < 0) return errno;
    if (pid == 0) {
        /* The last reference to a lazily detached mount is dropped as the
           child returns from umount2: the file system's own shutdown (a
           GFS2 leaving its lockspace) runs here, in the child. */
        if (umount2(target, flags) == 0) _exit(0);
        _exit(errno > 0 && errno < 255 ? errno : 255);
    }
    return wait_bounded(pid, timeout_ms, 0);
}

#include <sys/reboot.h>
int ssi_reboot(int what) {
    return reboot(what == 0 ? RB_POWER_OFF : what == 1 ? RB_AUTOBOOT : RB_HALT_SYSTEM);
}

#include <linux/loop.h>
#include <sys/ioctl.h>
#include <fcntl.h>
#include <stdio.h>
#include <errno.h>

int ssi_loop_attach(const char *path, int *number) {
    int file = open(path, O_RDWR | O_CLOEXEC);
    if (file < 0) return -1;
    int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0) { int e = errno; close(file); errno = e; return -1; }
    /* Another process may take the free device between GET_FREE and
     * CONFIGURE (EBUSY): try again a few times. */
    for (int attempt = 0; attempt < 8; attempt++) {
        int n = ioctl(ctl, LOOP_CTL_GET_FREE);
        if (n < 0) break;
        char dev[32];
        snprintf(dev, sizeof dev, "/dev/loop%d", n);
        int fd = open(dev, O_RDWR | O_CLOEXEC);
        if (fd < 0) continue;
        struct loop_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.fd = (unsigned)file;
        cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
        strncpy((char *)cfg.info.lo_file_name, path, LO_NAME_SIZE - 1);
        if (ioctl(fd, LOOP_CONFIGURE, &cfg) == 0) {
            close(ctl);
            close(file);
            *number = n;
            return fd;
        }
        int e = errno;
        close(fd);
        if (e != EBUSY) { close(ctl); close(file); errno = e; return -1; }
    }
    int e = errno ? errno : EBUSY;
    close(ctl);
    close(file);
    errno = e;
    return -1;
}

#include <sys/swap.h>

int ssi_swapon(const char *path, int priority, int discard) {
    int flags = 0;
    if (priority >= 0)
        flags |= SWAP_FLAG_PREFER | ((priority << SWAP_FLAG_PRIO_SHIFT) & SWAP_FLAG_PRIO_MASK);
    if (discard) flags |= SWAP_FLAG_DISCARD;
    return swapon(path, flags);
}

int ssi_swapoff(const char *path) { return swapoff(path); }

#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <sys/ioctl.h>
#include <grp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

int ssi_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }
int ssi_finit_module(int fd, const char *params, int flags) { return (int)syscall(SYS_finit_module, fd, params, flags); }
int ssi_pidfd_getfd(int pidfd, int fd) { return (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0); }

int ssi_kcmp_file(int pid1, int pid2, int fd1, int fd2) {
    return (int)syscall(SYS_kcmp, pid1, pid2, 0 /* KCMP_FILE */, fd1, fd2);
}

ssize_t ssi_send_fds(int sock, const int *fds, int n, const void *data, size_t len) {
    if (n < 0 || n > 16) { errno = EINVAL; return -1; }
    char control[CMSG_SPACE(sizeof(int) * 16)];
    memset(control, 0, sizeof control);
    struct iovec iov = { (void *)data, len };
    struct msghdr msg = { 0 };
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (n > 0) {
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * n);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * n);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
    }
    ssize_t r;
    r = SSI_RETRY(sendmsg(sock, &msg, MSG_NOSIGNAL));
    return r;
}

ssize_t ssi_recv_fds(int sock, int *fds, int max, int *nfds, void *data, size_t len) {
    char control[CMSG_SPACE(sizeof(int) * 16)];
    struct iovec iov = { data, len };
    struct msghdr msg = { 0 };
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    *nfds = 0;
    ssize_t r;
    r = SSI_RETRY(recvmsg(sock, &msg, MSG_CMSG_CLOEXEC));
    if (r < 0) return r;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int *got = (int *)CMSG_DATA(c);
        for (int i = 0; i < count; i++) {
            if (*nfds < max) fds[(*nfds)++] = got[i];
            else close(got[i]);
        }
    }
    return r;
}

int ssi_peer_cred(int sock, pid_t *pid, uid_t *uid, gid_t *gid) {
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -1;
    *pid = cred.pid; *uid = cred.uid; *gid = cred.gid;
    return 0;
}

extern char **environ;

/* The steps a spawn reports, by index (the child sends the index, the
 * parent hands out the string: no pointer crosses the fork). */
static const char *const spawn_steps[] = {
    "fork", "pipe", "chroot", "setgroups", "setgid", "setuid", "chdir",
    "dup", "/dev/null", "setsid", "TIOCSCTTY", "exec",
};
enum { STEP_FORK, STEP_PIPE, STEP_CHROOT, STEP_SETGROUPS, STEP_SETGID, STEP_SETUID,
       STEP_CHDIR, STEP_DUP, STEP_DEVNULL, STEP_SETSID, STEP_TIOCSCTTY, STEP_EXEC };

/* In the child: errno and the step in one write (atomic on a pipe), then
 * exit. Async-signal-safe. */
static void spawn_fail(int report, int step) {
    int msg[2] = { errno, step };
    (void)!write(report, msg, sizeof msg);
    _exit(127);
}

static void spawn_exec(const struct ssi_spawn *s, int report) {
    if (s->exe_fd >= 0) {
        fexecve(s->exe_fd, s->argv, s->envp);
    } else if (s->search_path) {
        /* execvp looks the name up in environ's PATH: the program's own. */
        environ = (char **)s->envp;
        execvp(s->path, s->argv);
    } else {
        execve(s->path, s->argv, s->envp);
    }
    spawn_fail(report, STEP_EXEC);
}

/* The child, after fork: only async-signal-safe calls, on memory the
 * parent prepared (no allocation: the parent may have other threads). */
static void spawn_child(const struct ssi_spawn *s, int report) {
    if (s->signals >= 2) for (int sig = 1; sig < 65; sig++) signal(sig, SIG_DFL);
    if (s->signals >= 1) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
    }
    /* Out of the way of the descriptors moved to 0..n-1 below (at most
     * 64), and under the usual 1024 descriptor limit. */
    int status_fd = s->keeper == 2 ? fcntl(s->status_fd, F_DUPFD_CLOEXEC, 256) : -1;
    /* The root is the spawner's own path (the system's root), not the
     * caller's: entered with the spawner's rights, and at its "/" so that
     * nothing below resolves against the old directory. */
    if (s->root && (chroot(s->root) != 0 || chdir("/") != 0)) spawn_fail(report, STEP_CHROOT);
    /* The caller's identity BEFORE any path of the caller's: a chdir as
     * root would enter a directory the caller may not enter, and
     * everything under it would then be open to them relative to it. */
    if (s->uid >= 0) {
        if (s->gid < 0) { errno = EINVAL; spawn_fail(report, STEP_SETGID); }
        if (setgroups((size_t)s->ngroups, s->groups) != 0) spawn_fail(report, STEP_SETGROUPS);
        if (setgid((gid_t)s->gid) != 0) spawn_fail(report, STEP_SETGID);
        if (setuid((uid_t)s->uid) != 0) spawn_fail(report, STEP_SETUID);
    }
    if (s->cwd && chdir(s->cwd) != 0) spawn_fail(report, STEP_CHDIR);
    /* The map: fds[i] becomes descriptor i. Every source is first copied
     * out of the way of 0..n-1 (a source may be another entry's target). */
    int high[64];
    int n = s->nfds > 64 ? 64 : (s->nfds < 0 ? 0 : s->nfds);
    for (int i = 0; i < n; i++) {
        high[i] = -1;
        if (s->fds[i] == SSI_SPAWN_DEVNULL) {
            /* In the new root and as the new identity, like the program's
             * own opens. */
            int null = open("/dev/null", O_RDWR | O_CLOEXEC);
            if (null < 0) spawn_fail(report, STEP_DEVNULL);
            high[i] = fcntl(null, F_DUPFD_CLOEXEC, 256);
            if (high[i] < 0) spawn_fail(report, STEP_DUP);
            close(null);
        } else if (s->fds[i] >= 0) {
            high[i] = fcntl(s->fds[i], F_DUPFD_CLOEXEC, 256);
            if (high[i] < 0) spawn_fail(report, STEP_DUP);
        }
    }
    if (!s->close_others) {
        /* A source keeps only its new number: its old one closes at the
         * exec (a pipe's write end must not stay open twice). */
        for (int i = 0; i < n; i++)
            if (s->fds[i] >= n) fcntl(s->fds[i], F_SETFD, FD_CLOEXEC);
    }
    for (int i = 0; i < n; i++)
        if (high[i] >= 0 && dup2(high[i], i) != i) spawn_fail(report, STEP_DUP);
    if (s->close_others) {
        /* Everything else closes at the exec (the report pipe included). */
        if (syscall(SYS_close_range, n, ~0U, 4 /* CLOSE_RANGE_CLOEXEC */) != 0)
            for (int fd = n; fd < 4096; fd++) if (fd != report) fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    if (s->new_session && setsid() < 0) spawn_fail(report, STEP_SETSID);
    if (s->ctty >= 0 && ioctl(s->ctty, TIOCSCTTY, 0) != 0) spawn_fail(report, STEP_TIOCSCTTY);
    if (s->keeper) {
        if (s->subreaper) prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        pid_t child = fork();
        if (child < 0) spawn_fail(report, STEP_FORK);
        if (child == 0) {
            /* A group of its own is a background group of the session's
             * terminal: criu's terminal calls must not stop it (as
             * coreutils' timeout does, ignored signals survive exec). */
            setpgid(0, 0);
            signal(SIGTTOU, SIG_IGN);
            signal(SIGTTIN, SIG_IGN);
            spawn_exec(s, report);
        }
        /* The keeper: the exec's report is the child's to give. */
        close(report);
        int st = 0;
        (void)SSI_RETRY(waitpid(child, &st, 0));
        int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (s->keeper == 2) {
            unsigned char b = (unsigned char)code;
            (void)!write(status_fd, &b, 1);
            if (code == 0) for (;;) pause();
        }
        _exit(code);
    }
    spawn_exec(s, report);
}

pid_t ssi_spawn(const struct ssi_spawn *s, const char **failed_step) {
    int report[2];
    *failed_step = NULL;
    if (pipe2(report, O_CLOEXEC) != 0) { *failed_step = spawn_steps[STEP_PIPE]; return -1; }
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(report[0]); close(report[1]);
        *failed_step = spawn_steps[STEP_FORK];
        errno = e;
        return -1;
    }
    if (pid == 0) {
        close(report[0]);
        spawn_child(s, report[1]);
        _exit(127);
    }
    close(report[1]);
    /* EOF: the exec closed the pipe (close-on-exec), the program runs. */
    int msg[2] = { 0, 0 };
    ssize_t r;
    r = SSI_RETRY(read(report[0], msg, sizeof msg));
    close(report[0]);
    if (r != (ssize_t)sizeof msg) return pid;
    /* The child failed and exited: reap it here, so that no caller sees a
     * pid that never ran the program. (A reaper thread in waitpid(-1) may
     * take it first: then ECHILD, which is fine.) */
    int status;
    (void)SSI_RETRY(waitpid(pid, &status, 0));
    int step = msg[1];
    *failed_step = spawn_steps[step >= 0 && step <= STEP_EXEC ? step : STEP_EXEC];
    errno = msg[0];
    return -1;
}

int ssi_pty_slave_name(int master, char *name, size_t size) {
    int e = ptsname_r(master, name, size);
    if (e != 0) { errno = e; return -1; }
    return 0;
}

int ssi_open_pty(int *master, int *slave) {
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0) return -1;
    if (grantpt(m) != 0 || unlockpt(m) != 0) { int e = errno; close(m); errno = e; return -1; }
    char name[64];
    if (ptsname_r(m, name, sizeof name) != 0) { int e = errno; close(m); errno = e; return -1; }
    int s = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s < 0) { int e = errno; close(m); errno = e; return -1; }
    *master = m;
    *slave = s;
    return 0;
}

#include <sys/prctl.h>

int ssi_accept(int fd) {
    int r;
    r = SSI_RETRY(accept4(fd, NULL, NULL, SOCK_CLOEXEC));
    return r;
}
int ssi_pipe(int fds[2]) { return pipe2(fds, O_CLOEXEC); }
int ssi_set_pipe_size(int fd, int size) { return fcntl(fd, F_SETPIPE_SZ, size); }

int ssi_punch_hole(int fd, long long length) {
    return (int)SSI_RETRY(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)length));
}
int ssi_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }
#include <sys/auxv.h>
const char *ssi_exec_path(void) { return (const char *)getauxval(AT_EXECFN); }
int ssi_close_from(int fd) { return (int)syscall(SYS_close_range, (unsigned)fd, ~0U, 0); }
int ssi_set_comm(const char *name) { return prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0); }
#include <sched.h>
int ssi_unshare_fs(void) { return unshare(CLONE_FS); }
int ssi_unshare_fs_and_mounts(void) { return unshare(CLONE_FS | CLONE_NEWNS); }

#if defined(__x86_64__)
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/mman.h>
#include <sys/un.h>
#include <stddef.h>
#include <dirent.h>

/* One syscall in the tracee: `syscall` written at rip, single-stepped.
 * Up to six arguments (x86_64: rdi rsi rdx r10 r8 r9). */
static long inject_syscall6(pid_t pid, const struct user_regs_struct *base, long nr,
                            long a1, long a2, long a3, long a4, long a5, long a6, int *failed) {
    struct user_regs_struct r = *base;
    r.rax = nr;
    r.orig_rax = -1;     /* not in a syscall: no restart logic */
    r.rdi = a1; r.rsi = a2; r.rdx = a3; r.r10 = a4; r.r8 = a5; r.r9 = a6;
    if (ptrace(PTRACE_SETREGS, pid, 0, &r) != 0) { *failed = 1; return -1; }
    /* The first stop may be another one (the group stop the process was
     * left in): step again until rip is past the syscall instruction. */
    for (int tries = 0; tries < 8; tries++) {
        if (ptrace(PTRACE_SINGLESTEP, pid, 0, 0) != 0) { *failed = 1; return -1; }
        int st;
        if (waitpid(pid, &st, __WALL) != pid || !WIFSTOPPED(st)) { *failed = 1; errno = ESRCH; return -1; }
        struct user_regs_struct after;
        if (ptrace(PTRACE_GETREGS, pid, 0, &after) != 0) { *failed = 1; return -1; }
        if (after.rip == base->rip + 2) return (long)after.rax;
        if (after.rip != base->rip) { *failed = 1; errno = EFAULT; return -1; }
    }
    *failed = 1;
    errno = ETIMEDOUT;
    return -1;
}

static long inject_syscall(pid_t pid, const struct user_regs_struct *base, long nr,
                           long a1, long a2, long a3, int *failed) {
    return inject_syscall6(pid, base, nr, a1, a2, a3, 0, 0, 0, failed);
}

/* Seizes `pid` into a ptrace stop and reads its registers and the
 * instruction word at rip (which the caller replaces by `syscall`, 0f 05).
 * On failure it is detached as it was (a stopped process stays stopped). */
static int seize_for_injection(pid_t pid, struct user_regs_struct *saved, long *code, const char **step) {
    *step = "PTRACE_SEIZE";
    if (ptrace(PTRACE_SEIZE, pid, 0, 0) != 0) return -1;
    *step = "PTRACE_INTERRUPT";
    if (ptrace(PTRACE_INTERRUPT, pid, 0, 0) != 0) { int e = errno; ptrace(PTRACE_DETACH, pid, 0, 0); errno = e; return -1; }
    int st;
    if (waitpid(pid, &st, __WALL) != pid) { int e = errno; ptrace(PTRACE_DETACH, pid, 0, 0); errno = e; return -1; }
    *step = "PTRACE_GETREGS";
    if (ptrace(PTRACE_GETREGS, pid, 0, saved) != 0) { int e = errno; ptrace(PTRACE_DETACH, pid, 0, 0); errno = e; return -1; }
    errno = 0;
    *code = ptrace(PTRACE_PEEKTEXT, pid, saved->rip, 0);
    if (errno != 0) { *step = "PTRACE_PEEKTEXT"; int e = errno; ptrace(PTRACE_DETACH, pid, 0, 0); errno = e; return -1; }
    return 0;
}

static int inject_here(pid_t pid, int target_fd, const char *name, int stop, const char **step) {
    struct user_regs_struct saved;
    long code;
    if (seize_for_injection(pid, &saved, &code, step) != 0) return -1;
    unsigned long ip = saved.rip;
    long patched = (code & ~0xffffL) | 0x050fL;
    /* The sockaddr below the red zone of its stack. */
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    size_t nlen = strlen(name);
    if (nlen > sizeof addr.sun_path - 2) nlen = sizeof addr.sun_path - 2;
    memcpy(addr.sun_path + 1, name, nlen);
    socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + nlen);
    unsigned long where = (saved.rsp - 1024) & ~15UL;
    long stackSaved[(sizeof addr + 7) / 8];
    for (size_t i = 0; i < sizeof stackSaved / 8; i++) {
        errno = 0;
        stackSaved[i] = ptrace(PTRACE_PEEKDATA, pid, where + i * 8, 0);
    }
    int failed = 0, result = -1, e = 0;
    const char *what = NULL;
    if (ptrace(PTRACE_POKETEXT, pid, ip, patched) != 0) { what = "PTRACE_POKETEXT"; e = errno; goto detach; }
    for (size_t i = 0; i < sizeof stackSaved / 8; i++) {
        long word;
        memcpy(&word, (char *)&addr + i * 8, 8);
        ptrace(PTRACE_POKEDATA, pid, where + i * 8, word);
    }
    long fd = inject_syscall(pid, &saved, SYS_socket, AF_UNIX, SOCK_STREAM, 0, &failed);
    if (failed || fd < 0) { what = "socket"; e = failed ? errno : (int)-fd; goto restore; }
    long rc = inject_syscall(pid, &saved, SYS_connect, fd, (long)where, alen, &failed);
    if (failed || rc < 0) { what = "connect"; e = failed ? errno : (int)-rc; inject_syscall(pid, &saved, SYS_close, fd, 0, 0, &failed); goto restore; }
    rc = inject_syscall(pid, &saved, SYS_dup2, fd, target_fd, 0, &failed);
    if (failed || rc < 0) { what = "dup2"; e = failed ? errno : (int)-rc; inject_syscall(pid, &saved, SYS_close, fd, 0, 0, &failed); goto restore; }
    inject_syscall(pid, &saved, SYS_close, fd, 0, 0, &failed);
    result = 0;
restore:
    for (size_t i = 0; i < sizeof stackSaved / 8; i++) ptrace(PTRACE_POKEDATA, pid, where + i * 8, stackSaved[i]);
    ptrace(PTRACE_POKETEXT, pid, ip, code);
    ptrace(PTRACE_SETREGS, pid, 0, &saved);
detach:
    /* Detached with SIGSTOP, it goes back to the stop it was in; with no
     * signal, a running process runs on. */
    ptrace(PTRACE_DETACH, pid, 0, stop ? SIGSTOP : 0);
    if (result != 0) { *step = what; errno = e; }
    return result;
}

/* The deputy (DESIGN-NOTES "A deputy at home"): the stopped original of a
 * process that moved away becomes `path` (ssi-deputy) under its own PID,
 * parent, group and session. Injected: an anonymous page for the
 * arguments; a unix socket connected to the agent's `name`, on
 * `target_fd`; every signal but SIGCONT blocked (the mask survives the
 * exec, so nothing sent meanwhile is lost or acted on by default; SIGCONT
 * stays unblocked so that the agent's own SIGCONT, which lets it run, is
 * not queued for the deputy to forward); then execve. `blob` is the page:
 * the caller laid it out for address 0 (pointers are offsets), and each
 * pointer word listed in `relocs` (offsets into the blob) gets the page's
 * address added. On success the process runs the deputy; on failure it
 * is back in its stop, with its memory and registers as they were
 * (a descriptor it had on `target_fd` may be lost: the caller kills it). */
/* A frozen process (cgroup v2 freezer, `freeze_fd` its cgroup.freeze): its
 * threads are each held in a ptrace stop, then the cgroup thawed, so that
 * the injected calls run (a frozen task goes back to its freezer trap as
 * soon as it leaves a ptrace stop) while no thread runs its own code. The
 * exec ends the other threads; on failure the cgroup is frozen again and
 * they are let go into it. At most 256 threads are held. */
#define SSI_HELD_MAX 256
struct held_threads { pid_t tid[SSI_HELD_MAX]; int n; };

static int hold_other_threads(pid_t pid, struct held_threads *held) {
    held->n = 0;
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
    /* Listed again until no new thread shows (one may be cloned while
     * they are seized; a frozen process makes none). */
    for (int pass = 0; pass < 4; pass++) {
        DIR *d = opendir(dir);
        if (!d) return -1;
        int added = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
            pid_t tid = (pid_t)atoi(de->d_name);
            if (tid <= 0 || tid == pid) continue;
            int known = 0;
            for (int i = 0; i < held->n; i++) if (held->tid[i] == tid) known = 1;
            if (known) continue;
            if (held->n == SSI_HELD_MAX) { closedir(d); errno = E2BIG; return -1; }
            if (ptrace(PTRACE_SEIZE, tid, 0, 0) != 0) { if (errno == ESRCH) continue; int e = errno; closedir(d); errno = e; return -1; }
            held->tid[held->n++] = tid;
            added++;
            int st;
            if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) != 0 || waitpid(tid, &st, __WALL) != tid) { int e = errno; closedir(d); errno = e; return -1; }
        }
        closedir(d);
        if (!added) return 0;
    }
    return 0;
}

static void let_threads_go(const struct held_threads *held) {
    for (int i = 0; i < held->n; i++) ptrace(PTRACE_DETACH, held->tid[i], 0, 0);
}

/* Waits for the leader's next stop. Held threads the exec ends report
 * their exit to this tracer and stay zombies until it reaps them, and the
 * exec waits for that (de_thread): each is reaped on the way. This
 * forked tracer has no other children. */
static pid_t wait_leader(pid_t pid, int *st) {
    for (int i = 0; i < SSI_HELD_MAX + 8; i++) {
        pid_t got = waitpid(-1, st, __WALL);
        if (got == pid || got < 0) return got;
    }
    return -1;
}

static int inject_deputy_here(pid_t pid, const char *name, int target_fd, const unsigned char *blob, size_t bloblen,
                              const size_t *relocs, size_t nrelocs, size_t path_off, size_t argv_off, size_t envp_off,
                              int freeze_fd, const char **step) {
    if (bloblen > 4096 || bloblen % 8 != 0) { errno = E2BIG; *step = "arguments"; return -1; }
    struct user_regs_struct saved;
    long code;
    static struct held_threads held;
    held.n = 0;
    if (seize_for_injection(pid, &saved, &code, step) != 0) return -1;
    if (freeze_fd >= 0) {
        if (hold_other_threads(pid, &held) != 0) {
            int e = errno; let_threads_go(&held); ptrace(PTRACE_DETACH, pid, 0, 0);
            *step = "threads"; errno = e; return -1;
        }
        if (pwrite(freeze_fd, "0", 1, 0) != 1) {
            int e = errno; let_threads_go(&held); ptrace(PTRACE_DETACH, pid, 0, 0);
            *step = "thaw"; errno = e; return -1;
        }
    }
    unsigned long ip = saved.rip;
    long patched = (code & ~0xffffL) | 0x050fL;
    int failed = 0, e = 0, st;
    const char *what = NULL;
    long page = -1, fd = -1, rc;
    if (ptrace(PTRACE_POKETEXT, pid, ip, patched) != 0) { what = "PTRACE_POKETEXT"; e = errno; goto detach; }
    page = inject_syscall6(pid, &saved, SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0, &failed);
    if (failed || (page < 0 && page > -4096)) { what = "mmap"; e = failed ? errno : (int)-page; page = -1; goto restore; }
    for (size_t off = 0; off < bloblen; off += 8) {
        long word;
        memcpy(&word, blob + off, 8);
        for (size_t i = 0; i < nrelocs; i++) if (relocs[i] == off) word += page;
        if (ptrace(PTRACE_POKEDATA, pid, page + off, word) != 0) { what = "PTRACE_POKEDATA"; e = errno; goto restore; }
    }
    /* The socket address is the blob's first bytes. */
    fd = inject_syscall(pid, &saved, SYS_socket, AF_UNIX, SOCK_STREAM, 0, &failed);
    if (failed || fd < 0) { what = "socket"; e = failed ? errno : (int)-fd; fd = -1; goto restore; }
    struct sockaddr_un probe;
    socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strnlen(name, sizeof probe.sun_path - 2));
    rc = inject_syscall(pid, &saved, SYS_connect, fd, page, alen, &failed);
    if (failed || rc < 0) { what = "connect"; e = failed ? errno : (int)-rc; goto restore; }
    if (fd != target_fd) {
        rc = inject_syscall(pid, &saved, SYS_dup2, fd, target_fd, 0, &failed);
        if (failed || rc < 0) { what = "dup2"; e = failed ? errno : (int)-rc; goto restore; }
        inject_syscall(pid, &saved, SYS_close, fd, 0, 0, &failed);
        fd = -1;
    }
    /* The mask: the blob's second 8 bytes (the kernel's sigset is 8). */
    rc = inject_syscall6(pid, &saved, SYS_rt_sigprocmask, SIG_SETMASK, page + 112, 0, 8, 0, 0, &failed);
    if (failed || rc < 0) { what = "rt_sigprocmask"; e = failed ? errno : (int)-rc; goto restore; }
    /* execve: on success rip is the new program's entry, not past the
     * patched instruction (the single step's trap comes after the exec). */
    {
        struct user_regs_struct r = saved;
        r.rax = SYS_execve;
        r.orig_rax = -1;
        r.rdi = page + path_off; r.rsi = page + argv_off; r.rdx = page + envp_off;
        if (ptrace(PTRACE_SETREGS, pid, 0, &r) != 0) { what = "PTRACE_SETREGS"; e = errno; goto restore; }
        for (int tries = 0; tries < 8; tries++) {
            if (ptrace(PTRACE_SINGLESTEP, pid, 0, 0) != 0) { what = "PTRACE_SINGLESTEP"; e = errno; goto restore; }
            if (wait_leader(pid, &st) != pid || !WIFSTOPPED(st)) { what = "execve"; e = ESRCH; goto out; }
            struct user_regs_struct after;
            if (ptrace(PTRACE_GETREGS, pid, 0, &after) != 0) { what = "PTRACE_GETREGS"; e = errno; goto restore; }
            if (after.rip == saved.rip + 2) { what = "execve"; e = (int)-(long)after.rax; goto restore; }
            if (after.rip != saved.rip) {
                /* The deputy runs: let it go (the caller sends SIGCONT to
                 * one left stopped by the dump). The exec ended the other
                 * threads. */
                ptrace(PTRACE_DETACH, pid, 0, 0);
                return 0;
            }
        }
        what = "execve"; e = ETIMEDOUT;
    }
restore:
    if (page != -1) {
        int f2 = 0;
        inject_syscall(pid, &saved, SYS_munmap, page, 4096, 0, &f2);
    }
    ptrace(PTRACE_POKETEXT, pid, ip, code);
    ptrace(PTRACE_SETREGS, pid, 0, &saved);
detach:
    if (freeze_fd >= 0) {
        /* Back into the frozen cgroup, no stop its parent could see. */
        (void)!pwrite(freeze_fd, "1", 1, 0);
        let_threads_go(&held);
        ptrace(PTRACE_DETACH, pid, 0, 0);
    } else {
        ptrace(PTRACE_DETACH, pid, 0, SIGSTOP);
    }
out:
    *step = what;
    errno = e;
    return -1;
}

/* The tracing is done by a forked child: a tracee's stops are reported to
 * whatever thread of the tracer's process waits first, and the process
 * agent has a thread in waitpid(-1) (its reaper). The child reports the
 * result on a pipe, not by its exit status, which the reaper may take: an
 * errno and the index of the failed step in `steps` (the last one is
 * "fork", for anything unnamed). */
struct injection { int (*body)(void *ctx, const char **what); void *ctx; const char *const *steps; int nsteps; };

static int inject_in_child(const struct injection *in, const char **step) {
    int result[2];
    if (pipe2(result, O_CLOEXEC) != 0) { *step = "pipe"; return -1; }
    pid_t child = fork();
    if (child < 0) { int e = errno; close(result[0]); close(result[1]); *step = "fork"; errno = e; return -1; }
    if (child == 0) {
        const char *what = NULL;
        int rc = in->body(in->ctx, &what);
        int msg[2] = { rc == 0 ? 0 : errno, in->nsteps - 1 };
        for (int i = 0; i < in->nsteps && what; i++) if (strcmp(in->steps[i], what) == 0) msg[1] = i;
        (void)!write(result[1], msg, sizeof msg);
        _exit(0);
    }
    close(result[1]);
    int msg[2] = { EIO, in->nsteps - 1 };
    ssize_t n;
    n = SSI_RETRY(read(result[0], msg, sizeof msg));
    close(result[0]);
    if (n != (ssize_t)sizeof msg) { *step = "fork"; errno = EIO; return -1; }
    if (msg[0] == 0) return 0;
    *step = in->steps[msg[1] >= 0 && msg[1] < in->nsteps ? msg[1] : in->nsteps - 1];
    errno = msg[0];
    return -1;
}

struct deputy_args {
    pid_t pid; const char *name; int target_fd; const unsigned char *blob; size_t bloblen;
    const size_t *relocs; size_t nrelocs; size_t path_off, argv_off, envp_off; int freeze_fd;
};

static int deputy_body(void *ctx, const char **what) {
    const struct deputy_args *a = ctx;
    return inject_deputy_here(a->pid, a->name, a->target_fd, a->blob, a->bloblen, a->relocs, a->nrelocs,
                              a->path_off, a->argv_off, a->envp_off, a->freeze_fd, what);
}

int ssi_inject_deputy(pid_t pid, const char *name, int target_fd, const unsigned char *blob, size_t bloblen,
                      const size_t *relocs, size_t nrelocs, size_t path_off, size_t argv_off, size_t envp_off,
                      int freeze_fd, const char **step) {
    static const char *const steps[] = { "PTRACE_SEIZE", "PTRACE_INTERRUPT", "PTRACE_GETREGS", "PTRACE_PEEKTEXT",
                                         "PTRACE_POKETEXT", "mmap", "PTRACE_POKEDATA", "socket", "connect", "dup2",
                                         "rt_sigprocmask", "PTRACE_SETREGS", "PTRACE_SINGLESTEP", "execve", "arguments",
                                         "threads", "thaw", "fork" };
    struct deputy_args a = { pid, name, target_fd, blob, bloblen, relocs, nrelocs, path_off, argv_off, envp_off, freeze_fd };
    struct injection in = { deputy_body, &a, steps, (int)(sizeof steps / sizeof steps[0]) };
    return inject_in_child(&in, step);
}

struct unix_fd_args { pid_t pid; int target_fd; const char *name; int stop; };

static int unix_fd_body(void *ctx, const char **what) {
    const struct unix_fd_args *a = ctx;
    return inject_here(a->pid, a->target_fd, a->name, a->stop, what);
}

int ssi_inject_unix_fd(pid_t pid, int target_fd, const char *name, int stop, const char **step) {
    static const char *const steps[] = { "PTRACE_SEIZE", "PTRACE_INTERRUPT", "PTRACE_GETREGS", "PTRACE_PEEKTEXT",
                                         "PTRACE_POKETEXT", "socket", "connect", "dup2", "fork" };
    struct unix_fd_args a = { pid, target_fd, name, stop };
    struct injection in = { unix_fd_body, &a, steps, (int)(sizeof steps / sizeof steps[0]) };
    return inject_in_child(&in, step);
}
#else
int ssi_inject_deputy(pid_t pid, const char *name, int target_fd, const unsigned char *blob, size_t bloblen,
                      const size_t *relocs, size_t nrelocs, size_t path_off, size_t argv_off, size_t envp_off,
                      int freeze_fd, const char **step) {
    (void)pid; (void)name; (void)target_fd; (void)blob; (void)bloblen; (void)relocs; (void)nrelocs;
    (void)path_off; (void)argv_off; (void)envp_off; (void)freeze_fd;
    *step = "inject";
    errno = ENOSYS;
    return -1;
}
int ssi_inject_unix_fd(pid_t pid, int target_fd, const char *name, int stop, const char **step) {
    (void)pid; (void)target_fd; (void)name; (void)stop;
    *step = "inject";
    errno = ENOSYS;
    return -1;
}
#endif

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

int ssi_peer_groups(int sock, gid_t *groups, int max, int *n) {
    *n = 0;
    if (max < 0) { errno = EINVAL; return -1; }
    socklen_t len = (socklen_t)((size_t)max * sizeof(gid_t));
    if (getsockopt(sock, SOL_SOCKET, SO_PEERGROUPS, groups, &len) != 0) {
        /* ERANGE: len is what the groups need. */
        if (errno == ERANGE) *n = (int)(len / sizeof(gid_t));
        return -1;
    }
    *n = (int)(len / sizeof(gid_t));
    return 0;
}
