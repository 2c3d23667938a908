#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CSSIShim
public import SSICore

/// An open file descriptor that this value owns: closed exactly once, by
/// `close()` or when the value ends. `~Copyable`, so two owners cannot
/// both close it (the second close could hit a descriptor another thread
/// has just been given the same number for). The raw number is lent out
/// through `rawValue` for calls; `take()` hands ownership to C or to
/// another owner.
public struct Descriptor: ~Copyable {
    public let rawValue: Int32

    /// Takes ownership of `fd` (>= 0).
    public init(owning fd: Int32) { rawValue = fd }

    /// open(2), close-on-exec, EINTR retried.
    public init(open path: String, _ flags: Int32, mode: mode_t = 0) throws(SystemCallError) {
        rawValue = try syscall("open \(path)") { Glibc.open(path, flags | O_CLOEXEC, mode) }
    }

    /// Closes now. Errors of close(2) are not reported: the descriptor is
    /// gone either way on Linux, and retrying it is the double close this
    /// type exists to prevent.
    public consuming func close() {
        // deinit runs at the end of this consuming scope.
    }

    /// Gives the descriptor up without closing it (to a C call or an owner
    /// that closes it).
    public consuming func take() -> Int32 {
        let fd = rawValue
        discard self
        return fd
    }

    deinit { _ = Glibc.close(rawValue) }
}

/// A close-on-exec pipe whose two ends are owned (each may be consumed on
/// its own: `let w = pipe.write` moves that end out).
@frozen
public struct OwnedPipe: ~Copyable {
    public var read: Descriptor
    public var write: Descriptor

    public init() throws(SystemCallError) {
        var fds: [Int32] = [-1, -1]
        try syscall("pipe2") { ssi_pipe(&fds) }
        read = Descriptor(owning: fds[0])
        write = Descriptor(owning: fds[1])
    }
}
