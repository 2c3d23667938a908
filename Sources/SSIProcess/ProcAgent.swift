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
    let homes = HomeRegistry()
    let standIns = StandInRegistry()
    let reaper = Reaper()
    /// Processes that moved away and are about to be killed here: not
    /// "here" for where_pid, and their death is not an exit.
    let departed = Locked<Set<pid_t>>([])
    /// Where to report a process's exit: onnode sessions, by pid.
    let exitReports = Locked<[pid_t: (node: UInt32, session: String)]>([:])
    /// onnode sessions waiting at home for their command's exit.
    let sessions = Locked<[String: LocalChannel]>([:])
    let migrating = Locked<Set<pid_t>>([])
    let modulesLoaded = Locked(false)

    /// The kernel modules CRIU needs (socket diagnostics for its socket
    /// dumps, nf_tables for its kernel feature checks), loaded once, from
    /// the system's module directory. A module that is missing is left
    /// for criu to complain about, with its own words.
    static let criuModules = ["unix_diag", "inet_diag", "tcp_diag", "udp_diag", "raw_diag", "netlink_diag", "af_packet_diag",
                              "nf_tables", "tun", "veth"]

    func loadCRIUModules() {
        guard modulesLoaded.withLock({ l -> Bool in defer { l = true }; return !l }) else { return }
        guard let ctx = try? KmodContext(directory: options.systemRoot + "/lib/modules/" + Process.kernelRelease(), useSystemConfig: false) else {
            trace("no module directory for \(Process.kernelRelease()) in the system root")
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

    func trace(_ line: String) {
        let fd = open(options.stateDirectory + "/proc-agent.log", O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        let text = "\(Log.uptimeString()) \(line)\n"
        _ = text.withCString { write(fd, $0, strlen($0)) }
        close(fd)
    }

    // MARK: peers

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
                                         timeoutSeconds: timeoutSeconds)
    }

    // MARK: run

    public func run() throws(SSIError) {
        // Whatever started us may have blocked signals (SIGTERM must stop
        // the agent); a closed peer must be an error, not SIGPIPE.
        var none = sigset_t()
        sigemptyset(&none)
        sigprocmask(SIG_SETMASK, &none, nil)
        signal(SIGPIPE, SIG_IGN)
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
        homes.log = { [weak self] in self?.trace($0) }
        reaper.start()
        let listener = try listenTCP(address: me.address)
        let local = try listenLocal()
        log("proc-agent: node \(localNode) listening on \(me.address):\(options.port)")
        trace("listening on \(me.address):\(options.port)")
        startThread { [self] in
            while true {
                let fd = ssi_accept(listener)
                if fd < 0 { continue }
                startThread { [self] in
                    do throws(SSIError) {
                        let ch = try SecureChannel.accept(fd: fd, key: key, localNode: localNode)
                        serveRemote(ch)
                    } catch {
                        trace("refused a connection: \(error.description)")
                    }
                }
            }
        }
        while true {
            let fd = ssi_accept(local)
            if fd < 0 { continue }
            startThread { [self] in serveLocal(LocalChannel(fd: fd)) }
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
            throw SSIError("proc", "listening on \(address):\(options.port): \(errnoDescription(errno))")
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
            throw SSIError("proc", "listening on \(path): \(errnoDescription(errno))")
        }
        // Any user may ask: the agent checks who asks (SO_PEERCRED).
        chmod(path, 0o666)
        return fd
    }

    // MARK: requests from other agents

    func serveRemote(_ ch: SecureChannel) {
        defer { ch.close() }
        guard let f = try? ch.receiveFields() else { return }
        do throws(SSIError) {
            switch f.op {
            case "attach":
                guard let id = f["channel"], let dir = f["dir"], let home = homes.get(id) else {
                    try ch.send(Fields("error", [("message", "no channel \(f["channel"] ?? "?") on node \(localNode)")]))
                    return
                }
                home.serve(direction: dir, on: ch)
            case "where":
                try ch.send(whereReply(pid: pid_t(truncatingIfNeeded: f.int("pid") ?? 0)))
            case "ps":
                try ch.send(psReply())
            case "run":
                try runHere(f, peer: ch.peerNode, on: ch)
            case "restore":
                try restoreHere(f, from: ch)
            case "migrate":
                // Forwarded by the agent where the command was typed.
                try migrate(pid: pid_t(truncatingIfNeeded: f.int("pid") ?? 0), to: UInt32(truncatingIfNeeded: f.int("node") ?? 0), tree: f["tree"] == "1",
                            uid: uid_t(truncatingIfNeeded: f.int("uid") ?? -1), throughRoot: f["root"] == "1", reply: ch)
            case "exited":
                // Under the lock: the session's reader thread closes the
                // client's connection under it when onnode goes.
                if let s = f["session"] {
                    sessions.withLock { m in
                        if let client = m.removeValue(forKey: s) {
                            try? client.send(Fields("exit", [("status", f["status"] ?? "255"), ("how", f["how"] ?? "")]))
                        }
                    }
                }
                try ch.send(Fields("ok"))
            case "kill":
                // A signal onnode forwarded from another node.
                if let problem = signalHere(pid_t(truncatingIfNeeded: f.int("pid") ?? 0), Int32(truncatingIfNeeded: f.int("signal") ?? 0), uid: uid_t(truncatingIfNeeded: f.int("uid") ?? -1)) {
                    try ch.send(Fields("error", [("message", problem)]))
                } else {
                    try ch.send(Fields("ok"))
                }
            default:
                try ch.send(Fields("error", [("message", "unknown request \(f.op)")]))
            }
        } catch {
            trace("\(f.op) from node \(ch.peerNode): \(error.description)")
            try? ch.send(Fields("error", [("message", error.message)]))
        }
    }

    // MARK: requests from this node's commands

    func serveLocal(_ ch: LocalChannel) {
        // Who asks, from the kernel only (never from the request); a
        // caller it cannot name is refused, not served as root.
        let caller: Caller
        do throws(SSIError) { caller = try Caller(peerOf: ch.fd) } catch {
            trace(error.description)
            try? ch.send(Fields("error", [("message", error.description)]))
            ch.close()
            return
        }
        let uid = caller.uid
        var keepOpen = false
        defer { if !keepOpen { ch.close() } }
        guard let (message, fds) = try? ch.receiveWithFDs(), let (type, payload) = message, type == Wire.fields else { return }
        let f = Fields(decoding: payload)
        do throws(SSIError) {
            switch f.op {
            case "where":
                for p in f.all("pid") {
                    try ch.send(Fields("where", [("pid", p), ("nodes", clusterWhere(pid: pid_t(p) ?? 0).map(String.init).joined(separator: ","))]))
                }
                try ch.send(Fields("end"))
            case "ps":
                for node in peers().filter(\.value.up).keys.sorted() {
                    do throws(SSIError) {
                        let reply: Fields
                        if node == localNode { reply = psReply() } else {
                            let c = try connect(node, timeoutSeconds: 5)
                            defer { c.close() }
                            try c.send(Fields("ps"))
                            reply = try c.expectFields("ps from node \(node)")
                        }
                        try ch.send(reply)
                    } catch {
                        try ch.send(Fields("error", [("message", "node \(node): \(error.message)")]))
                    }
                }
                try ch.send(Fields("end"))
            case "migrate":
                guard let target = UInt32(f["node"] ?? ""), let p = pid_t(f["pid"] ?? "") else {
                    throw SSIError("migrate", "bad request")
                }
                let nodes = clusterWhere(pid: p)
                guard let at = nodes.first else { throw SSIError("migrate", "\(p): no such process on any node") }
                if at == localNode {
                    try migrate(pid: p, to: target, tree: f["tree"] == "1", uid: uid, throughRoot: f["root"] == "1", reply: ch)
                } else {
                    // Ask the process's node to move it; relay its answers.
                    let c = try connect(at)
                    defer { c.close() }
                    try c.send(Fields("migrate", [("pid", String(p)), ("node", String(target)), ("tree", f["tree"] ?? "0"), ("uid", String(uid)),
                                               ("root", f["root"] ?? "0")]))
                    while let r = try c.receiveFields() {
                        try ch.send(r)
                        if r.op == "migrated" || r.op == "error" { break }
                    }
                }
            case "onnode":
                keepOpen = try onnode(f, fds: fds, caller: caller, client: ch)
            default:
                throw SSIError("proc", "unknown request \(f.op)")
            }
        } catch {
            try? ch.send(Fields("error", [("message", error.description)]))
        }
        if !keepOpen { fds.forEach { close($0) } }
    }

    // MARK: where and ps

    func isHere(_ pid: pid_t) -> Bool {
        guard pid > 0, !departed.current.contains(pid),
              let stat = try? FileSystem.readText("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(after: close)...].split(separator: " ").first ?? ""
        // Not a zombie, and a process, not a thread of another one.
        return state != "Z" && state != "X" && FileSystem.exists("/proc/\(pid)/task/\(pid)")
            && ((try? FileSystem.readText("/proc/\(pid)/status"))?.contains("\nTgid:\t\(pid)\n") ?? false)
    }

    func whereReply(pid: pid_t) -> Fields {
        Fields("where", [("found", isHere(pid) ? "1" : "0"), ("command", isHere(pid) ? ProcessInspector.command(pid) : "")])
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
            if (try? c.send(Fields("where", [("pid", String(pid))]))) != nil,
               let r = try? c.receiveFields(), r["found"] == "1" {
                found.append(node)
            }
        }
        return found
    }

    func psReply() -> Fields {
        var f = Fields("ps", [("node", String(localNode))])
        for name in ((try? FileSystem.list("/proc")) ?? []).compactMap({ pid_t($0) }).sorted() where isHere(name) {
            let raw = (try? FileSystem.readFile("/proc/\(name)/cmdline")) ?? []
            if raw.isEmpty { continue }    // kernel threads
            var st = stat()
            let uid = stat("/proc/\(name)", &st) == 0 ? st.st_uid : 0
            f.add("p", "\(name) \(uid) \(ProcessInspector.command(name))")
        }
        return f
    }
}
