public import SSICore
import SSIConfig

/// The key-delivery exchange between a booting node and the init node's
/// key server (TCP 7792 on the cluster network). One codec, exact bytes:
///
///     node → server  hello      "SSIK1\n" 01 NODE(u32 BE) PUBLIC(32) NONCE(32)
///     server → node  challenge  "SSIK1\n" 02 NONCE(32)
///     node → server  proof      03 SIGNATURE(64)
///     server → node  answer     04 STATUS(u8) LENGTH(u32 BE) BODY
///
/// The proof signs "ssi key request v1\0" NODE PUBLIC node-NONCE
/// server-NONCE, so a recorded proof is worth nothing later. STATUS 0's
/// body is the key bundle sealed to the node's key, then the init node's
/// signature over "ssi key answer v1\0" node-NONCE SEALED: only that node
/// opens it, and it knows the init node sent it for this request. Any
/// other STATUS is a refusal and its body a reason in UTF-8.
public enum KeyExchange {
    public static let port: UInt16 = 7792
    static let magic = Array("SSIK1\n".utf8)
    static let requestContext = Array("ssi key request v1\0".utf8)
    static let answerContext = Array("ssi key answer v1\0".utf8)
    /// The largest answer body either side accepts.
    public static let maxBody = 64 * 1024

    public struct Hello: Equatable, Sendable {
        public var node: UInt32
        public var identity: PublicIdentity
        public var nonce: [UInt8]
        public init(node: UInt32, identity: PublicIdentity, nonce: [UInt8]) {
            self.node = node
            self.identity = identity
            self.nonce = nonce
        }
        public static let size = 6 + 1 + 4 + 32 + 32
        public var bytes: [UInt8] { magic + [1] + bigEndian(node) + identity.key + nonce }
        public init(decoding b: [UInt8]) throws(SSIError) {
            guard b.count == Self.size, Array(b.prefix(6)) == magic, b[6] == 1 else {
                throw SSIError("keys", "not a key request (\(b.count) bytes, expected \(Self.size) starting SSIK1)")
            }
            node = readBigEndian(b, at: 7)
            identity = PublicIdentity(key: Array(b[11..<43]))
            nonce = Array(b[43..<75])
        }
    }

    public struct Challenge: Equatable, Sendable {
        public var nonce: [UInt8]
        public init(nonce: [UInt8]) { self.nonce = nonce }
        public static let size = 6 + 1 + 32
        public var bytes: [UInt8] { magic + [2] + nonce }
        public init(decoding b: [UInt8]) throws(SSIError) {
            guard b.count == Self.size, Array(b.prefix(6)) == magic, b[6] == 2 else {
                throw SSIError("keys", "the init node did not answer with a challenge: is this the ssi key server?")
            }
            nonce = Array(b[7...])
        }
    }

    public struct Proof: Equatable, Sendable {
        public var signature: [UInt8]
        public init(signature: [UInt8]) { self.signature = signature }
        public static let size = 1 + 64
        public var bytes: [UInt8] { [3] + signature }
        public init(decoding b: [UInt8]) throws(SSIError) {
            guard b.count == Self.size, b[0] == 3 else { throw SSIError("keys", "not a proof message") }
            signature = Array(b[1...])
        }
    }

    /// Why the init node gave nothing.
    public enum Refusal: UInt8, Sendable, CaseIterable {
        /// The node is in the configuration but no identity is enrolled for it.
        case unknownIdentity = 1
        /// Another identity is enrolled for the node (a replaced board, a new medium).
        case identityChanged = 2
        /// No such node, or the request came from another address.
        case notANode = 3
        /// The signature does not match the offered key.
        case badProof = 4
        /// The init node could not do its part (its key, its configuration).
        case serverError = 5

        public var summary: String {
            switch self {
            case .unknownIdentity: "unknown identity"
            case .identityChanged: "identity changed"
            case .notANode: "not a node of this cluster"
            case .badProof: "bad proof"
            case .serverError: "the init node's key server failed"
            }
        }
    }

    public enum Answer: Equatable, Sendable {
        case keys(sealed: [UInt8], signature: [UInt8])
        case refused(Refusal, String)

        public static let headerSize = 6
        public var bytes: [UInt8] {
            switch self {
            case .keys(let sealed, let signature):
                return [4, 0] + bigEndian(UInt32(sealed.count + signature.count)) + sealed + signature
            case .refused(let why, let text):
                let body = Array(text.utf8.prefix(1024))
                return [4, why.rawValue] + bigEndian(UInt32(body.count)) + body
            }
        }

        /// The body's length from the 6-byte header, checked before it is read.
        public static func bodyLength(header b: [UInt8]) throws(SSIError) -> (status: UInt8, length: Int) {
            guard b.count == headerSize, b[0] == 4 else { throw SSIError("keys", "not an answer from the key server") }
            let length = Int(readBigEndian(b, at: 2) as UInt32)
            guard length <= maxBody else { throw SSIError("keys", "the key server's answer is \(length) bytes (at most \(maxBody))") }
            return (b[1], length)
        }

        public init(status: UInt8, body: [UInt8]) throws(SSIError) {
            if status == 0 {
                guard body.count > 64 + 48 else { throw SSIError("keys", "the key server's answer is too short to hold keys") }
                self = .keys(sealed: Array(body.dropLast(64)), signature: Array(body.suffix(64)))
            } else if let why = Refusal(rawValue: status) {
                // The reason is shown on a console: escaped here, once.
                self = .refused(why, printable(String(decoding: body, as: UTF8.self)))
            } else {
                throw SSIError("keys", "the key server answered with an unknown status \(status)")
            }
        }
    }

    public static func proofMessage(_ hello: Hello, _ challenge: Challenge) -> [UInt8] {
        requestContext + bigEndian(hello.node) + hello.identity.key + hello.nonce + challenge.nonce
    }

    public static func answerMessage(clientNonce: [UInt8], sealed: [UInt8]) -> [UInt8] {
        answerContext + clientNonce + sealed
    }
}

/// What the init node gives a node that proved itself: files, each a
/// path from a fixed list, a mode and the bytes. Encoded "SSIB1" COUNT(u8)
/// then per file PATHLEN(u8) PATH MODE(u16 BE) LENGTH(u32 BE) DATA.
public struct KeyBundle: Equatable, Sendable {
    public struct File: Equatable, Sendable {
        public var path: String
        public var mode: UInt16
        public var bytes: [UInt8]
        public init(path: String, mode: UInt16, bytes: [UInt8]) {
            self.path = path
            self.mode = mode
            self.bytes = bytes
        }
    }

    public var files: [File]
    public init(files: [File]) { self.files = files }

    /// The only paths a bundle may name: a node never writes anything else,
    /// whoever answered.
    public static let allowedPaths: Set<String> = ["/etc/corosync/authkey", FenceSecrets.runtimePath]
    static let magic = Array("SSIB1".utf8)

    public var bytes: [UInt8] {
        var out = Self.magic + [UInt8(files.count)]
        for f in files {
            let path = Array(f.path.utf8)
            out += [UInt8(path.count)] + path + bigEndian(f.mode) + bigEndian(UInt32(f.bytes.count)) + f.bytes
        }
        return out
    }

    public init(decoding b: [UInt8]) throws(SSIError) {
        guard b.count >= 6, Array(b.prefix(5)) == Self.magic else { throw SSIError("keys", "the delivered keys are not a key bundle") }
        var at = 6
        files = []
        for _ in 0..<Int(b[5]) {
            guard at < b.count else { throw SSIError("keys", "the key bundle is cut short") }
            let pathLength = Int(b[at])
            at += 1
            guard at + pathLength + 6 <= b.count else { throw SSIError("keys", "the key bundle is cut short") }
            let path = String(decoding: b[at..<at + pathLength], as: UTF8.self)
            at += pathLength
            let mode: UInt16 = readBigEndian(b, at: at)
            let length = Int(readBigEndian(b, at: at + 2) as UInt32)
            at += 6
            guard length <= b.count - at else { throw SSIError("keys", "the key bundle is cut short") }
            guard Self.allowedPaths.contains(path) else {
                throw SSIError("keys", "the key bundle names \(printable(path)), which a node does not take")
            }
            guard mode & 0o7077 == 0 else { throw SSIError("keys", "the key bundle gives \(path) mode \(String(mode, radix: 8)); keys are root's alone") }
            files.append(File(path: path, mode: mode, bytes: Array(b[at..<at + length])))
            at += length
        }
        guard at == b.count else { throw SSIError("keys", "the key bundle has \(b.count - at) bytes after its last file") }
    }
}

func bigEndian<T: FixedWidthInteger>(_ v: T) -> [UInt8] {
    withUnsafeBytes(of: v.bigEndian) { Array($0) }
}

func readBigEndian<T: FixedWidthInteger>(_ b: [UInt8], at: Int) -> T {
    var v: T = 0
    for i in 0..<MemoryLayout<T>.size { v = v << 8 | T(b[at + i]) }
    return v
}
