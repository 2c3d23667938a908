#if canImport(Glibc)
import Glibc
#endif
import CSodium
public import SSICore
import SSILinux

/// A TCP connection between two nodes' process agents, authenticated and
/// encrypted with the cluster key (corosync's authkey, which every node
/// has and nobody outside the cluster has).
///
/// Handshake: each side sends a 32-byte random nonce; each direction's key
/// is BLAKE2b(cluster key, direction + both nonces), so a recorded session
/// replayed later decrypts to nothing. Each side then starts a libsodium
/// secretstream (XChaCha20-Poly1305) and sends "hello NODE" as its first
/// message: a peer without the key fails that message's authentication.
/// secretstream also rejects reordered, dropped or repeated messages.
///
/// After the handshake: messages of one type byte and a payload, each
/// framed as a 4-byte big-endian length and the ciphertext.
public final class SecureChannel: @unchecked Sendable {
    public let fd: Int32
    public private(set) var peerNode: UInt32 = 0
    private var pushState = crypto_secretstream_xchacha20poly1305_state()
    private var pullState = crypto_secretstream_xchacha20poly1305_state()
    private let sendLock = Locked(())
    private let receiveLock = Locked(())
    private let closed = Locked(false)

    /// The largest payload of one message.
    public static let maxPayload = 1 << 20
    /// The largest message before the peer has proved it has the key (its
    /// "hello NODE"): a stranger gets no more than this allocated.
    public static let maxHelloPayload = 64
    static let magic = Array("SSIP1\n".utf8)

    /// The 32-byte key the process agents use, derived from the authkey
    /// (so the agents never use corosync's key itself).
    public static func clusterKey(authkey: [UInt8]) -> [UInt8] {
        _ = sodium_init()
        var out = [UInt8](repeating: 0, count: 32)
        let input = authkey + Array("ssi process agents v1".utf8)
        _ = crypto_generichash(&out, 32, input, UInt64(input.count), nil, 0)
        return out
    }

    private init(fd: Int32) { self.fd = fd }

    /// Connects to a peer's agent and authenticates both ways.
    /// `from`: the local address to connect from. Agents give their own
    /// cluster address: the other side hears only the nodes' addresses,
    /// and a node with several addresses must not pick another one.
    public static func connect(address: String, port: UInt16, key: [UInt8], localNode: UInt32,
                               from source: String? = nil, timeoutSeconds: Int = 10) throws(SSIError) -> SecureChannel {
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        guard inet_pton(AF_INET, address, &sin.sin_addr) == 1 else {
            throw SSIError("proc", "\(address) is not an IPv4 address")
        }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { let lastErrno = errno; throw SSIError("proc", "socket: \(errnoDescription(lastErrno))") }
        setTimeout(fd, seconds: timeoutSeconds)
        if let source {
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            let parsed = inet_pton(AF_INET, source, &local.sin_addr) == 1
            let bound = parsed && withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            } == 0
            if !bound {
                let e = errno
                Glibc.close(fd)
                throw SSIError("proc", "connecting from \(source): " + (parsed ? errnoDescription(e) : "not an IPv4 address"),
                               hint: "is this node's cluster address up? (ip address)")
            }
        }
        let rc = withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 {
            let e = errno
            Glibc.close(fd)
            throw SSIError("proc", "connecting to the process agent at \(address):\(port): \(errnoDescription(e))",
                           hint: "is the node up and its agent running? (ssi cluster status)")
        }
        let ch = SecureChannel(fd: fd)
        do throws(SSIError) {
            try ch.handshake(key: key, localNode: localNode, client: true)
        } catch {
            ch.close()
            throw SSIError("proc", "\(address):\(port): \(error.message)")
        }
        setTimeout(fd, seconds: 0)
        return ch
    }

    /// Authenticates an accepted connection. On failure `fd` is closed,
    /// unless `closeOnFailure` is false (the caller closes it, after
    /// taking it out of its bookkeeping).
    public static func accept(fd: Int32, key: [UInt8], localNode: UInt32, closeOnFailure: Bool = true) throws(SSIError) -> SecureChannel {
        try handshaken(fd: fd, key: key, localNode: localNode, client: false, closeOnFailure: closeOnFailure)
    }

    /// Either side of the handshake on a connected stream.
    static func handshaken(fd: Int32, key: [UInt8], localNode: UInt32, client: Bool, closeOnFailure: Bool = true) throws(SSIError) -> SecureChannel {
        setTimeout(fd, seconds: 10)
        let ch = SecureChannel(fd: fd)
        do throws(SSIError) {
            try ch.handshake(key: key, localNode: localNode, client: client)
        } catch {
            if closeOnFailure { ch.close() } else { ch.closed.withLock { $0 = true } }
            throw error
        }
        setTimeout(fd, seconds: 0)
        return ch
    }

    /// A receive timeout for the next reads (0: none).
    public func setReceiveTimeout(seconds: Int) { Self.setTimeout(fd, seconds: seconds) }

    static func setTimeout(_ fd: Int32, seconds: Int) {
        var tv = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        // A peer that dies without a FIN is noticed in about 11 s.
        var on: Int32 = 1, idle: Int32 = 5, interval: Int32 = 2, count: Int32 = 3
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, 4)
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_KEEPIDLE, &idle, 4)
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_KEEPINTVL, &interval, 4)
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_KEEPCNT, &count, 4)
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, 4)
        // Data unacknowledged for 15 s (a peer that died mid-transfer):
        // the send fails instead of retrying for a quarter of an hour.
        var userTimeout: Int32 = 15_000
        setsockopt(fd, Int32(IPPROTO_TCP), 18 /* TCP_USER_TIMEOUT */, &userTimeout, 4)
    }

    private func handshake(key: [UInt8], localNode: UInt32, client: Bool) throws(SSIError) {
        guard key.count == 32 else { throw SSIError("proc", "the cluster key is not 32 bytes") }
        var mine = [UInt8](repeating: 0, count: 32)
        randombytes_buf(&mine, 32)
        try writeAll(Self.magic + mine)
        let theirs = try readExactly(Self.magic.count + 32)
        guard Array(theirs.prefix(Self.magic.count)) == Self.magic else {
            throw SSIError("proc", "the peer is not an ssi process agent (bad greeting)")
        }
        let theirNonce = Array(theirs.dropFirst(Self.magic.count))
        let (clientNonce, serverNonce) = client ? (mine, theirNonce) : (theirNonce, mine)
        func derive(_ label: String) -> [UInt8] {
            var out = [UInt8](repeating: 0, count: 32)
            let input = Array(label.utf8) + clientNonce + serverNonce
            _ = crypto_generichash(&out, 32, input, UInt64(input.count), key, 32)
            return out
        }
        let sendKey = derive(client ? "c2s" : "s2c"), receiveKey = derive(client ? "s2c" : "c2s")
        let headerSize = Int(crypto_secretstream_xchacha20poly1305_headerbytes())
        var header = [UInt8](repeating: 0, count: headerSize)
        _ = crypto_secretstream_xchacha20poly1305_init_push(&pushState, &header, sendKey)
        try writeAll(header)
        let theirHeader = try readExactly(headerSize)
        guard crypto_secretstream_xchacha20poly1305_init_pull(&pullState, theirHeader, receiveKey) == 0 else {
            throw SSIError("proc", "bad secretstream header from the peer")
        }
        try send(0, Array("hello \(localNode)".utf8))
        let hello: (UInt8, [UInt8])?
        do throws(SSIError) {
            hello = try receive(limit: Self.maxHelloPayload)
        } catch {
            throw SSIError("proc", "authentication failed: the peer does not have this cluster's key (\(error.message))")
        }
        guard let hello, hello.0 == 0, case let text = String(decoding: hello.1, as: UTF8.self),
              text.hasPrefix("hello "), let node = UInt32(text.dropFirst(6)) else {
            throw SSIError("proc", "authentication failed: no hello from the peer")
        }
        peerNode = node
    }

    /// Sends one message (payload at most maxPayload bytes: a larger one
    /// is an error for the caller to split or refuse, never a trap).
    public func send(_ type: UInt8, _ payload: [UInt8]) throws(SSIError) {
        try Wire.checkOutgoing(payload.count, limit: Self.maxPayload)
        let abytes = Int(crypto_secretstream_xchacha20poly1305_abytes())
        let plain = [type] + payload
        var cipher = [UInt8](repeating: 0, count: plain.count + abytes + 4)
        let length = UInt32(plain.count + abytes).bigEndian
        withUnsafeBytes(of: length) { for i in 0..<4 { cipher[i] = $0[i] } }
        try sendLock.withLock { _ throws(SSIError) in
            var clen: UInt64 = 0
            let rc = cipher.withUnsafeMutableBufferPointer { c in
                crypto_secretstream_xchacha20poly1305_push(&pushState, c.baseAddress! + 4, &clen, plain, UInt64(plain.count), nil, 0, 0)
            }
            guard rc == 0 else { throw SSIError("proc", "encryption failed") }
            try writeAll(cipher)
        }
    }

    /// The next message, or nil when the peer closed the connection
    /// between messages. Throws on a timeout, a broken connection or a
    /// message that fails authentication.
    public func receive() throws(SSIError) -> (UInt8, [UInt8])? { try receive(limit: Self.maxPayload) }

    /// The length of a frame's ciphertext from its 4-byte head, checked
    /// against `limit` (the largest payload) before anything is allocated.
    static func cipherLength(head: [UInt8], limit: Int) throws(SSIError) -> Int {
        let length = Wire.length(head)
        let abytes = Int(crypto_secretstream_xchacha20poly1305_abytes())
        guard length >= abytes + 1 else {
            throw SSIError("proc", "a message of \(length) bytes from the peer: shorter than its authentication tag (\(abytes + 1) bytes)",
                           hint: "the peer is not an ssi process agent of this version")
        }
        guard length - abytes - 1 <= limit else {
            throw SSIError("proc", "a message of \(length - abytes - 1) bytes from the peer: over the limit of \(limit) bytes",
                           hint: "the peer must split what it sends (or is not an ssi process agent)")
        }
        return length
    }

    func receive(limit: Int) throws(SSIError) -> (UInt8, [UInt8])? {
        try receiveLock.withLock { _ throws(SSIError) -> (UInt8, [UInt8])? in
            let head: [UInt8]
            do throws(SSIError) {
                head = try readExactly(4)
            } catch {
                if error.message == "eof" { return nil }
                throw error
            }
            let length = try Self.cipherLength(head: head, limit: limit)
            let abytes = Int(crypto_secretstream_xchacha20poly1305_abytes())
            let cipher = try readExactly(length)
            var plain = [UInt8](repeating: 0, count: length - abytes)
            var plen: UInt64 = 0
            var tag: UInt8 = 0
            guard crypto_secretstream_xchacha20poly1305_pull(&pullState, &plain, &plen, &tag, cipher, UInt64(length), nil, 0) == 0 else {
                throw SSIError("proc", "a message failed authentication (wrong cluster key, or altered on the way)")
            }
            return (plain[0], Array(plain[1..<Int(plen)]))
        }
    }

    /// Closes the connection (once).
    public func close() {
        let first = closed.withLock { c -> Bool in
            defer { c = true }
            return !c
        }
        if first { Glibc.close(fd) }
    }

    /// Wakes a thread blocked in receive() on this connection.
    public func shutdown() { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) }

    deinit { close() }

    private func writeAll(_ bytes: [UInt8]) throws(SSIError) {
        do throws(SystemCallError) { try sendAll(fd, bytes, name: "channel") } catch {
            throw SSIError("proc", error.errno == EAGAIN ? "the peer stopped reading (timed out)" : "send: \(errnoDescription(error.errno))")
        }
    }

    private func readExactly(_ count: Int) throws(SSIError) -> [UInt8] {
        let bytes: [UInt8]
        do throws(SystemCallError) { bytes = try SSICore.readExactly(fd, count, name: "channel") } catch {
            throw SSIError("proc", error.errno == EAGAIN ? "timed out waiting for the peer" : "recv: \(errnoDescription(error.errno))")
        }
        if bytes.isEmpty && count > 0 { throw SSIError("proc", "eof") }
        if bytes.count < count { throw SSIError("proc", "the peer closed the connection in the middle of a message") }
        return bytes
    }
}
