#define _GNU_SOURCE
#include "ssi_shim.h"
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <string.h>

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

pid_t ssi_spawn_in_root(const char *root, const char *path, char *const argv[],
                        char *const envp[], int null_stdin) {
    pid_t pid = fork();
    if (pid != 0) return pid;
    /* Child: only async-signal-safe calls from here on. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (chroot(root) != 0 || chdir("/") != 0) _exit(126);
    setsid();
    if (null_stdin) {
        int fd = open("/dev/null", O_RDONLY);
        if (fd >= 0) { dup2(fd, 0); if (fd > 2) close(fd); }
    }
    execve(path, argv, envp);
    _exit(127);
}

#include <errno.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <time.h>

int ssi_mount_bounded(const char *source, const char *target, const char *type,
                      unsigned long flags, const char *data, int timeout_ms) {
    pid_t pid = fork();
    if (pid < 0) return errno;
    if (pid == 0) {
        /* Child: async-signal-safe calls only. The exit code carries errno. */
        if (mount(source, target, type, flags, data) == 0) _exit(0);
        _exit(errno > 0 && errno < 255 ? errno : 255);
    }
    struct timespec start, now, nap = { 0, 20 * 1000 * 1000 };
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        int status = 0;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            if (WIFEXITED(status)) return WEXITSTATUS(status);
            return EINTR;
        }
        if (r < 0 && errno != EINTR) return errno;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (ms >= timeout_ms) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
            return ETIMEDOUT;
        }
        nanosleep(&nap, NULL);
    }
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

pid_t ssi_spawn_fd_in_root(const char *root, int exe_fd, char *const argv[],
                           char *const envp[], int out_fd) {
    pid_t pid = fork();
    if (pid != 0) return pid;
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (chroot(root) != 0 || chdir("/") != 0) _exit(126);
    setsid();
    int null = open("/dev/null", O_RDONLY);
    if (null >= 0) { dup2(null, 0); if (null > 2) close(null); }
    if (out_fd >= 0) { dup2(out_fd, 1); dup2(out_fd, 2); if (out_fd > 2) close(out_fd); }
    fexecve(exe_fd, argv, envp);
    _exit(127);
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
