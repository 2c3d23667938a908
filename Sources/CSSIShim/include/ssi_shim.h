#ifndef SSI_SHIM_H
#define SSI_SHIM_H
#include <sys/types.h>
#include <sys/signalfd.h>
/* getopt_long and struct option (SSITools' GetOpt): Glibc's module map
 * has getopt() only. Its state is reached through these, since Swift 6
 * refuses C's mutable globals; GetOpt holds a lock around every use. */
#include <getopt.h>
static inline int *ssi_optind(void) { return &optind; }
static inline int *ssi_opterr(void) { return &opterr; }
static inline int *ssi_optopt(void) { return &optopt; }
static inline char **ssi_optarg(void) { return &optarg; }

/* Syscalls that Glibc 2.36 does not wrap. Each returns -1 and sets errno
 * on failure, like the libc wrappers. */

/* openat2(2) with RESOLVE_IN_ROOT: resolve `path` as if `dirfd` were "/",
 * so an absolute symlink in a new root does not escape to the initramfs. */
int ssi_open_in_root(int dirfd, const char *path, int flags);



/* mount(2) in a forked child, waited for at most timeout_ms. A network
 * file system's mount can block for minutes when its server does not
 * answer; PID 1 must not. Returns 0 when mounted, else an errno value:
 * the mount's own, or ETIMEDOUT when the child was still waiting (it is
 * killed: NFS waits are killable). The mount is in the caller's mount
 * namespace, as if it had been made there. */
int ssi_mount_bounded(const char *source, const char *target, const char *type,
                      unsigned long flags, const char *data, int timeout_ms);
/* umount2(target, flags) in a child process, waited for at most
 * timeout_ms. Returns 0, the child's errno, or ETIMEDOUT: then the child
 * is sent SIGKILL and NOT waited for (a GFS2 unmount that waits for the
 * lock manager may not die at once; the caller, about to power off, must
 * not block on it). */
int ssi_umount_bounded(const char *target, int flags, int timeout_ms);
/* reboot(2) with <sys/reboot.h>'s commands, which Swift's Glibc does not
 * import: 0 powers off, 1 reboots, 2 halts. Returns only on failure. */
int ssi_reboot(int what);
#endif

/* Attaches the regular file `path` to a free loop device (read-write,
 * autoclear: the device frees itself once the last user closes it or the
 * file system on it is unmounted). Writes the loop device's number to
 * *number and returns an open descriptor of the device, or -1 with errno. */
int ssi_loop_attach(const char *path, int *number);

/* swapon(2)/swapoff(2) (<sys/swap.h> is not in Swift's Glibc module);
 * priority < 0: the kernel's default. */
int ssi_swapon(const char *path, int priority, int discard);
int ssi_swapoff(const char *path);

/* pidfd_open(2) and pidfd_getfd(2): a copy of another process's
 * descriptor (the process migration's home agent keeps the real object). */
int ssi_pidfd_open(pid_t pid);
/* finit_module(2), which glibc does not wrap. */
int ssi_finit_module(int fd, const char *params, int flags);
int ssi_pidfd_getfd(int pidfd, int fd);

/* kcmp(2) KCMP_FILE: 0 when fd1 of pid1 and fd2 of pid2 are the same open
 * file description, 1 or 2 when not, -1 with errno on failure. */
int ssi_kcmp_file(int pid1, int pid2, int fd1, int fd2);

/* sendmsg/recvmsg with SCM_RIGHTS: `len` bytes of data and `n` (at most
 * 16) descriptors. ssi_recv_fds stores received descriptors (close-on-exec)
 * in fds, their count in *nfds, and returns the bytes read or -1. */
ssize_t ssi_send_fds(int sock, const int *fds, int n, const void *data, size_t len);
ssize_t ssi_recv_fds(int sock, int *fds, int max, int *nfds, void *data, size_t len);

/* SO_PEERCRED of a unix socket's peer: its pid, effective uid and gid at
 * its connect(). Returns 0, or -1 with errno (ENOTSOCK...). A socket with
 * no peer credentials (not a unix socket) reports uid and gid (uid_t)-1. */
int ssi_peer_cred(int sock, pid_t *pid, uid_t *uid, gid_t *gid);

/* THE way ssi starts a program (SpawnSpec in SSILinux is its Swift face).
 * fork, then in the child, in this order and with async-signal-safe calls
 * only:
 *   signals: 0 as inherited; 1 none blocked; 2 also every disposition
 *            back to the default;
 *   chroot(root) and chdir("/") when root is set (with the spawner's
 *            rights: the root is the spawner's path);
 *   setgroups(groups), setgid(gid), setuid(uid) when uid >= 0 (gid must
 *            be too): the identity is dropped BEFORE any path of the
 *            caller's is touched;
 *   chdir(cwd) when cwd is set, as the new identity;
 *   the descriptor map: fds[i] becomes descriptor i (-1: i is left as it
 *            is, SSI_SPAWN_DEVNULL: /dev/null opened in the new root);
 *            with close_others every other descriptor closes at the exec,
 *            without it they stay, but a mapped source keeps only its
 *            new number;
 *   setsid() when new_session, TIOCSCTTY on ctty when ctty >= 0;
 *   the keeper (see below), then the exec: fexecve(exe_fd) when
 *            exe_fd >= 0, else execvp(path) with envp's PATH when
 *            search_path, else execve(path).
 * Returns the pid once the program runs (the exec closed the report
 * pipe). If a step fails, the child reports errno and the step on a
 * close-on-exec pipe and exits; this reaps it and returns -1 with that
 * errno, *failed_step naming the step ("chdir", "exec", ...). */
#define SSI_SPAWN_DEVNULL (-2)
struct ssi_spawn {
    const char *path;
    int exe_fd;
    int search_path;
    char *const *argv;
    char *const *envp;
    const char *root;
    const char *cwd;
    int uid;
    int gid;
    const gid_t *groups;
    int ngroups;
    const int *fds;
    int nfds;
    int close_others;
    int signals;
    int new_session;
    int ctty;
    /* 0: the program itself is started. 1: a keeper is, which runs the
     * program in a process group of its own (criu restore refuses to run
     * as a session or group leader: it gives the restored process its own
     * session and group) and exits with its status. 2: the same, but the
     * keeper writes the program's status (one byte) to status_fd and, if
     * it was 0, stays as the session's leader (a terminal's) until it is
     * killed. */
    int keeper;
    int status_fd;
    /* With a keeper: the keeper is a child subreaper, so that what the
     * program leaves behind (criu's restored process) becomes its child,
     * in its session: a restored process left stopped is then not in an
     * orphaned process group, which the kernel would hang up. */
    int subreaper;
};
pid_t ssi_spawn(const struct ssi_spawn *spec, const char **failed_step);

/* A new pseudo-terminal: the master (close-on-exec, read-write) and its
 * slave, opened without becoming anybody's controlling terminal. */
int ssi_open_pty(int *master, int *slave);
/* The path of pty master `master`'s slave (/dev/pts/N) in `name`
 * (`size` bytes): 0, or -1 with errno. */
int ssi_pty_slave_name(int master, char *name, size_t size);

/* GNU calls Swift's Glibc module does not show: accept4(SOCK_CLOEXEC),
 * pipe2(O_CLOEXEC), F_SETPIPE_SZ, PR_SET_CHILD_SUBREAPER. */
int ssi_accept(int fd);
int ssi_pipe(int fds[2]);
int ssi_set_pipe_size(int fd, int size);
/* fallocate(PUNCH_HOLE | KEEP_SIZE) over the first `length` bytes: the
   file keeps its size, its blocks (a tmpfs's memory) go. 0 or -1/errno. */
int ssi_punch_hole(int fd, long long length);
int ssi_set_child_subreaper(void);
/* The path the kernel executed (AT_EXECFN), or NULL. */
const char *ssi_exec_path(void);
/* close_range(fd, ~0U, 0). */
int ssi_close_from(int fd);
/* prctl(PR_SET_NAME): the process's comm (15 bytes). */
int ssi_set_comm(const char *name);
/* unshare(CLONE_FS): the calling thread's root, cwd and umask become its
   own (glibc declares unshare only with _GNU_SOURCE). */
int ssi_unshare_fs(void);
/* unshare(CLONE_FS | CLONE_NEWNS): the calling thread alone gets a mount
   namespace of its own too (the unit tests' stand-in for a thread in
   another root: its mounts are not in the process's /proc/self). */
int ssi_unshare_fs_and_mounts(void);

/* Makes the process `pid` (x86-64) replace its descriptor `target_fd`
 * with a unix stream socket connected to the abstract address `name`
 * (without its leading NUL): ptrace, then socket(), connect(), dup2() and
 * close() executed in the process, one syscall instruction written over
 * its current instruction and single-stepped each time; memory and
 * registers are put back (a system call it was in restarts). With `stop`,
 * the process is left stopped (a restored process, which was stopped);
 * without, it runs on.
 * This is how a restored process gets a stand-in for a TCP connection,
 * which CRIU will not take from --inherit-fd, and how a device's
 * descriptor becomes a socket to the home agent before a dump (CRIU cannot
 * dump most devices). Returns 0, or -1 with errno and *step naming what
 * failed. */
int ssi_inject_unix_fd(pid_t pid, int target_fd, const char *name, int stop, const char **step);
/* Makes stopped (or, `freeze_fd` >= 0, cgroup-frozen) process `pid` exec
 * the deputy (see shim.c). */
int ssi_inject_deputy(pid_t pid, const char *name, int target_fd, const unsigned char *blob, size_t bloblen,
                      const size_t *relocs, size_t nrelocs, size_t path_off, size_t argv_off, size_t envp_off,
                      int freeze_fd, const char **step);

/* SO_PEERGROUPS (Linux 4.13): the supplementary groups of a unix socket's
 * peer, as the kernel recorded them at its connect(). Stores at most `max`
 * in groups and their count in *n; returns 0, or -1 with errno: ERANGE when
 * max is too small (*n is then how many there are), ENOPROTOOPT on an
 * older kernel, ENODATA when the socket has no peer credentials. */
int ssi_peer_groups(int sock, gid_t *groups, int max, int *n);
