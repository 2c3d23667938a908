#if canImport(Glibc)
import Glibc
#endif
public import SSICore

/// A node key on its local medium: a regular file (mode 0400, root's) on a
/// node with a disk, or the first 4 KiB of a small block device (or of a
/// disk image file) on a
/// diskless one (a USB stick, a virtual disk: `ssi cluster node key new -o
/// /dev/sdX`). The text:
///
///     ssi node identity v1
///     seed BASE64(32 bytes)
///     public ed25519:BASE64(32 bytes)
///
/// ends at the first NUL; a medium of only NULs is blank (a node booted
/// with `ssi.enroll` writes a new key there).
public enum NodeKeyFile {
    public static let header = "ssi node identity v1"
    /// The most read from a medium.
    public static let size = 4096

    public enum Contents: Sendable {
        case blank
        case key(NodeKey)
    }

    public static func text(_ key: NodeKey) -> String {
        "\(header)\nseed \(Base64.encode(key.seed))\npublic \(key.identity)\n"
    }

    /// Parses a medium's first bytes; errors name `source` and the line.
    public static func parse(_ bytes: [UInt8], source: String) throws(SSIError) -> Contents {
        let text = bytes.prefix { $0 != 0 }
        if text.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) { return .blank }
        guard let string = String(validating: text, as: UTF8.self) else {
            throw SSIError("identity", "\(source) does not hold a node key (not text)",
                           hint: "make one with `ssi cluster node key new -o \(source)`, or boot with ssi.enroll on a blank medium")
        }
        var seed: [UInt8]?, stated: PublicIdentity?
        // Bytes, not Characters: "\r\n" is one Character, so a String
        // split on "\n" would not split a CRLF file.
        for (index, bytes) in string.utf8.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated() {
            let raw = String(decoding: bytes.last == 0x0D ? bytes.dropLast() : bytes[...], as: UTF8.self)
            let line = raw[...]
            let number = index + 1
            if number == 1 {
                guard line == header else {
                    throw SSIError("identity", "\(source) line 1: expected \"\(header)\", found \"\(printable(line.prefix(80)))\"",
                                   hint: "this medium holds something else; give the node's key medium ([identity] device, ssi.identity=)")
                }
                continue
            }
            if line.isEmpty { continue }
            let parts = line.split(separator: " ", maxSplits: 1)
            switch parts.first {
            case "seed" where parts.count == 2:
                guard seed == nil, let bytes = Base64.decode(parts[1]), bytes.count == 32 else {
                    throw SSIError("identity", "\(source) line \(number): the seed is 32 bytes of base64, given once")
                }
                seed = bytes
            case "public" where parts.count == 2:
                guard stated == nil, let id = PublicIdentity(parts[1]) else {
                    throw SSIError("identity", "\(source) line \(number): expected \"public ed25519:BASE64\"")
                }
                stated = id
            default:
                throw SSIError("identity", "\(source) line \(number): unknown line \"\(printable(line.prefix(80)))\"",
                               hint: "a key file has the lines \(header), seed and public")
            }
        }
        guard let seed else { throw SSIError("identity", "\(source): no seed line") }
        let key = try NodeKey(seed: seed)
        if let stated, stated != key.identity {
            throw SSIError("identity", "\(source): the public line does not belong to the seed (the file was changed)",
                           hint: "make a new key and enroll it again")
        }
        return .key(key)
    }

    /// Reads a key medium: a block device's first 4 KiB, or a regular file
    /// that only its owner may read.
    public static func read(_ path: String) throws(SSIError) -> Contents {
        let raw: (kind: mode_t, mode: mode_t, bytes: [UInt8])
        do throws(SystemCallError) {
            let fd = try syscall("open \(path)") { open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY) }
            defer { close(fd) }
            var st = stat()
            try syscall("fstat \(path)") { fstat(fd, &st) }
            let kind = st.st_mode & S_IFMT
            if kind == S_IFBLK || kind == S_IFREG {
                // The first 4 KiB: a key file, or a disk image holding one.
                var buffer = [UInt8](repeating: 0, count: size)
                let n = try syscall("read \(path)") { buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, size, 0) } }
                raw = (kind, st.st_mode, Array(buffer.prefix(n)))
            } else {
                raw = (kind, st.st_mode, [])
            }
        } catch {
            throw SSIError("identity", "\(path): \(error.description)",
                           hint: error.errno == ENOENT ? "is the key medium attached? ([identity] device, ssi.identity=)" : nil)
        }
        switch raw.kind {
        case S_IFBLK:
            return try parse(raw.bytes, source: path)
        case S_IFREG:
            if raw.mode & 0o077 != 0 {
                throw SSIError("identity", "\(path) is mode \(String(raw.mode & 0o777, radix: 8)): others can read this node's key",
                               hint: "chmod 0400 \(path)")
            }
            return try parse(raw.bytes, source: path)
        default:
            throw SSIError("identity", "\(path) is neither a regular file nor a block device")
        }
    }

    /// Writes `key` to a block device (zero-padded to 4 KiB, synced) or,
    /// atomically, to a file of mode 0400. Refuses to replace a key unless
    /// `force`: the node would lose its enrolled identity.
    public static func write(_ key: NodeKey, to path: String, force: Bool) throws(SSIError) {
        var bytes = Array(text(key).utf8)
        var st = stat()
        if stat(path, &st) == 0, st.st_mode & S_IFMT == S_IFBLK {
            if !force, case .key = try read(path) {
                throw SSIError("identity", "\(path) already holds a node key", hint: "--force replaces it (the node must then be enrolled again)")
            }
            bytes += [UInt8](repeating: 0, count: size - bytes.count)
            do throws(SystemCallError) {
                let fd = try syscall("open \(path)") { open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY) }
                defer { close(fd) }
                try writeAll(fd, bytes, name: path)
                try syscall("fsync \(path)") { fsync(fd) }
            } catch {
                throw SSIError("identity", "writing \(path): \(error.description)")
            }
            return
        }
        do {
            try writeFileAtomically(path, bytes, mode: 0o400, replace: force)
        } catch {
            throw SSIError("identity", "writing \(path): \(error.description)",
                           hint: error.errno == EEXIST ? "--force replaces it (the node must then be enrolled again)" : nil)
        }
    }
}

/// Where a node's key comes from: its TPM (the default for a diskless
/// node), or a key medium ([identity] device, ssi.identity=PATH).
public enum KeySource: Equatable, Sendable, CustomStringConvertible {
    case tpm
    case medium(String)

    /// How the configuration and the command line name the TPM.
    public static let tpmName = "tpm"

    /// `tpm` or an absolute path; nil for anything else.
    public init?(_ text: String) {
        if text == Self.tpmName {
            self = .tpm
        } else if text.hasPrefix("/") {
            self = .medium(text)
        } else {
            return nil
        }
    }

    public var description: String {
        switch self {
        case .tpm: "the TPM (\(TPM.device))"
        case .medium(let path): path
        }
    }
}

extension NodeKeyFile {
    /// The node's key from `source`: derived by the TPM (never blank), or
    /// read from the medium.
    public static func load(_ source: KeySource) throws(SSIError) -> Contents {
        switch source {
        case .tpm: .key(try NodeKey(seed: TPM().identitySeed()))
        case .medium(let path): try read(path)
        }
    }
}
