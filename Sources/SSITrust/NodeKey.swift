import CSodium
public import SSICore

/// A node's identity: an Ed25519 key pair (libsodium). The private half
/// never leaves the node's local medium and RAM; the public half is
/// enrolled on the init node, which then gives the cluster key only to a
/// node that signs a fresh challenge with it. The same pair, converted to
/// X25519, is what the cluster key is sealed to, so only that node opens it.
public struct NodeKey: Sendable {
    public let identity: PublicIdentity
    /// The 32-byte seed the pair is made from (what the key file holds).
    public let seed: [UInt8]
    private let secretKey: [UInt8]

    public init(seed: [UInt8]) throws(SSIError) {
        guard seed.count == 32 else { throw SSIError("identity", "a node key seed is 32 bytes, not \(seed.count)") }
        _ = sodium_init()
        var pk = [UInt8](repeating: 0, count: 32), sk = [UInt8](repeating: 0, count: 64)
        guard crypto_sign_seed_keypair(&pk, &sk, seed) == 0 else { throw SSIError("identity", "libsodium refused the seed") }
        self.seed = seed
        self.secretKey = sk
        self.identity = PublicIdentity(key: pk)
    }

    /// A new key from the kernel's random source.
    public static func generate() -> NodeKey {
        _ = sodium_init()
        var seed = [UInt8](repeating: 0, count: 32)
        randombytes_buf(&seed, 32)
        // 32 bytes are always a valid seed.
        guard let key = try? NodeKey(seed: seed) else { return generate() }
        return key
    }

    public func sign(_ message: [UInt8]) -> [UInt8] {
        var sig = [UInt8](repeating: 0, count: 64)
        _ = crypto_sign_detached(&sig, nil, message, UInt64(message.count), secretKey)
        return sig
    }

    /// Opens what `PublicIdentity.seal` sealed to this key; nil when it
    /// was not sealed to it or was changed.
    public func open(sealed: [UInt8]) -> [UInt8]? {
        guard sealed.count >= 48 else { return nil }
        var xpk = [UInt8](repeating: 0, count: 32), xsk = [UInt8](repeating: 0, count: 32)
        guard crypto_sign_ed25519_pk_to_curve25519(&xpk, identity.key) == 0,
              crypto_sign_ed25519_sk_to_curve25519(&xsk, secretKey) == 0 else { return nil }
        var out = [UInt8](repeating: 0, count: sealed.count - 48)
        guard crypto_box_seal_open(&out, sealed, UInt64(sealed.count), xpk, xsk) == 0 else { return nil }
        return out
    }
}

/// The public half of a node key, written `ed25519:BASE64` in the known
/// identities file, and shown as an SSH-style fingerprint
/// (`SHA256:` and the unpadded base64 of the key's SHA-256) for an
/// administrator to compare with what the node's console prints.
public struct PublicIdentity: Hashable, Sendable, CustomStringConvertible {
    public let key: [UInt8]

    public init(key: [UInt8]) { self.key = key }

    static let prefix = "ed25519:"

    /// Parses `ed25519:BASE64` (a 32-byte key); nil for anything else.
    public init?(_ text: some StringProtocol) {
        guard text.hasPrefix(Self.prefix), let bytes = Base64.decode(text.dropFirst(Self.prefix.count)), bytes.count == 32 else {
            return nil
        }
        key = bytes
    }

    public var description: String { Self.prefix + Base64.encode(key) }

    public var fingerprint: String {
        _ = sodium_init()
        var digest = [UInt8](repeating: 0, count: 32)
        _ = crypto_hash_sha256(&digest, key, UInt64(key.count))
        return "SHA256:" + Base64.encode(digest, padding: false)
    }

    public func verify(signature: [UInt8], of message: [UInt8]) -> Bool {
        guard signature.count == 64 else { return false }
        _ = sodium_init()
        return crypto_sign_verify_detached(signature, message, UInt64(message.count), key) == 0
    }

    /// `message` sealed (anonymous sender) to this identity's X25519
    /// form; nil if the key is not a valid curve point.
    public func seal(_ message: [UInt8]) -> [UInt8]? {
        _ = sodium_init()
        var xpk = [UInt8](repeating: 0, count: 32)
        guard crypto_sign_ed25519_pk_to_curve25519(&xpk, key) == 0 else { return nil }
        var out = [UInt8](repeating: 0, count: message.count + 48)
        guard crypto_box_seal(&out, message, UInt64(message.count), xpk) == 0 else { return nil }
        return out
    }
}

/// Standard base64 through libsodium (constant-time, strict).
public enum Base64 {
    public static func encode(_ bytes: [UInt8], padding: Bool = true) -> String {
        _ = sodium_init()
        let variant = padding ? sodium_base64_VARIANT_ORIGINAL : sodium_base64_VARIANT_ORIGINAL_NO_PADDING
        let size = sodium_base64_encoded_len(bytes.count, variant)
        var out = [CChar](repeating: 0, count: size)
        _ = sodium_bin2base64(&out, size, bytes, bytes.count, variant)
        return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// nil unless `text` is all of one padded base64 value.
    public static func decode(_ text: some StringProtocol) -> [UInt8]? {
        _ = sodium_init()
        let input = Array(text.utf8)
        guard !input.isEmpty else { return [] }
        guard input.count <= SealedKeys.maxLine else { return nil }
        var out = [UInt8](repeating: 0, count: input.count * 3 / 4 + 3)
        var length = 0
        var whole = false
        input.withUnsafeBufferPointer { b in
            b.withMemoryRebound(to: CChar.self) { c in
                guard let base = c.baseAddress else { return }
                var end: UnsafePointer<CChar>?
                let rc = sodium_base642bin(&out, out.count, base, input.count, nil, &length, &end,
                                           sodium_base64_VARIANT_ORIGINAL)
                // The whole text, not a valid prefix of it.
                whole = rc == 0 && end == base + input.count
            }
        }
        return whole ? Array(out.prefix(length)) : nil
    }
}
