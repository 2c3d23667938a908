public import SSICore

/// The fence agents' secrets (`[fence] secrets`, default
/// /etc/ssi/fence-secrets): `NAME=value` lines, `#` comments. A fence
/// argument written `key=@NAME` takes NAME's value only where a node
/// writes dlm.conf in RAM, so the configuration, which a GFS2 cluster
/// keeps on its shared root and in its images, never holds the password.
/// The file is sealed with the cluster key (`ssi cluster key seal`) and a
/// node finds it, opened, at `runtimePath` (DESIGN-NOTES.md, "Keys at rest").
public struct FenceSecrets: Sendable, Equatable {
    public private(set) var values: [String: String]

    /// Where a node keeps them once opened: the initramfs, then the
    /// daemons' root (RAM), mode 0400. The sealed bundle names this path.
    public static let runtimePath = "/etc/ssi/fence-secrets"
    public static let defaultPath = "/etc/ssi/fence-secrets"
    public static let maxBytes = 64 * 1024

    public init(values: [String: String] = [:]) { self.values = values }

    /// A secret's name: letters, digits, '_' or '-', 1 to 64 of them.
    public static func validName(_ s: some StringProtocol) -> Bool {
        !s.isEmpty && s.count <= 64 && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }
    }

    public static func parse(_ text: String, source: String) throws(SSIError) -> FenceSecrets {
        var result = FenceSecrets()
        var lineOf: [String: Int] = [:]
        // LF or CRLF lines (textLines); no last empty line after a final LF.
        var raw = textLines(text)
        if raw.last == "" { raw.removeLast() }
        for (index, line) in raw.enumerated() {
            let number = index + 1
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            guard let eq = trimmed.firstIndex(of: "=") else {
                throw SSIError("fence", "\(source) line \(number): expected NAME=value",
                               hint: "one secret per line, e.g. ipmi=s3cret, named in [fence] args as password=@ipmi")
            }
            let name = String(trimmed[..<eq]), value = String(trimmed[trimmed.index(after: eq)...])
            guard validName(name) else {
                throw SSIError("fence", "\(source) line \(number): \"\(printable(name.prefix(80)))\" is not a secret name (letters, digits, _ and -)")
            }
            // The value becomes one key=value word of dlm.conf.
            guard !value.isEmpty, !value.unicodeScalars.contains(where: { $0 == " " || $0 == "\t" || $0.value < 0x20 || $0.value == 0x7F }) else {
                throw SSIError("fence", "\(source) line \(number): \(name)'s value is empty or has white space or a control character",
                               hint: "a fence agent takes it as one key=value word")
            }
            if let first = lineOf[name] {
                throw SSIError("fence", "\(source) line \(number): \(name) is also on line \(first)")
            }
            lineOf[name] = number
            result.values[name] = value
        }
        return result
    }

    /// The file at `path`, which must be root's alone.
    public static func load(_ path: String) throws(SSIError) -> FenceSecrets {
        let bytes = try ConfigFiles.readBytes(path, what: "fence secrets")
        if let mode = ConfigFiles.mode(path), mode & 0o077 != 0 {
            throw SSIError("fence", "\(path) is mode \(String(mode & 0o777, radix: 8)): others can read the fence passwords",
                           hint: "chmod 600 \(path)")
        }
        return try parse(String(decoding: bytes, as: UTF8.self), source: path)
    }

    /// The file's text, for sealing.
    public var text: String {
        values.keys.sorted().map { "\($0)=\(values[$0]!)\n" }.joined()
    }
}
