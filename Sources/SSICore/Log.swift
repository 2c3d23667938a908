#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Early-boot logging: one line per event to the console (stderr, which the
/// kernel opened on /dev/console for PID 1) with the boot clock's timestamp,
/// and to /dev/kmsg so that `dmesg` and the journal keep it after hand-off.
///
/// The kmsg copy is written at priority 7 (debug): the kernel's console
/// loglevel prints anything below 7, so a lower priority would show every
/// line twice on the console.
public struct Log: ~Copyable {
    public let tag: String
    private let kmsg: Int32

    /// `useKmsg`: also write to /dev/kmsg (devtmpfs must be mounted).
    public init(tag: String, useKmsg: Bool) {
        self.tag = tag
        self.kmsg = useKmsg ? open("/dev/kmsg", O_WRONLY | O_CLOEXEC) : -1
    }

    deinit {
        if kmsg >= 0 { close(kmsg) }
    }

    /// One line per step: few enough to print even with `quiet`, and the
    /// first thing an administrator reads on a cluster node's console.
    public func info(_ step: String, _ message: String) {
        emit(step, message)
    }

    /// Something is wrong but the boot goes on (a policy chose to).
    public func warning(_ step: String, _ message: String) {
        emit(step, "WARNING: " + message)
    }

    /// The boot cannot go on: the line names the step and the cause.
    public func error(_ step: String, _ message: String) {
        emit(step, "ERROR: " + message)
    }

    private func emit(_ step: String, _ message: String) {
        writeAll(2, "\(tag): [\(Log.uptimeString())] \(step): \(message)\n")
        if kmsg >= 0 {
            // kmsg takes one record per write; keep it one line.
            let flat = message.replacingNewlines()
            writeAll(kmsg, "<7>\(tag): \(step): \(flat)\n")
        }
    }

    /// Seconds since boot (CLOCK_BOOTTIME), "%5d.%03d" like the kernel's
    /// own timestamps, so the two line up in a serial log.
    public static func uptimeString() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_BOOTTIME, &ts)
        let ms = Int(ts.tv_nsec) / 1_000_000
        let secs = String(Int(ts.tv_sec))
        let frac = String(ms)
        return String(repeating: " ", count: max(0, 5 - secs.count)) + secs + "."
            + String(repeating: "0", count: 3 - frac.count) + frac
    }
}

/// Writes the whole string, best effort (a log line that cannot be
/// written is dropped): the loop is IO.swift's.
public func writeAll(_ fd: Int32, _ text: String) {
    try? writeAll(fd, Array(text.utf8), name: "log")
}

extension String {
    /// Scalars, not Characters: "\r\n" is one Character, not equal to
    /// "\n", and went into the kernel log as a line break.
    func replacingNewlines() -> String {
        var out = String.UnicodeScalarView()
        out.append(contentsOf: unicodeScalars.map { $0 == "\n" || $0 == "\r" ? " " : $0 })
        return String(out)
    }
}
