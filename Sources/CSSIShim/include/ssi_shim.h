#ifndef SSI_SHIM_H
#define SSI_SHIM_H
#include <sys/types.h>

/* Syscalls that Glibc 2.36 does not wrap. Each returns -1 and sets errno
 * on failure, like the libc wrappers. */

/* openat2(2) with RESOLVE_IN_ROOT: resolve `path` as if `dirfd` were "/",
 * so an absolute symlink in a new root does not escape to the initramfs. */
int ssi_open_in_root(int dirfd, const char *path, int flags);

#endif
