#if canImport(Glibc)
import Glibc
#endif
import CSSIShim
public import SSICore
import SSILinux
import SSIMembership
import SSIConfig

/// The process agent (`ssi cluster proc-agent`): runs on every node,
/// started by ssi-init before the hand-off beside the membership agent,
/// and does process migration, fd shipping, onnode, where_pid and the
/// cluster's ps. It listens on TCP port 7791 of the node's cluster
/// address only, and every connection is a SecureChannel (the cluster
/// key). Peers are the members in the membership agent's view: the
/// cluster's CPG membership, not a list of its own. Commands on the node
/// reach it through /run/ssi/proc.sock (any user; the kernel tells the
/// agent who is asking).
public final class ProcAgent: @unchecked Sendable {
    public struct Options: Sendable {
        public var stateDirectory = ClusterView.defaultDirectory
        public var port: UInt16 = 7791
        public var authkeyPath = "/etc/corosync/authkey"
        /// The system's root, where criu and the users' commands live.
        public var systemRoot = "/proc/1/root"
        public init() {}
    }

    public static let socketName = "proc.sock"
    let options: Options
    let log: @Sendable (String) -> Void
    var key: [UInt8] = []
    var localNode: UInt32 = 0
    /// This node's cluster address: the agent listens and connects from it.
    var localAddress: String?
    let homes = HomeRegistry()
    let standIns = StandInRegistry()
    /// Restores this node took part in, by move id (see `settle`).
    let moves = MoveRecords()
    let reaper = Reaper()
    /// Processes that moved away and are about to be killed here: not
    /// "here" for where_pid, and their death is not an exit.
    let departed = Locked<Set<pid_t>>([])
    /// Where to report a process's exit: onnode sessions, by pid.
    let exitReports = Locked<[pid_t: (node: UInt32, session: String)]>([:])
    /// onnode sessions waiting at home for their command's exit.
    let sessions = Locked<[String: LocalChannel]>([:])
    let migrating = Locked<Set<pid_t>>([])
    /// Deputies here: originals of processes that moved away (Deputies.swift).
    let deputies = Locked<[pid_t: DeputyRecord]>([:])
    /// Restored processes here whose deputy is elsewhere: the home's node.
    let deputyHomes = Locked<[pid_t: UInt32]>([:])
    /// Trees frozen in a cgroup of their own for a move, by move ID.
    let freezers = Locked<[String: TreeFreezer]>([:])
    /// Said once: the first move that could not freeze in a cgroup.
    let freezerUnavailableSaid = Locked<Bool>(false)
    /// Stop signals sent as SIGSTOP (signalHere), by pid: reported as sent.
    let convertedStops = Locked<[pid_t: Int32]>([:])
    let deputyReports = Locked<[(pid_t, UInt32, DeputyEvent, UInt64)]>([])
    /// The last deputy report's number. It starts at the agent's start
    /// in microseconds of the real-time clock, so that a restarted
    /// agent's numbers follow its predecessor's (DeputyRecord.lastReport).
    let deputyReportNumber = Locked<UInt64>(Process.wallClockMicroseconds())
    let deputyReportsReady = Wakeup()
    /// The leveler's recent placements (Leveler.pendingSeconds) and moves
    /// (Leveler.cooldownSeconds).
    let placements = Locked<[(node: UInt32, at: Double)]>([])
    let levelMoves = Locked<[pid_t: Double]>([:])
    let lastLevelMove = Locked(0.0)
    let modulesLoaded = Locked(false)

    /// The kernel modules CRIU needs (socket diagnostics for its socket
    /// dumps, nf_tables for its kernel feature checks), loaded once, from
    /// the system's module directory. A module that is missing is left
    /// for criu to complain about, with its own words.
    static let criuModules = ["unix_diag", "inet_diag", "tcp_diag", "udp_diag", "raw_diag", "netlink_diag", "af_packet_diag",
                              "nf_tables", "tun", "veth"]

    func loadCRIUModules() {
        guard modulesLoaded.withLock({ l -> Bool in defer { l = true }; return !l }) else { return }
        let ctx: ModuleLoader
        do {
            // The system's depmod text indexes, no modprobe.d: the same
            // loader as ssi-init's (no libkmod in the daemons' root).
            ctx = try ModuleLoader(directory: options.systemRoot + "/lib/modules/" + Process.kernelRelease(),
                                   commandLine: KernelCommandLine(""),
                                   sysModule: options.systemRoot + "/sys/module")
        } catch {
            // No module directory: criu will say what it lacks.
            trace("cannot load the modules criu needs: \(error.description)")
            return
        }
        for m in Self.criuModules {
            do { _ = try ctx.insertIfNeeded(m) } catch { trace("module \(m): \(error.description)") }
        }
    }

    public init(options: Options, log: @escaping @Sendable (String) -> Void) {
        self.options = options
        self.log = log
    }

    /// The log, opened on first use and kept: a line that says the agent
    /// ran out of descriptors cannot open a file to say it in.
    private let traceFD = Locked<Int32>(-1)

    func trace(_ line: String) {
        traceFD.withLock { fd in
            if fd < 0 { fd = open(options.stateDirectory + "/proc-agent.log", O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600) }
            guard fd >= 0 else { return }
            writeAll(fd, "\(Log.uptimeString()) \(line)\n")
        }
    }

    // MARK: peers

    /// How long a peer must stay out of the membership before what
    /// depends on it (a deputy, a move's rounds) is given up. A membership
    /// that re-forms around a node stalled for a few seconds (a busy host,
    /// seen as "left" and "joined" in one change) lists it as not up for
    /// a moment; only a node still gone after this is taken for dead.
    static let departureGraceSeconds: Double = 10

    /// Whether `node` has been out of the membership for
    /// `departureGraceSeconds`: `downSince` is the caller's record of when
    /// it was first seen out (nil while it is up).
    func peerDeparted(_ node: UInt32, downSince: inout Double?) -> Bool {
        guard peers()[node]?.up != true else { downSince = nil; return false }
        let now = Process.now()
        if downSince == nil { downSince = now }
        return now - (downSince ?? now) >= Self.departureGraceSeconds
    }

    /// The members and their cluster addresses, from the membership view.
    func peers() -> [UInt32: (name: String, address: String, up: Bool)] {
        guard let view = try? ClusterView.load(directory: options.stateDirectory) else { return [:] }
        var out: [UInt32: (name: String, address: String, up: Bool)] = [:]
        for n in view.nodes { out[n.number] = (n.name, n.address, n.state == .up) }
        return out
    }

    func connect(_ node: UInt32, timeoutSeconds: Int = 10) throws(SSIError) -> SecureChannel {
        guard let p = peers()[node] else {
            throw SSIError("proc", "node \(node) is not in the cluster", hint: "see `ssi cluster status`")
        }
        guard p.up else { throw SSIError("proc", "node \(node) (\(p.name)) is not up", hint: "see `ssi cluster status`") }
        return try SecureChannel.connect(address: p.address, port: options.port, key: key, localNode: localNode,
                                         from: localAddress, timeoutSeconds: timeoutSeconds)
    }

    // MARK: run

    public func run() throws(SSIError) {
        // A supervisor stays behind and restarts the agent if it dies
        // (AgentSupervisor). What the dead agent relayed is closed, not
        // resumed: its descriptors close with it, so a migrated process
        // whose stand-ins were here sees end of file and EPIPE, and the
        // stand-ins of its home channels on other nodes do the same when
        // their connection breaks (StandIn); home channels whose stand-in
        // node's agent died are released after `HomeChannel.reattachSeconds`.
        AgentSupervisor.superviseSelf(name: "process agent", logPath: options.stateDirectory + "/proc-agent.log", log: log)
        // Whatever started us may have blocked signals (SIGTERM must stop
        // the agent); a closed peer must be an error, not SIGPIPE.
        var none = sigset_t()
        sigemptyset(&none)
        sigprocmask(SIG_SETMASK, &none, nil)
        signal(SIGPIPE, SIG_IGN)
        try LazyLibrary.sodium.load()
        key = SecureChannel.clusterKey(authkey: try AuthKey.read(path: options.authkeyPath))
        var view: ClusterView?
        for _ in 0..<300 {
            if let v = try? ClusterView.load(directory: options.stateDirectory), v.localNode != 0,
               v.nodes.contains(where: { $0.number == v.localNode && !$0.address.isEmpty }) {
                view = v
                break
            }
            Process.sleep(milliseconds: 200)
        }
        guard let view, let me = view.nodes.first(where: { $0.number == view.localNode }) else {
            throw SSIError("proc", "no membership view in \(options.stateDirectory) after 60 s",
                           hint: "the membership agent (ssi cluster agent) must run first")
        }
        localNode = view.localNode
        localAddress = me.address
        homes.log = { [weak self] in self?.trace($0) }
        // An onnode session whose channels were all abandoned (the agent
        // that ran its command died, and with it the exit report): its
        // onnode hears so, instead of waiting forever.
        homes.onAbandoned = { [weak self] id in
            guard let self, let dot = id.lastIndex(of: ".") else { return }
            let session = String(id[..<dot])
            guard !self.homes.contains(prefix: session + ".") else { return }
            self.sessions.withLock { m in
                if let client = m.removeValue(forKey: session) {
                    try? client.send(LocalReply.exit(status: 255, how: "its node's process agent stopped while it ran; its exit status is lost").encode())
                }
            }
        }
        reaper.onJobControl = { [weak self] pid, sig in self?.jobControl(pid, stopped: sig) }
        reaper.start()
        startDeputyReporter()
        startLeveler()
        let listener = try listenTCP(address: me.address)
        let local = try listenLocal()
        log("proc-agent: node \(localNode) listening on \(me.address):\(options.port)")
        trace("listening on \(me.address):\(options.port)")
        startThread { [self] in
            acceptLoop(listener, gate: remoteGate, what: "cluster") { [self] fd in
                // Only the nodes' cluster addresses may talk to the agent:
                // with [tunnel] that is what WireGuard authenticates, and a
                // machine reaching this address over the plain network is
                // turned away before it can cost a handshake.
                let peer = SocketAddress.peer(fd)?.description ?? "?"
                // Unreadable view (out of descriptors, say): refused, and
                // the log says why, not that the peer is a stranger.
                let why: String?
                do throws(SSIError) {
                    why = ProcAgent.strangerReason(peer: peer,
                                                   addresses: try ClusterView.load(directory: options.stateDirectory).nodes.map(\.address))
                } catch {
                    why = "the cluster view, which names the nodes, cannot be read: \(error.message)"
                }
                if let why {
                    remoteGate.leave(fd)
                    close(fd)
                    trace("refused a connection from \(peer): \(why)")
                    return
                }
                let ch: SecureChannel
                do throws(SSIError) {
                    ch = try SecureChannel.accept(fd: fd, key: key, localNode: localNode, closeOnFailure: false)
                } catch {
                    remoteGate.leave(fd)
                    close(fd)
                    trace("refused a connection from \(peer): \(error.description)")
                    return
                }
                // Authenticated: it no longer counts against strangers.
                remoteGate.leave(fd)
                serveRemote(ch)
            }
        }
        acceptLoop(local, gate: localGate, what: "local") { [self] fd in serveLocal(LocalChannel(fd: fd)) }
    }

    /// Why a connection from `peer` is not even heard, or nil when it
    /// comes from one of the nodes' cluster `addresses`.
    static func strangerReason(peer: String, addresses: [String]) -> String? {
        addresses.contains(peer) ? nil : "not a node's cluster address (\(addresses.sorted().joined(separator: ", ")))"
    }

    /// Connections accepted and not yet authenticated (a cluster peer's
    /// handshake, a local client's first request), at most: each one
    /// holds a thread, so a flood of idle connections must not exhaust
    /// threads or memory. A newcomer evicts the oldest (ConnectionGate).
    static let maxPendingConnections = 32
    /// Seconds a connection may take to authenticate (or a local client
    /// to send its request) before it is dropped.
    static let pendingTimeoutSeconds = 10
    let remoteGate = ConnectionGate(limit: ProcAgent.maxPendingConnections)
    let localGate = ConnectionGate(limit: ProcAgent.maxPendingConnections)

    /// Accepts forever. Out of descriptors (EMFILE/ENFILE) the pending
    /// connection stays in the backlog and accept would fail again at
    /// once: back off 100 ms instead of spinning a core. Each accepted
    /// connection runs `serve` in its own thread, which must call
    /// `gate.leave()` once the connection is authenticated or gone.
    func acceptLoop(_ listener: Int32, gate: ConnectionGate, what: String, serve: @escaping @Sendable (Int32) -> Void) {
        var lastFullReport = 0.0
        while true {
            let fd = ssi_accept(listener)
            if fd < 0 {
                let e = errno
                if e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM {
                    if Process.now() - lastFullReport > 10 {
                        lastFullReport = Process.now()
                        trace("accepting \(what) connections: \(errnoDescription(e)); backing off")
                    }
                    Process.sleep(milliseconds: 100)
                }
                continue
            }
            if gate.enter(fd) > 0, let n = gate.evictionReport() {
                trace("dropped \(n) idle \(what) connections: more than \(gate.limit) were waiting to authenticate")
            }
            // Bounded time to authenticate or to send the request.
            var tv = timeval(tv_sec: Self.pendingTimeoutSeconds, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            startThread { serve(fd) }
        }
    }

    private func listenTCP(address: String) throws(SSIError) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var on: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, 4)
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = options.port.bigEndian
        inet_pton(AF_INET, address, &sin.sin_addr)
        let rc = withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0, listen(fd, 64) == 0 else {
            let lastErrno = errno
            throw SSIError("proc", "listening on \(address):\(options.port): \(errnoDescription(lastErrno))")
        }
        return fd
    }

    private func listenLocal() throws(SSIError) -> Int32 {
        let path = options.stateDirectory + "/" + Self.socketName
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { p in for (i, b) in path.utf8.prefix(100).enumerated() { p[i] = b } }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0, listen(fd, 64) == 0 else {
            let lastErrno = errno
            throw SSIError("proc", "listening on \(path): \(errnoDescription(lastErrno))")
        }
        // Any user may ask: the agent checks who asks (SO_PEERCRED).
        chmod(path, 0o666)
        return fd
    }

    // MARK: requests from other agents

    func serveRemote(_ ch: SecureChannel) {
        defer { ch.close() }
        // The first message: fields of this version, decoded once here.
        // Any other type ends the connection without a word.
        guard let (type, payload) = try? ch.receive(), type == Wire.fields else { return }
        let request: PeerRequest
        do throws(ProcMessageError) {
            request = try PeerRequest.decode(try Fields.decode(payload), from: ch.peerNode)
        } catch {
            trace("a request from node \(ch.peerNode) refused: \(error.description)")
            let hint = error.hint.map { "; " + $0 } ?? ""
            try? ch.send(PeerReply.error(error.description + hint).encode())
            return
        }
        do throws(SSIError) {
            switch request {
            case .attach(let channel, let direction):
                guard let home = homes.get(channel) else {
                    try ch.send(PeerReply.error("no channel \(channel) on node \(localNode)").encode())
                    return
                }
                home.serve(direction: direction.rawValue, on: ch)
            case .where(let pid):
                try ch.send(whereReply(pid: pid).encode())
            case .ps:
                // One or more "ps" messages, then "end".
                for part in psReply() { try ch.send(part) }
                try ch.send(PeerReply.end.encode())
            case .run(let run):
                try runHere(run, peer: ch.peerNode, on: ch)
            case .restore(let restore):
                try restoreHere(restore, from: ch)
            case .precopy(let id):
                try precopyHere(id: id, from: ch)
            case .settle(let id):
                try ch.send(moves.settle(id).encode())
            case .migrate(let pid, let node, let tree, let uid, let throughRoot, let precopy):
                // Forwarded by the agent where the command was typed, with
                // the caller's uid as its own agent took it from the kernel.
                try migrate(pid: pid, to: node, tree: tree, uid: uid, throughRoot: throughRoot, precopy: precopy, reply: ch)
            case .exited(let session, let status, let how):
                // Under the lock: the session's reader thread closes the
                // client's connection under it when onnode goes.
                sessions.withLock { m in
                    if let client = m.removeValue(forKey: session) {
                        try? client.send(LocalReply.exit(status: status, how: how).encode())
                    }
                }
                try ch.send(PeerReply.ok.encode())
            case .deputy(let pid, let event, let seq):
                if let problem = deputyEvent(pid, event, seq: seq, from: ch.peerNode) {
                    try ch.send(PeerReply.error(problem).encode())
                } else {
                    try ch.send(PeerReply.ok.encode())
                }
            case .kill(let pid, let sig, let uid):
                // A signal from another node: onnode's, a deputy's, ssi kill's.
                if let problem = signalHere(pid, sig, uid: uid) {
                    try ch.send(PeerReply.error(problem).encode())
                } else {
                    try ch.send(PeerReply.ok.encode())
                }
            }
        } catch {
            trace("\(request.encode().op) from node \(ch.peerNode): \(error.description)")
            try? ch.send(PeerReply.error(error.message).encode())
        }
    }

    // MARK: requests from this node's commands

    func serveLocal(_ ch: LocalChannel) {
        // Who asks, from the kernel only (never from the request); a
        // caller it cannot name is refused, not served as root.
        let caller: Caller
        do throws(SSIError) { caller = try Caller(peerOf: ch.fd) } catch {
            trace(error.description)
            try? ch.send(LocalReply.error(error.description).encode())
            ch.close()
            return
        }
        let uid = caller.uid
        var keepOpen = false
        defer { if !keepOpen { ch.close() } }
        // The accept loop set a receive timeout: the request must come
        // within it. Then the connection is the client's (onnode keeps it
        // for signals), with no timeout and no longer counted as pending.
        let first = try? ch.receiveWithFDs()
        localGate.leave(ch.fd)
        ch.setTimeouts(seconds: 0)
        guard let (message, fds) = first else { return }
        guard let (type, payload) = message, type == Wire.fields else {
            fds.forEach { close($0) }
            return
        }
        do throws(SSIError) {
            let request: LocalRequest
            do throws(ProcMessageError) { request = try LocalRequest.decode(try Fields.decode(payload)) } catch {
                throw error.asSSIError
            }
            switch request {
            case .where(let pids):
                for p in pids {
                    try ch.send(LocalReply.where(pid: p, nodes: clusterWhere(pid: p)).encode())
                }
                try ch.send(LocalReply.end.encode())
            case .ps:
                for node in peers().filter(\.value.up).keys.sorted() {
                    do throws(SSIError) {
                        if node == localNode {
                            for part in psReply() { try ch.send(part) }
                        } else {
                            let c = try connect(node, timeoutSeconds: 5)
                            defer { c.close() }
                            try c.send(PeerRequest.ps.encode())
                            // Parts until "end"; each fits, as it came.
                            while true {
                                let part = try c.expectFields("ps from node \(node)")
                                if part.op == "end" { break }
                                guard part.op == "ps" else {
                                    throw SSIError("proc", part["message"] ?? "unexpected answer \(part.op)")
                                }
                                try ch.send(part)
                            }
                        }
                    } catch {
                        try ch.send(LocalReply.error("node \(node): \(error.message)").encode())
                    }
                }
                try ch.send(LocalReply.end.encode())
            case .migrate(let p, let target, let tree, let throughRoot, let precopy):
                let nodes = clusterWhere(pid: p)
                guard let at = nodes.first else { throw SSIError("migrate", "\(p): no such process on any node") }
                if at == localNode {
                    try migrate(pid: p, to: target, tree: tree, uid: uid, throughRoot: throughRoot, precopy: precopy, reply: ch)
                } else {
                    // Ask the process's node to move it; relay its answers.
                    let c = try connect(at)
                    defer { c.close() }
                    try c.send(PeerRequest.migrate(pid: p, node: target, tree: tree, uid: uid, throughRoot: throughRoot, precopy: precopy).encode())
                    while let r = try c.receiveFields() {
                        try ch.send(r)
                        if r.op == "migrated" || r.op == "error" { break }
                    }
                }
            case .onnode(let r):
                keepOpen = try onnode(r, fds: fds, caller: caller, client: ch)
            case .signal:
                throw SSIError("proc", "a signal request without an onnode session")
            case .kill(let pid, let sig):
                try killAnywhere(pid, sig, uid: uid)
                try ch.send(LocalReply.end.encode())
            case .place:
                try ch.send(LocalReply.placed(node: placement()).encode())
            }
        } catch {
            try? ch.send(LocalReply.error(error.description).encode())
        }
        if !keepOpen { fds.forEach { close($0) } }
    }

    // MARK: where and ps

    func isHere(_ pid: pid_t) -> Bool {
        guard pid > 0, !departed.current.contains(pid), !isDeputy(pid),
              let stat = try? FileSystem.readText("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(after: close)...].split(separator: " ").first ?? ""
        // Not a zombie, and a process, not a thread of another one.
        return state != "Z" && state != "X" && FileSystem.exists("/proc/\(pid)/task/\(pid)")
            && ((try? FileSystem.readText("/proc/\(pid)/status"))?.contains("\nTgid:\t\(pid)\n") ?? false)
    }

    func whereReply(pid: pid_t) -> PeerReply {
        isHere(pid) ? .where(found: true, command: Self.bounded(ProcessInspector.command(pid))) : .where(found: false, command: "")
    }

    /// The nodes where `pid` runs now (one, unless it is an old low PID
    /// from before the node's PID range began).
    func clusterWhere(pid: pid_t) -> [UInt32] {
        var found: [UInt32] = []
        for node in peers().filter(\.value.up).keys.sorted() {
            if node == localNode {
                if isHere(pid) { found.append(node) }
                continue
            }
            guard let c = try? connect(node, timeoutSeconds: 5) else { continue }
            defer { c.close() }
            // A node that cannot answer (another ssi version, a broken
            // connection) does not have it, as far as anyone can tell: said
            // in the log, since the caller hears only "no such process".
            do throws(SSIError) {
                try c.send(PeerRequest.where(pid: pid).encode())
                let r = try c.expectFields("node \(node)'s answer to where")
                switch try? PeerReply.decode(r) {
                case .where(found: true, _)?: found.append(node)
                case .where(found: false, _)?: break
                case .error(let message)?: trace("where \(pid) on node \(node): \(message)")
                default: trace("where \(pid) on node \(node): unexpected answer \(printable(r.op.prefix(40)))")
                }
            } catch {
                trace("where \(pid) on node \(node): \(error.description)")
            }
        }
        return found
    }

    /// This node's processes for `ssi cluster ps`, as one or more "ps"
    /// messages: a busy node with long command lines would not fit in one
    /// (the limit is SecureChannel.maxPayload), so the list is split.
    func psReply() -> [Fields] {
        var rows: [String] = []
        for name in ((try? FileSystem.list("/proc")) ?? []).compactMap({ pid_t($0) }).sorted() where isHere(name) {
            let raw = (try? FileSystem.readFile("/proc/\(name)/cmdline")) ?? []
            if raw.isEmpty { continue }    // kernel threads
            var st = stat()
            let uid = stat("/proc/\(name)", &st) == 0 ? st.st_uid : 0
            rows.append("\(name) \(uid) \(Self.bounded(ProcessInspector.command(name)))")
        }
        return Self.psMessages(node: localNode, rows: rows)
    }

    /// The most PIDs one where_pid request may ask about.
    static let maxWherePIDs = 1024

    /// The longest command line `ps` and `where` carry, in bytes; longer
    /// ones end in `truncationMark` (a command line may be up to 2 MiB).
    static let maxCommandBytes = 4096
    static let truncationMark = "...[truncated]"
    /// The budget of one "ps" message: well under maxPayload.
    static let psMessageBudget = 256 * 1024

    static func bounded(_ command: String) -> String {
        guard command.utf8.count > maxCommandBytes else { return command }
        // Cut on a character boundary.
        var out = ""
        var used = 0
        for c in command {
            let n = c.utf8.count
            if used + n > maxCommandBytes - truncationMark.utf8.count { break }
            out.append(c)
            used += n
        }
        return out + truncationMark
    }

    /// Rows "PID UID COMMAND" in messages of at most `budget` encoded bytes
    /// each (always at least one message, so an idle node still answers).
    static func psMessages(node: UInt32, rows: [String], budget: Int = psMessageBudget) -> [Fields] {
        var out: [Fields] = []
        var current = Fields("ps", [("node", String(node))])
        var size = current.encoded.count
        for row in rows {
            let cost = Fields.escape(row).utf8.count + 3    // "\np="
            if size + cost > budget && current.pairs.count > 2 {
                out.append(current)
                current = Fields("ps", [("node", String(node))])
                size = current.encoded.count
            }
            current.add("p", row)
            size += cost
        }
        out.append(current)
        return out
    }
}
