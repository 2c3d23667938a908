// The two escapings the wire formats use, each written once. Both work on
// Unicode scalars and UTF-8 bytes, never on Characters: "\r\n" is one
// Character, equal to neither "\r" nor "\n", and once went out raw.

/// Backslash escaping of a text field: `\` and the listed scalars become
/// `\` and a letter. The process agents' `Fields` escape newlines only;
/// the cluster mount records also tabs and carriage returns.
public struct BackslashEscaping: Sendable {
    /// Each escaped scalar and its letter.
    let letters: [(scalar: Unicode.Scalar, letter: UInt8)]

    public init(_ letters: [(Unicode.Scalar, Character)]) {
        self.letters = letters.map { ($0.0, $0.1.asciiValue!) }
    }

    /// `Fields` values (one field per line).
    public static let lines = BackslashEscaping([("\n", "n")])
    /// Cluster mount records (tab-separated lines).
    public static let records = BackslashEscaping([("\n", "n"), ("\t", "t"), ("\r", "r")])

    public func escape(_ s: String) -> String {
        var out = String.UnicodeScalarView()
        for c in s.unicodeScalars {
            if c == "\\" {
                out.append(contentsOf: #"\\"#.unicodeScalars)
            } else if let e = letters.first(where: { $0.scalar == c }) {
                out.append("\\")
                out.append(Unicode.Scalar(e.letter))
            } else {
                out.append(c)
            }
        }
        return String(out)
    }

    /// The reverse: `\` and a letter of this escaping is its scalar, `\`
    /// and anything else is that thing, a `\` at the end is kept. Bytes
    /// that are not UTF-8 become U+FFFD (a field is text).
    public func unescape(_ bytes: some Collection<UInt8>) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var escaping = false
        for b in bytes {
            if escaping {
                if let e = letters.first(where: { $0.letter == b }) {
                    out += Array(String(e.scalar).utf8)
                } else {
                    out.append(b)
                }
                escaping = false
            } else if b == UInt8(ascii: "\\") {
                escaping = true
            } else {
                out.append(b)
            }
        }
        if escaping { out.append(UInt8(ascii: "\\")) }
        return String(decoding: out, as: UTF8.self)
    }

    public func unescape(_ s: String) -> String { unescape(s.utf8) }
}

/// Percent escaping of a word: every byte that is not kept becomes `%XX`
/// (upper-case hex). The view file keeps printable ASCII but `%` and `,`;
/// a `ship` line's RESOURCE keeps everything but `%` and `|`.
public struct PercentEscaping: Sendable {
    let kept: @Sendable (UInt8) -> Bool

    public init(keeping kept: @escaping @Sendable (UInt8) -> Bool) {
        self.kept = { $0 != UInt8(ascii: "%") && kept($0) }
    }

    public static let viewWords = PercentEscaping { $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: ",") }
    public static let shipResources = PercentEscaping { $0 != UInt8(ascii: "|") }

    public func escape(_ s: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        for b in s.utf8 {
            if kept(b) { out.append(b) } else { out += [UInt8(ascii: "%"), hex[Int(b >> 4)], hex[Int(b & 15)]] }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The reverse. A `%` not followed by two hex digits is nil when
    /// `strict`, else kept as it is.
    public func unescape(_ s: some StringProtocol, strict: Bool) -> String? {
        let bytes = Array(s.utf8)
        guard bytes.contains(UInt8(ascii: "%")) else { return String(s) }
        func hex(_ b: UInt8) -> UInt8? {
            switch b {
            case 48...57: b - 48
            case 65...70: b - 55
            case 97...102: b - 87
            default: nil
            }
        }
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "%") {
                if i + 2 < bytes.count, let h = hex(bytes[i + 1]), let l = hex(bytes[i + 2]) {
                    out.append(h << 4 | l)
                    i += 3
                    continue
                }
                if strict { return nil }
            }
            out.append(bytes[i])
            i += 1
        }
        return String(decoding: out, as: UTF8.self)
    }
}
