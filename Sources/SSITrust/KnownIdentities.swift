#if canImport(Glibc)
import Glibc
#endif
public import SSICore
import SSIConfig

/// The enrolled nodes' public identities (`[identity] known`, default
/// /etc/ssi/identities), in the spirit of SSH's known_hosts: one
/// `NAME ed25519:BASE64` line per node, `#` comments. Public: an image
/// carries it so that a node can check the init node's answer. Edited by
/// `ssi cluster node enroll/remove`, which keep every other line as it was.
public struct KnownIdentities: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var name: String
        public var identity: PublicIdentity
        public var line: Int
    }

    /// The file's lines, kept for rewriting it.
    private var lines: [String]
    public private(set) var entries: [Entry]

    public static let maxBytes = 1 << 20

    public init() {
        lines = []
        entries = []
    }

    public static func parse(_ text: String, source: String) throws(SSIError) -> KnownIdentities {
        var result = KnownIdentities()
        // LF or CRLF lines (textLines); no last empty line after a final LF.
        var raw = textLines(text)
        if raw.last == "" { raw.removeLast() }
        for (index, whole) in raw.enumerated() {
            let number = index + 1
            result.lines.append(String(whole))
            var line = String(whole)
            if let hash = line.firstIndex(of: "#") { line = String(line[..<hash]) }
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if words.isEmpty { continue }
            guard words.count == 2 else {
                throw SSIError("identity", "\(source) line \(number): expected \"NAME ed25519:KEY\", found \(words.count) words",
                               hint: "one node per line; `ssi cluster node enroll` writes them")
            }
            let name = String(words[0])
            guard validName(name) else {
                throw SSIError("identity", "\(source) line \(number): \"\(printable(name.prefix(80)))\" is not a node name")
            }
            guard let identity = PublicIdentity(words[1]) else {
                throw SSIError("identity", "\(source) line \(number): \"\(printable(words[1].prefix(80)))\" is not ed25519: and a 32-byte base64 key")
            }
            if let first = result.entries.first(where: { $0.name == name }) {
                throw SSIError("identity", "\(source) line \(number): \(name) is also on line \(first.line)",
                               hint: "keep one line per node")
            }
            result.entries.append(Entry(name: name, identity: identity, line: number))
        }
        return result
    }

    /// The file at `path`; a missing file is an empty list (no node
    /// enrolled yet).
    public static func load(_ path: String) throws(SSIError) -> KnownIdentities {
        guard access(path, F_OK) == 0 || errno != ENOENT else { return KnownIdentities() }
        return try parse(try ConfigFiles.readText(path, what: "known identities"), source: path)
    }

    public func identity(of name: String) -> PublicIdentity? {
        entries.first { $0.name == name }?.identity
    }

    /// Records `identity` for `name`, replacing its line or adding one.
    public mutating func set(_ name: String, _ identity: PublicIdentity) {
        let line = "\(name) \(identity)"
        if let i = entries.firstIndex(where: { $0.name == name }) {
            lines[entries[i].line - 1] = line
            entries[i].identity = identity
        } else {
            lines.append(line)
            entries.append(Entry(name: name, identity: identity, line: lines.count))
        }
    }

    /// Removes `name`'s line; false if it had none.
    public mutating func remove(_ name: String) -> Bool {
        guard let i = entries.firstIndex(where: { $0.name == name }) else { return false }
        let line = entries[i].line
        lines.remove(at: line - 1)
        entries.remove(at: i)
        for j in entries.indices where entries[j].line > line { entries[j].line -= 1 }
        return true
    }

    public var text: String { lines.map { $0 + "\n" }.joined() }

    static func validName(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 64 && s.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2D || c == 0x5F || c == 0x2E
        }
    }
}
