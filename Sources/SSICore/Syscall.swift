#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif


/// Runs a libc call that returns -1 and sets errno, retrying EINTR, and
/// throws an error that names the call (swift-system's and swift-nio's
/// policy: EINTR is never the caller's problem).
@inline(__always)
@discardableResult
public func syscall<T: FixedWidthInteger>(
    _ name: @autoclosure () -> String, _ body: () -> T
) throws(SystemCallError) -> T {
    while true {
        let rc = body()
        if rc == -1 {
            let e = errno
            if e == EINTR { continue }
            throw SystemCallError(name(), errno: e)
        }
        return rc
    }
}

/// What one non-blocking call did: how many bytes (or its result), "not
/// now" (EAGAIN), or a failure with its errno read at the call. EINTR is
/// retried here, as in `syscall`, so that no loop elsewhere checks it.
public enum Attempt: Equatable, Sendable {
    case done(Int)
    case wouldBlock
    case failed(Int32)
}

/// Runs a call that may be interrupted or find nothing ready: EINTR is
/// retried, EAGAIN/EWOULDBLOCK is `.wouldBlock`, -1 is `.failed(errno)`.
@inline(__always)
public func attempt<T: FixedWidthInteger>(_ body: () -> T) -> Attempt {
    while true {
        let rc = body()
        if rc != -1 { return .done(Int(rc)) }
        let e = errno
        if e == EINTR { continue }
        return e == EAGAIN || e == EWOULDBLOCK ? .wouldBlock : .failed(e)
    }
}

/// poll(2) that is not cut short by a signal: an EINTR polls again for
/// what is left of `timeoutMs` (a negative timeout waits for ever). The
/// number of ready descriptors, 0 when the time ran out; -1 only for a
/// real failure (EINVAL, ENOMEM), with errno set.
public func pollRetrying(_ fds: UnsafeMutablePointer<pollfd>, _ count: Int, timeoutMs: Int32) -> Int32 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    let deadline = Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000 + Int64(timeoutMs)
    var left = timeoutMs
    while true {
        let n = poll(fds, nfds_t(count), left)
        if n >= 0 { return n }
        if errno != EINTR { return -1 }
        guard timeoutMs >= 0 else { continue }
        clock_gettime(CLOCK_MONOTONIC, &now)
        let ms = deadline - (Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000)
        if ms <= 0 { return 0 }
        left = Int32(ms)
    }
}

/// The same for an array of descriptors.
public func pollRetrying(_ fds: inout [pollfd], timeoutMs: Int32) -> Int32 {
    let count = fds.count
    return fds.withUnsafeMutableBufferPointer { pollRetrying($0.baseAddress!, count, timeoutMs: timeoutMs) }
}

/// The same for one descriptor.
public func pollRetrying(_ fd: inout pollfd, timeoutMs: Int32) -> Int32 {
    pollRetrying(&fd, 1, timeoutMs: timeoutMs)
}
