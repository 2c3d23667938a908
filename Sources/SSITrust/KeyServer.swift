#if canImport(Glibc)
import Glibc
#endif
import CSodium
public import SSICore
public import SSIConfig

/// What the init node's key server decides about a request whose proof
/// was valid (the node holds the private half of the key it offered).
/// Pure: the unit tests give it every case.
public enum KeyPolicy {
    public enum Decision: Equatable, Sendable {
        /// An enrolled node at its own address: give it the keys.
        case deliver(name: String)
        /// Refuse; `pending` when the administrator can enroll the
        /// offered identity (recorded for `ssi cluster node enroll`).
        case refuse(KeyExchange.Refusal, String, pending: String?)
    }

    public static func decide(_ hello: KeyExchange.Hello, peer: String, config: ClusterConfig,
                              known: KnownIdentities) -> Decision {
        guard let node = config.node(number: Int(hello.node)) else {
            return .refuse(.notANode, "node \(hello.node) is not in \(config.file)", pending: nil)
        }
        guard node.address.description == peer else {
            return .refuse(.notANode, "\(node.name) is \(node.address); the request came from \(peer)", pending: nil)
        }
        let offered = hello.identity.fingerprint
        guard let enrolled = known.identity(of: node.name) else {
            return .refuse(.unknownIdentity,
                           "\(node.name) has no enrolled identity; it offers \(offered): compare it with the node's console, "
                           + "then run `ssi cluster node enroll \(node.name) --fingerprint \(offered)` on the init node",
                           pending: node.name)
        }
        guard enrolled == hello.identity else {
            return .refuse(.identityChanged,
                           "\(node.name)'s identity changed: it offers \(offered), \(enrolled.fingerprint) is enrolled; "
                           + "if the node's board or key medium was replaced, run `ssi cluster node enroll \(node.name) --replace "
                           + "--fingerprint \(offered)` on the init node",
                           pending: node.name)
        }
        return .deliver(name: node.name)
    }
}

/// The init node's key server: gives the cluster key to enrolled nodes
/// that prove who they are, sealed to their key and signed by the init
/// node's. Requests are served one at a time, each within 10 s however
/// the peer paces its bytes (a boot asks once; a stranger holding a
/// connection delays the next by at most that). Every answer is one line on stdout (the journal), with the
/// requester's address and MAC.
public struct KeyServer: Sendable {
    public var configPath: String
    public var pendingDirectory = PendingEnrollment.directory
    public var arpTable = "/proc/net/arp"

    /// The most one request may take, start to end.
    public static let defaultExchangeSeconds = 10.0
    public var exchangeSeconds = KeyServer.defaultExchangeSeconds

    public init(configPath: String) { self.configPath = configPath }

    /// What the server holds: re-read for every request, so that an
    /// enrollment or a reload takes effect at once.
    struct State {
        var config: ClusterConfig
        var me: NodeKey
        var authkey: [UInt8]
        var known: KnownIdentities
    }

    func load() throws(SSIError) -> State {
        let config = try ClusterConfig.load(path: configPath)
        guard case .key(let me) = try Self.initNodeKey(config) else {
            throw SSIError("keys", "\(config.identity.key) is blank: the init node needs its own key",
                           hint: "ssi cluster node key new -o \(config.identity.key), then ssi cluster node enroll NAME --key \(config.identity.key)")
        }
        let authkey = try AuthKey.readConfiguredOrRunning(config.cluster.authkey).key
        return State(config: config, me: me, authkey: authkey, known: try KnownIdentities.load(config.identity.known))
    }

    /// The init node's own key: `[identity] key` when that file exists,
    /// else the init node's own `identity` line ("tpm" or a medium), so
    /// that an init node whose identity is its TPM keeps no key file on
    /// its disk (DESIGN-NOTES.md, "Keys at rest").
    static func initNodeKey(_ config: ClusterConfig) throws(SSIError) -> NodeKeyFile.Contents {
        if let server = config.cfsServer, let named = server.identity, access(config.identity.key, F_OK) != 0 {
            guard let source = KeySource(named) else {
                throw SSIError("keys", "\(server.name)'s identity \"\(printable(named))\" is neither \"tpm\" nor an absolute path")
            }
            return try NodeKeyFile.load(source)
        }
        return try NodeKeyFile.read(config.identity.key)
    }

    /// Checks that the server can serve (its key, the cluster key, the
    /// configuration), then serves for ever.
    public func run(listenAddress: String?) throws(SSIError) {
        let state = try load()
        let address = listenAddress ?? state.config.cfsServer?.address.description ?? "0.0.0.0"
        let listener = try TCP.listen(address, port: KeyExchange.port)
        say("ssi-keys: serving the cluster key on \(address):\(KeyExchange.port) to \(state.known.entries.count) enrolled identities; "
              + "this node is \(state.me.identity.fingerprint)")
        while true {
            let conn: (fd: Int32, peer: String)
            do { conn = try TCP.accept(listener) } catch {
                // Out of descriptors: back off instead of spinning.
                usleep(100_000)
                continue
            }
            TCP.setTimeouts(conn.fd, seconds: 10)
            let line = serve(conn.fd, peer: conn.peer)
            close(conn.fd)
            say("ssi-keys: " + line)
        }
    }

    /// One request, start to end; the line to log.
    public func serve(_ fd: Int32, peer: String) -> String {
        _ = sodium_init()
        // The whole exchange, however the peer paces its bytes.
        let deadline = TCP.now() + exchangeSeconds
        let who = "\(peer) (\(mac(of: peer) ?? "MAC unknown"))"
        let hello: KeyExchange.Hello
        do {
            hello = try KeyExchange.Hello(decoding: try TCP.receive(fd, KeyExchange.Hello.size, what: "request", deadline: deadline))
        } catch {
            return "\(who): \(error.message)"
        }
        var nonce = [UInt8](repeating: 0, count: 32)
        randombytes_buf(&nonce, 32)
        let challenge = KeyExchange.Challenge(nonce: nonce)
        let proof: KeyExchange.Proof
        do {
            try TCP.send(fd, challenge.bytes)
            proof = try KeyExchange.Proof(decoding: try TCP.receive(fd, KeyExchange.Proof.size, what: "proof", deadline: deadline))
        } catch {
            return "node \(hello.node) from \(who): \(error.message)"
        }
        guard hello.identity.verify(signature: proof.signature, of: KeyExchange.proofMessage(hello, challenge)) else {
            answer(fd, .refused(.badProof, "the signature does not match the key offered"))
            return "refused node \(hello.node) from \(who): bad proof for \(hello.identity.fingerprint)"
        }
        let state: State
        do { state = try load() } catch {
            answer(fd, .refused(.serverError, "the init node cannot serve keys now: \(error.message)"))
            return "node \(hello.node) from \(who): cannot serve: \(error.description)"
        }
        switch KeyPolicy.decide(hello, peer: peer, config: state.config, known: state.known) {
        case .refuse(let why, let text, let pending):
            if let pending { recordPending(pending, hello.identity, peer: peer, mac: mac(of: peer)) }
            answer(fd, .refused(why, text))
            return "refused node \(hello.node) from \(who): \(why.summary): \(text)"
        case .deliver(let name):
            let bundle = KeyBundle(files: [.init(path: "/etc/corosync/authkey", mode: 0o400, bytes: state.authkey)])
            guard let sealed = hello.identity.seal(bundle.bytes) else {
                answer(fd, .refused(.badProof, "the offered key is not usable for sealing"))
                return "refused \(name) from \(who): its key is not a valid curve point"
            }
            let signature = state.me.sign(KeyExchange.answerMessage(clientNonce: hello.nonce, sealed: sealed))
            answer(fd, .keys(sealed: sealed, signature: signature))
            return "gave \(name) from \(who) the cluster key (identity \(hello.identity.fingerprint))"
        }
    }

    /// One line on stdout, unbuffered (the journal reads a pipe).
    private func say(_ line: String) { writeAll(1, line + "\n") }

    private func answer(_ fd: Int32, _ a: KeyExchange.Answer) {
        try? TCP.send(fd, a.bytes)
    }

    /// The MAC the kernel's ARP table holds for `address`.
    func mac(of address: String) -> String? {
        guard let text = try? ConfigFiles.readText(arpTable, what: "ARP table") else { return nil }
        for line in text.split(separator: "\n").dropFirst() {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            if f.count >= 4, f[0] == address { return String(f[3]) }
        }
        return nil
    }

    /// For `ssi cluster node enroll`: the identity a node offered, root's
    /// alone (0700 folder, 0600 file), replaced by a newer offer.
    func recordPending(_ name: String, _ identity: PublicIdentity, peer: String, mac: String?) {
        mkdir(pendingDirectory, 0o700)
        let text = "\(identity) \(peer) \(mac ?? "-") \(time(nil))\n"
        try? writeFileAtomically(pendingDirectory + "/" + name, Array(text.utf8), mode: 0o600, replace: true)
    }
}

/// A pending enrollment, as the key server recorded it.
public struct PendingEnrollment: Equatable, Sendable {
    public var identity: PublicIdentity
    public var address: String
    public var mac: String
    public var time: Int

    public static func parse(_ text: String) -> PendingEnrollment? {
        let f = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard f.count == 4, let id = PublicIdentity(f[0]), let t = Int(f[3]) else { return nil }
        return PendingEnrollment(identity: id, address: String(f[1]), mac: String(f[2]), time: t)
    }

    public static let directory = "/run/ssi/enroll"

    public static func load(directory: String = PendingEnrollment.directory, name: String) -> PendingEnrollment? {
        guard KnownIdentities.validName(name), let text = try? ConfigFiles.readText(directory + "/" + name, what: "pending enrollment") else { return nil }
        return parse(text)
    }
}

/// The node side: asks the init node for the keys and checks its answer.
public enum KeyClient {
    public enum Outcome: Equatable, Sendable {
        case delivered(KeyBundle)
        case refused(KeyExchange.Refusal, String)
    }

    public static func request(server: String, port: UInt16 = KeyExchange.port, node: UInt32, key: NodeKey,
                               serverIdentity: PublicIdentity, seconds: Int = 10) throws(SSIError) -> Outcome {
        let fd = try TCP.connect(server, port: port, seconds: seconds)
        defer { close(fd) }
        return try exchange(fd, server: server, node: node, key: key, serverIdentity: serverIdentity,
                            deadline: TCP.now() + Double(seconds) + KeyServer.defaultExchangeSeconds)
    }

    /// The exchange on a connected socket.
    public static func exchange(_ fd: Int32, server: String, node: UInt32, key: NodeKey, serverIdentity: PublicIdentity,
                                deadline given: Double? = nil) throws(SSIError) -> Outcome {
        let deadline = given ?? TCP.now() + 2 * KeyServer.defaultExchangeSeconds
        var nonce = [UInt8](repeating: 0, count: 32)
        _ = sodium_init()
        randombytes_buf(&nonce, 32)
        let hello = KeyExchange.Hello(node: node, identity: key.identity, nonce: nonce)
        try TCP.send(fd, hello.bytes)
        let challenge = try KeyExchange.Challenge(decoding: try TCP.receive(fd, KeyExchange.Challenge.size, what: "challenge", deadline: deadline))
        try TCP.send(fd, KeyExchange.Proof(signature: key.sign(KeyExchange.proofMessage(hello, challenge))).bytes)
        let header = try KeyExchange.Answer.bodyLength(header: try TCP.receive(fd, KeyExchange.Answer.headerSize, what: "answer", deadline: deadline))
        let body = try TCP.receive(fd, header.length, what: "answer", deadline: deadline)
        guard body.count == header.length else { throw SSIError("keys", "the key server's answer is cut short") }
        switch try KeyExchange.Answer(status: header.status, body: body) {
        case .refused(let why, let text):
            return .refused(why, text)
        case .keys(let sealed, let signature):
            guard serverIdentity.verify(signature: signature, of: KeyExchange.answerMessage(clientNonce: nonce, sealed: sealed)) else {
                throw SSIError("keys", "the answer from \(server) is not signed by the init node's enrolled identity \(serverIdentity.fingerprint)",
                               hint: "another machine may be answering for the init node; check the cluster network")
            }
            guard let opened = key.open(sealed: sealed) else {
                throw SSIError("keys", "the keys from \(server) are not sealed to this node's key")
            }
            return .delivered(try KeyBundle(decoding: opened))
        }
    }
}
