#if canImport(Glibc)
import Glibc
#endif
import CSSIShim
public import SSICore
import SSILinux

/// Message types on the agents' channels.
public enum Wire {
    public static let hello: UInt8 = 0
    /// A request or a reply: `Fields`.
    public static let fields: UInt8 = 1
    /// Bytes of a shipped stream or of an image file.
    public static let data: UInt8 = 2
    /// The end of a shipped stream's direction.
    public static let eof: UInt8 = 3
    /// "Nothing to read yet" for a pulled stream.
    public static let nodata: UInt8 = 4
    /// A write was done.
    public static let ack: UInt8 = 5

    /// The big-endian 32-bit length at the start of a frame (4 bytes).
    static func length(_ head: [UInt8]) -> Int {
        guard head.count >= 4 else { return 0 }
        return Int(UInt32(head[0]) << 24 | UInt32(head[1]) << 16 | UInt32(head[2]) << 8 | UInt32(head[3]))
    }

    /// A payload we are about to send: over the limit is the caller's
    /// error (split it or refuse), never a trap and never sent.
    static func checkOutgoing(_ count: Int, limit: Int) throws(SSIError) {
        guard count <= limit else {
            throw SSIError("proc", "a message of \(count) bytes is over the limit of \(limit) bytes",
                           hint: "this is a bug in ssi: the sender must split it")
        }
    }

    /// The payload length of a local frame (type byte included in the
    /// 4-byte length), checked before anything is allocated.
    static func localPayloadLength(head: [UInt8], limit: Int) throws(SSIError) -> Int {
        let length = length(head)
        guard length >= 1 else { throw SSIError("proc", "a message of length 0 (no type byte) on the local socket") }
        guard length - 1 <= limit else {
            throw SSIError("proc", "a message of \(length - 1) bytes on the local socket: over the limit of \(limit) bytes")
        }
        return length - 1
    }
}

/// Named values: lines "key=value" (newlines and backslashes escaped). A
/// key may repeat (argv, environment). The payload of every type-1
/// message on both doors (docs/PROTOCOLS.md 3.3); what the values mean is
/// the typed messages' business (`PeerRequest`, `LocalRequest`,
/// `RestoreStep`).
///
/// Version rule: every encoded message starts with the line `v=2`
/// (`version`), and `decode` refuses a message without it, or with
/// another, as `ProcMessageError.unversioned`/`.unsupportedVersion`
/// ("are both nodes running the same ssi?"). Both ends are the one `ssi`
/// binary and a cluster runs one version: nothing is translated.
public struct Fields: Sendable, Equatable, CustomStringConvertible {
    public var pairs: [(String, String)]

    /// The protocol version every message carries first.
    public static let version = 4
    static let versionLine: [UInt8] = Array("v=\(version)".utf8)

    public init(_ op: String, _ pairs: [(String, String)] = []) { self.pairs = [("op", op)] + pairs }

    /// Lines are split on the newline byte, not on Characters: "\r\n" is
    /// one Character, so a value ending in "\r" would otherwise swallow
    /// the next line (a `cwd` of "/tmp\r" hid the `uid` after it).
    /// No version line and no checks: `decode` is the receivers' door.
    init(lines bytes: ArraySlice<UInt8>) {
        pairs = bytes.split(separator: 10).map { line in
            guard let eq = line.firstIndex(of: UInt8(ascii: "=")) else { return (String(decoding: line, as: UTF8.self), "") }
            return (String(decoding: line[..<eq], as: UTF8.self), Self.unescape(line[(eq + 1)...]))
        }
    }

    /// A received payload: at most `maxBytes` (checked before anything is
    /// copied), the version line first, then an `op` line.
    public static func decode(_ bytes: [UInt8]) throws(ProcMessageError) -> Fields {
        guard bytes.count <= SecureChannel.maxPayload else { throw .tooLong(bytes: bytes.count) }
        let lf = bytes.firstIndex(of: 10) ?? bytes.endIndex
        let first = bytes[..<lf]
        guard first.starts(with: Array("v=".utf8)) else { throw .unversioned }
        guard first.elementsEqual(versionLine) else {
            throw .unsupportedVersion(String(decoding: first.dropFirst(2).prefix(24), as: UTF8.self))
        }
        let f = Fields(lines: bytes[min(lf + 1, bytes.endIndex)...])
        guard f.pairs.first?.0 == "op" else { throw .missing(op: "", field: "op") }
        return f
    }

    public static func == (a: Fields, b: Fields) -> Bool {
        a.pairs.map { $0.0 + "=" + $0.1 } == b.pairs.map { $0.0 + "=" + $0.1 }
    }

    public var op: String { self["op"] ?? "" }
    public subscript(key: String) -> String? { pairs.first { $0.0 == key }?.1 }
    public func all(_ key: String) -> [String] { pairs.filter { $0.0 == key }.map(\.1) }
    public func int(_ key: String) -> Int? { self[key].flatMap { Int($0) } }
    /// A number that must fit `T` exactly: a pid, uid or signal from a
    /// peer. Out of range is nil (a refusal), never wrapped: uid=4294967296
    /// wrapped to 0 was root.
    public func number<T: FixedWidthInteger>(_ key: String, as: T.Type = T.self) -> T? { self[key].flatMap { T($0) } }
    public mutating func add(_ key: String, _ value: String) { pairs.append((key, value)) }
    public mutating func add(_ key: String, _ value: Int) { pairs.append((key, String(value))) }

    /// The version line, then the pairs.
    public var encoded: [UInt8] {
        Self.versionLine + Array(pairs.map { "\n\($0.0)=\(Self.escape($0.1))" }.joined().utf8)
    }
    public var description: String { pairs.map { "\($0.0)=\($0.1)" }.joined(separator: " ") }

    /// By scalar: every newline byte is escaped, whatever Character it
    /// is part of.
    static func escape(_ s: String) -> String { BackslashEscaping.lines.escape(s) }
    static func unescape(_ bytes: ArraySlice<UInt8>) -> String { BackslashEscaping.lines.unescape(bytes) }
}

/// What both kinds of channel do: ordered messages.
public protocol MessageChannel: AnyObject, Sendable {
    func send(_ type: UInt8, _ payload: [UInt8]) throws(SSIError)
    func receive() throws(SSIError) -> (UInt8, [UInt8])?
    func close()
}

extension SecureChannel: MessageChannel {}

extension MessageChannel {
    public func send(_ f: Fields) throws(SSIError) { try send(Wire.fields, f.encoded) }

    /// The next message, which must be fields of this version; nil at
    /// the end.
    public func receiveFields() throws(SSIError) -> Fields? {
        guard let (type, payload) = try receive() else { return nil }
        guard type == Wire.fields else { throw SSIError("proc", "unexpected message type \(type) from the peer") }
        do throws(ProcMessageError) { return try Fields.decode(payload) } catch { throw error.asSSIError }
    }

    /// Fields that must come; a closed connection is an error naming `what`.
    public func expectFields(_ what: String) throws(SSIError) -> Fields {
        guard let f = try receiveFields() else { throw SSIError("proc", "the connection closed while waiting for \(what)") }
        return f
    }
}

/// The local door's channel: a unix stream socket between a command
/// (ssi-migrate, onnode, where_pid) and its node's agent. Same framing as
/// the secure channel without the encryption (the socket never leaves the
/// node), plus descriptor passing: onnode hands its stdin, stdout and
/// stderr to the agent, which becomes their home.
public final class LocalChannel: MessageChannel, @unchecked Sendable {
    public let fd: Int32
    private let closedFlag = Locked(false)
    public init(fd: Int32) { self.fd = fd }

    public static func connect(path: String) throws(SSIError) -> LocalChannel {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { let lastErrno = errno; throw SSIError("proc", "socket: \(errnoDescription(lastErrno))") }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { p in for (i, b) in path.utf8.prefix(100).enumerated() { p[i] = b } }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if rc != 0 {
            let e = errno
            Glibc.close(fd)
            throw SSIError("proc", "no process agent on this node (\(path): \(errnoDescription(e)))",
                           hint: e == ENOENT || e == ECONNREFUSED ? "the node did not boot with ssi-init, or its agent stopped; see /run/ssi/agent.log" : nil)
        }
        return LocalChannel(fd: fd)
    }

    public func send(_ type: UInt8, _ payload: [UInt8]) throws(SSIError) { try send(type, payload, fds: []) }

    /// A message with descriptors attached (at most 16).
    public func send(_ type: UInt8, _ payload: [UInt8], fds: [Int32]) throws(SSIError) {
        try Wire.checkOutgoing(payload.count, limit: SecureChannel.maxPayload)
        var frame = [UInt8](repeating: 0, count: 5)
        let n = UInt32(payload.count + 1).bigEndian
        withUnsafeBytes(of: n) { for i in 0..<4 { frame[i] = $0[i] } }
        frame[4] = type
        frame += payload
        var done = 0
        if !fds.isEmpty {
            let sent = frame.withUnsafeBytes { ssi_send_fds(fd, fds, Int32(fds.count), $0.baseAddress, frame.count) }
            guard sent > 0 else { let lastErrno = errno; throw SSIError("proc", "sendmsg: \(errnoDescription(lastErrno))") }
            done = sent
        }
        do throws(SystemCallError) { try sendAll(fd, frame[done...], name: "frame") } catch { throw SSIError("proc", "send: \(errnoDescription(error.errno))") }
    }

    public func receive() throws(SSIError) -> (UInt8, [UInt8])? {
        let (m, _) = try receiveWithFDs()
        return m
    }

    /// A message and the descriptors that came with it. A payload over
    /// `limit` is refused before it is allocated; descriptors that came
    /// with a refused or broken message are closed, never leaked.
    public func receiveWithFDs(limit: Int = SecureChannel.maxPayload) throws(SSIError) -> ((UInt8, [UInt8])?, [Int32]) {
        var head = [UInt8](repeating: 0, count: 5)
        var fds = [Int32](repeating: -1, count: 16)
        var nfds: Int32 = 0
        let got = head.withUnsafeMutableBytes { ssi_recv_fds(fd, &fds, 16, &nfds, $0.baseAddress, 5) }
        if got < 0 {
            let e = errno
            throw SSIError("proc", e == EAGAIN ? "timed out waiting for a request" : "recvmsg: \(errnoDescription(e))")
        }
        let passed = Array(fds.prefix(Int(max(0, min(nfds, 16)))))
        if got == 0 { return (nil, passed) }
        do throws(SSIError) {
            let cut = SSIError("proc", "the connection closed (or timed out) in the middle of a message")
            if got < 5 {
                guard let rest = try? readExactly(fd, 5 - got, name: "local request"), rest.count == 5 - got else { throw cut }
                head.replaceSubrange(got..<5, with: rest)
            }
            let length = try Wire.localPayloadLength(head: Array(head[0..<4]), limit: limit)
            guard let payload = try? readExactly(fd, length, name: "local request"), payload.count == length else { throw cut }
            return ((head[4], payload), passed)
        } catch {
            passed.forEach { Glibc.close($0) }
            throw error
        }
    }

    /// Receive and send timeouts for what follows (0: none): a local
    /// client gets a bounded time to send its request.
    public func setTimeouts(seconds: Int) {
        var tv = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    public func close() {
        let first = closedFlag.withLock { c -> Bool in defer { c = true }; return !c }
        if first { Glibc.close(fd) }
    }
    deinit { close() }
}
