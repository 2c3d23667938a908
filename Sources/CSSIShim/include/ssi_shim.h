#ifndef SSI_SHIM_H
#define SSI_SHIM_H
#include <sys/types.h>
#include <sys/signalfd.h>

/* Syscalls that Glibc 2.36 does not wrap. Each returns -1 and sets errno
 * on failure, like the libc wrappers. */

/* openat2(2) with RESOLVE_IN_ROOT: resolve `path` as if `dirfd` were "/",
 * so an absolute symlink in a new root does not escape to the initramfs. */
int ssi_open_in_root(int dirfd, const char *path, int flags);



/* fork + chroot(root) + chdir("/") + setsid + execve(path) in the child.
 * The child's stdin is /dev/null when null_stdin is set. Returns the
 * child's pid, or -1 with errno set if fork failed. If the exec fails the
 * child exits with 127. */
pid_t ssi_spawn_in_root(const char *root, const char *path, char *const argv[],
                        char *const envp[], int null_stdin);

/* mount(2) in a forked child, waited for at most timeout_ms. A network
 * file system's mount can block for minutes when its server does not
 * answer; PID 1 must not. Returns 0 when mounted, else an errno value:
 * the mount's own, or ETIMEDOUT when the child was still waiting (it is
 * killed: NFS waits are killable). The mount is in the caller's mount
 * namespace, as if it had been made there. */
int ssi_mount_bounded(const char *source, const char *target, const char *type,
                      unsigned long flags, const char *data, int timeout_ms);
#endif

/* Attaches the regular file `path` to a free loop device (read-write,
 * autoclear: the device frees itself once the last user closes it or the
 * file system on it is unmounted). Writes the loop device's number to
 * *number and returns an open descriptor of the device, or -1 with errno. */
int ssi_loop_attach(const char *path, int *number);

/* fork + chroot(root) + chdir("/") + setsid + fexecve(exe_fd) in the
 * child, with stdin /dev/null and stdout/stderr on out_fd: runs our own
 * binary (opened before, from the caller's root) in another root, such as
 * the system's (/proc/1/root) from the membership agent's. Returns the
 * child's pid or -1 with errno. */
pid_t ssi_spawn_fd_in_root(const char *root, int exe_fd, char *const argv[],
                           char *const envp[], int out_fd);

/* swapon(2)/swapoff(2) (<sys/swap.h> is not in Swift's Glibc module);
 * priority < 0: the kernel's default. */
int ssi_swapon(const char *path, int priority, int discard);
int ssi_swapoff(const char *path);
