// Reading a guest's serial log file (written by SerialConnection)
// incrementally, as lines, and matching lines.

import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a line must look like. A string literal means "contains".
public struct LineMatch: Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let description: String
    private let test: @Sendable (String) -> Bool

    public init(description: String, _ test: @escaping @Sendable (String) -> Bool) {
        self.description = description
        self.test = test
    }

    public init(stringLiteral value: String) { self = .contains(value) }

    public func matches(_ line: String) -> Bool { test(line) }

    /// Whether `line` starts with `marker`, allowing one extra character
    /// in it: the serial console of a loaded TCG guest has been seen to
    /// double one byte of a line (CI logged "GFS22" for "GFS2", and a
    /// command's start marker "__S_6283x144x..." for "...x14x..."), and a
    /// marker is a random nonce, so one doubled byte cannot make another
    /// command's marker.
    public static func startsWithMarker(_ line: Substring, _ marker: String) -> Bool {
        if line.hasPrefix(marker) { return true }
        let chars = Array(line.prefix(marker.count + 1))
        guard chars.count == marker.count + 1 else { return false }
        let want = Array(marker)
        for skip in 1..<chars.count where chars[skip] == chars[skip - 1] {
            var c = chars
            c.remove(at: skip)
            if c == want { return true }
        }
        return false
    }

    /// Whether console output contains `expected`, allowing one byte of
    /// a line doubled (see `startsWithMarker`): for checks on what a
    /// command printed, whose text is the program's own (a doubled byte
    /// is the transport's, not the program's).
    public static func consoleText(_ output: String, contains expected: String) -> Bool {
        if output.contains(expected) { return true }
        for line in output.split(separator: "\n", omittingEmptySubsequences: false) where line.count > expected.count {
            let chars = Array(line)
            for i in 1..<chars.count where chars[i] == chars[i - 1] {
                var c = chars
                c.remove(at: i)
                if String(c).contains(expected) { return true }
            }
        }
        return false
    }

    /// The line contains `text`.
    public static func contains(_ text: String) -> LineMatch {
        LineMatch(description: "a line containing \"\(text)\"") { $0.contains(text) }
    }

    /// The line contains every one of `parts`, in this order.
    public static func containsInOrder(_ parts: String...) -> LineMatch { containsInOrder(parts) }

    /// The line contains every one of `parts`, in this order.
    public static func containsInOrder(_ parts: [String]) -> LineMatch {
        LineMatch(description: "a line containing, in order, " + parts.map { "\"\($0)\"" }.joined(separator: ", ")) { line in
            var rest = line[...]
            for part in parts {
                guard let r = rest.range(of: part) else { return false }
                rest = rest[r.upperBound...]
            }
            return true
        }
    }

    /// The line, without leading and trailing white space, is `text`.
    public static func exactly(_ text: String) -> LineMatch {
        LineMatch(description: "the line \"\(text)\"") { $0.trimmingCharacters(in: .whitespaces) == text }
    }

    /// A Swift regular expression found anywhere in the line. The pattern is
    /// checked here; an invalid one is a programming error.
    public static func regex(_ pattern: String) -> LineMatch {
        do { _ = try Regex(pattern) } catch { preconditionFailure("invalid regex \(pattern): \(error)") }
        return LineMatch(description: "a line matching /\(pattern)/") { line in
            guard let regex = try? Regex(pattern) else { return false }
            return line.contains(regex)
        }
    }
}

/// The serial log as lines, read on demand from the file qemu appends to.
/// Carriage returns are dropped; bytes that are not UTF-8 are replaced.
struct SerialLog: Sendable {
    let path: String
    private var offset: off_t = 0
    private var pending: [UInt8] = []
    /// Complete lines (their newline seen).
    private(set) var lines: [String] = []

    init(path: String) { self.path = path }

    /// The unfinished last line (a shell prompt, a line being printed).
    var partialLine: String? {
        pending.isEmpty ? nil : Self.decode(pending[...])
    }

    /// Reads what qemu appended since the last call.
    mutating func refresh() {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        guard lseek(fd, offset, SEEK_SET) == offset else { return }
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            offset += off_t(n)
            var start = 0
            for i in 0..<n where buffer[i] == UInt8(ascii: "\n") {
                pending += buffer[start..<i]
                lines.append(Self.decode(pending[...]))
                pending.removeAll(keepingCapacity: true)
                start = i + 1
            }
            pending += buffer[start..<n]
        }
    }

    /// Everything read so far, lines joined with "\n".
    var text: String {
        var all = lines.joined(separator: "\n")
        if let partialLine { all += (all.isEmpty ? "" : "\n") + partialLine }
        return all
    }

    /// The last `count` lines, partial line included.
    func tail(_ count: Int) -> [String] {
        var all = lines.suffix(count + 1)
        if let partialLine { all.append(partialLine) }
        return Array(all.suffix(count))
    }

    private static func decode(_ bytes: ArraySlice<UInt8>) -> String {
        String(decoding: bytes.filter { $0 != UInt8(ascii: "\r") }, as: UTF8.self)
    }

    /// A line a daemon logs to the console, which lands between a shell
    /// command's output lines as a kernel message does: corosync's
    /// ("Dec 05 18:05:01 info    [KNET  ] ...") and the membership
    /// agent's ("ssi-cluster: agent: ..."). No command the tests run
    /// prints either as its own output.
    static func isDaemonConsoleLine(_ line: String) -> Bool {
        if line.hasPrefix("ssi-cluster: agent: ") { return true }
        // "Mon DD HH:MM:SS LEVEL [SUBSYS] ..."
        let f = line.split(separator: " ", maxSplits: 4, omittingEmptySubsequences: true)
        guard f.count == 5, f[0].count == 3, f[0].first?.isUppercase == true, f[1].count == 2, f[1].allSatisfy(\.isNumber),
              f[2].count == 8, f[2].filter({ $0 == ":" }).count == 2,
              ["notice", "info", "warning", "error", "debug", "crit", "alert", "emerg"].contains(String(f[3])) else { return false }
        return f[4].drop { $0 == " " }.hasPrefix("[")
    }

    /// A kernel printk line ("[    1.234567] ..."), which can land in the
    /// middle of a shell command's output on the console.
    static func isKernelMessage(_ line: String) -> Bool {
        var rest = line[...]
        guard rest.first == "[" else { return false }
        rest = rest.dropFirst().drop { $0 == " " }
        let secs = rest.prefix { $0.isASCII && $0.isNumber }
        guard !secs.isEmpty else { return false }
        rest = rest.dropFirst(secs.count)
        guard rest.first == "." else { return false }
        rest = rest.dropFirst()
        let frac = rest.prefix { $0.isASCII && $0.isNumber }
        guard !frac.isEmpty else { return false }
        return rest.dropFirst(frac.count).first == "]"
    }
}
