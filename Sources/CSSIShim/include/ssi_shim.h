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
#endif
