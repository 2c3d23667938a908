#if canImport(Glibc)
import Glibc
#endif
public import SSICore
import SSIConfig

/// The cluster key at rest, sealed to each enrolled node's identity
/// (`[identity] sealed`, default /etc/ssi/sealed-keys; DESIGN-NOTES.md,
/// "Keys at rest"). A node that boots from its own disk (a gfs2 node on
/// the shared root, the init node) carries this file instead of the key,
/// and opens its own line with the key its TPM or medium gives: a disk, a
/// copy of the image or of the shared root holds only ciphertext. One
/// line per node:
///
///     NAME SHA256:FINGERPRINT BASE64
///
/// BASE64 is `crypto_box_seal` of a key bundle (the key exchange's own
/// codec, so the same paths and modes are allowed) to the identity whose
/// fingerprint the line names; `#` starts a comment. Written by
/// `ssi cluster key seal`, which seals one key to every enrolled node.
public struct SealedKeys: Sendable, Equatable {
    public struct Box: Sendable, Equatable {
        public var name: String
        /// The identity the box was sealed to, as `ssi cluster node list`
        /// shows it: a node that no longer has it was re-enrolled since.
        public var fingerprint: String
        public var sealed: [UInt8]
        public var line: Int
    }

    public private(set) var boxes: [Box]

    /// A 4096-byte key (corosync's largest) seals to about 5.6 KB of
    /// base64: a line longer than this is not one of ours.
    static let maxLine = 8192
    public static let maxBytes = 1 << 20

    public init() { boxes = [] }

    /// `bundle` sealed to every identity in `known`, in its order.
    public static func seal(_ bundle: KeyBundle, to known: KnownIdentities) throws(SSIError) -> SealedKeys {
        var result = SealedKeys()
        for entry in known.entries {
            guard let sealed = entry.identity.seal(bundle.bytes) else {
                throw SSIError("keys", "\(entry.name)'s enrolled identity is not a usable key (line \(entry.line) of the known identities)",
                               hint: "enroll it again: ssi cluster node enroll \(entry.name) --replace ...")
            }
            result.boxes.append(Box(name: entry.name, fingerprint: entry.identity.fingerprint, sealed: sealed, line: result.boxes.count + 3))
        }
        return result
    }

    public var text: String {
        var out = "# The cluster key sealed to each enrolled node's identity (ssi cluster key seal).\n"
            + "# Ciphertext only; a node opens its own line with its TPM or key medium.\n"
        for box in boxes { out += "\(box.name) \(box.fingerprint) \(Base64.encode(box.sealed))\n" }
        return out
    }

    public static func parse(_ text: String, source: String) throws(SSIError) -> SealedKeys {
        var result = SealedKeys()
        // LF or CRLF lines (textLines); no last empty line after a final LF.
        var raw = textLines(text)
        if raw.last == "" { raw.removeLast() }
        for (index, whole) in raw.enumerated() {
            let number = index + 1
            guard whole.utf8.count <= maxLine else {
                throw SSIError("keys", "\(source) line \(number): \(whole.utf8.count) bytes, longer than any sealed key",
                               hint: "write the file again with ssi cluster key seal")
            }
            var line = String(whole)
            if let hash = line.firstIndex(of: "#") { line = String(line[..<hash]) }
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if words.isEmpty { continue }
            guard words.count == 3 else {
                throw SSIError("keys", "\(source) line \(number): expected \"NAME SHA256:FINGERPRINT SEALED\", found \(words.count) words",
                               hint: "write the file again with ssi cluster key seal")
            }
            let name = String(words[0])
            guard KnownIdentities.validName(name) else {
                throw SSIError("keys", "\(source) line \(number): \"\(printable(name.prefix(80)))\" is not a node name")
            }
            let fingerprint = String(words[1])
            guard fingerprint.hasPrefix("SHA256:"), let digest = Base64.decode(fingerprint.dropFirst(7) + "="), digest.count == 32 else {
                throw SSIError("keys", "\(source) line \(number): \"\(printable(fingerprint.prefix(80)))\" is not a SHA256: fingerprint")
            }
            guard let sealed = Base64.decode(words[2]), sealed.count > 48 else {
                throw SSIError("keys", "\(source) line \(number): \(name)'s sealed key is not base64 of a sealed box")
            }
            if let first = result.boxes.first(where: { $0.name == name }) {
                throw SSIError("keys", "\(source) line \(number): \(name) is also on line \(first.line)",
                               hint: "write the file again with ssi cluster key seal")
            }
            result.boxes.append(Box(name: name, fingerprint: fingerprint, sealed: sealed, line: number))
        }
        return result
    }

    public static func load(_ path: String) throws(SSIError) -> SealedKeys {
        try parse(try ConfigFiles.readText(path, what: "sealed keys"), source: path)
    }

    public func box(of name: String) -> Box? { boxes.first { $0.name == name } }

    /// Node `name`'s key bundle, opened with its key. The errors say what
    /// an administrator does about each: a node enrolled after the seal,
    /// a node whose identity changed since (a replaced board or medium).
    public func open(for name: String, with key: NodeKey, source: String) throws(SSIError) -> KeyBundle {
        let me = key.identity.fingerprint
        guard let box = box(of: name) else {
            throw SSIError("keys", "\(source) holds no cluster key sealed to \(name): it was sealed before \(name) was enrolled, "
                           + "or \(name) is not enrolled (this node is \(me))",
                           hint: "on a running member (or where the key is): ssi cluster node enroll \(name) --identity \(key.identity); "
                           + "ssi cluster key seal; then rebuild this image")
        }
        guard let opened = key.open(sealed: box.sealed) else {
            let why = box.fingerprint == me
                ? "the line names this identity, but it does not open with it (the file was changed)"
                : "identity changed: the key was sealed to \(box.fingerprint), and this node is \(me) (a replaced board, TPM or key medium)"
            throw SSIError("keys", "\(source) line \(box.line): \(name)'s cluster key does not open: \(why)",
                           hint: box.fingerprint == me ? "write it again with ssi cluster key seal"
                               : "if this is \(name)'s new identity: ssi cluster node enroll \(name) --replace --identity \(key.identity); ssi cluster key seal; rebuild this image")
        }
        do throws(SSIError) {
            return try KeyBundle(decoding: opened)
        } catch {
            throw SSIError("keys", "\(source) line \(box.line): \(error.message)")
        }
    }
}
