#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
public import SSICore

/// Says when a mount table (`/proc/PID/mountinfo`) or the swap areas
/// (`/proc/swaps`) changed, without reading them: the kernel marks an open
/// file of either with POLLPRI|POLLERR once after each change, so a loop
/// that polls other descriptors polls this one too and reads the table only
/// then. (The membership agent parsed PID 1's mountinfo after every poll
/// round: 7-49 ms each under TCG, most of its loop, and a cluster mount's
/// answers waited behind it.)
///
/// A class (not a ~Copyable value) so a caller can hold it in an optional
/// for as long as its loop runs; the file closes with the last reference.
public final class TableWatch {
    let file: Descriptor

    public init(_ path: String) throws(SystemCallError) {
        file = try Descriptor(open: path, O_RDONLY)
    }

    /// The entry for poll(2).
    public var pollEntry: pollfd { pollfd(fd: file.rawValue, events: Int16(POLLPRI), revents: 0) }

    /// Whether a poll's `revents` for this entry say the table changed.
    public static func changed(_ revents: Int16) -> Bool {
        revents & Int16(POLLPRI | POLLERR) != 0
    }

    /// True when the table changed since the last look (waits at most
    /// `timeoutMilliseconds`).
    public func changed(timeoutMilliseconds: Int32 = 0) -> Bool {
        var entry = [pollEntry]
        return pollRetrying(&entry, timeoutMs: timeoutMilliseconds) > 0 && Self.changed(entry[0].revents)
    }
}
