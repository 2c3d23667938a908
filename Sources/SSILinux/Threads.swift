#if canImport(Glibc)
import Glibc
#endif
public import SSICore
import CSSIShim

/// A detached POSIX thread running `body`. The process service blocks in
/// reads on pipes, sockets and ttys it relays, one thread per direction:
/// simple to reason about, and a stuck relay never stalls another. The
/// membership agent does a node's part of a cluster mount on one, so that
/// its single-threaded CPG loop never waits on a mount.
public func startThread(_ body: @escaping @Sendable () -> Void) {
    final class Box { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { arg in
        let b = Unmanaged<AnyObject>.fromOpaque(arg!).takeRetainedValue() as! Box
        b.body()
        return nil
    }, box)
    if rc != 0 {
        // No thread: run it here rather than lose it.
        Unmanaged<AnyObject>.fromOpaque(box).release()
        body()
        return
    }
    pthread_detach(thread)
}

/// Moves the calling thread alone into `root`: unshare(CLONE_FS) gives it
/// its own root, working directory and umask, then chroot and chdir("/").
/// The process's other threads keep theirs; what the thread starts from
/// then on (fork, posix_spawn) starts in `root`. Mount namespace and
/// credentials are the process's, so a mount made here is the system's
/// when `root` is "/proc/1/root".
public func enterRootOnThisThread(_ root: String) throws(SystemCallError) {
    try syscall("unshare(CLONE_FS)") { ssi_unshare_fs() }
    try syscall("chroot \(root)") { chroot(root) }
    try syscall("chdir /") { chdir("/") }
}
