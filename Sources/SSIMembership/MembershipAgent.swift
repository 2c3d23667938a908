#if canImport(Glibc)
import Glibc
#endif
public import SSICore
import SSILinux
import SSIConfig
import SSITrust
import CSSIShim

/// The membership agent: one per node, started by ssi-init right after
/// corosync, kept running after the hand-off.
///
/// It publishes this node's state (COMINGUP with its boot stage, UP,
/// GOINGDOWN) to the CPG group "ssi-membership", learns everyone else's,
/// tracks corosync's quorum, keeps the cluster view in /run/ssi, and runs
/// the hook programs when a node comes up or goes down (OpenSSI's
/// rc.nodeup). Single-threaded: poll on corosync's fds and a signalfd.
public final class MembershipAgent {
    public struct Options: Sendable {
        public var stateDirectory = ClusterView.defaultDirectory
        public var hooksDirectory = "/etc/ssi/hooks.d"
        public var group = "ssi-membership"
        /// The cluster configuration in the agent's root (ssi-init copies
        /// the image's): which node serves a CFS root.
        public var configPath = "/etc/ssi/cluster.conf"
        /// Lines dnsmasq's script appends on the CFS init node ("dhcp IP
        /// MAC", "tftp IP FILE"): network-booting nodes' first stages.
        public var bootEventsPath = "/run/ssi/netboot/events"
        /// `ssi cluster reload` hands the agent a configuration here.
        public var reloadDirectory = ClusterReload.directory
        /// corosync's configuration in the agent's root, rewritten on reload.
        public var corosyncConfPath = "/etc/corosync/corosync.conf"
        /// dlm_controld's configuration in the agent's root (a gfs2 root):
        /// rewritten on reload so that a new node can be fenced too
        /// (dlm_controld reads the fence devices when it fences).
        public var dlmConfPath = "/etc/dlm/dlm.conf"
        public var fenceSecretsPath = FenceSecrets.runtimePath
        public init() {}
    }

    let options: Options
    let log: (String) -> Void
    private var cpg: CPGClient!
    private var quorum: QuorumClient!
    private var votequorum: VotequorumClient?
    private var view: ClusterView
    private var myState = NodeState.comingUp
    private var myStage = "membership"
    /// GFS2 lock tables mounted here, as last told to the cluster.
    private var myGFS2: [String] = []
    private var myDevices: [String] = []
    private var uuidCache: [String: String] = [:]
    private var locks: ClusterLocks!
    private var running = true
    /// The node serving the CFS root, if the root is CFS.
    private var cfsServer: (number: UInt32, name: String, address: String)?
    /// Nodes by their cluster-network address (what dnsmasq's boot events
    /// name), which is not the view's address when a tunnel is set.
    private var nodesByLinkAddress: [String: UInt32] = [:]
    /// The configuration as last loaded (the tunnel's peers follow it).
    private var config: ClusterConfig?
    /// The enrolled identities the CFS init node last sent (`peers`).
    private var identities: KnownIdentities?
    /// On the init node: the identities file as last sent ("" forces a send).
    private var identitiesStamp = ""
    private var bootEventsOffset = 0
    /// The CPG group's members, as of the last configuration change.
    private var members: Set<UInt32> = []
    /// Each member's state and stage as it last said them on CPG: what its
    /// record goes back to when corosync lists it again (QuorumRule).
    private var reported: [UInt32: QuorumRule.Reported] = [:]
    /// The members' loads as they published them (`load`), and this
    /// node's sampler.
    private var loads = NodeLoads()
    private var loadSampler = LoadSampler()
    /// The cluster network ("10.0.0.0/24"): NFS exports of cluster mounts.
    private var network: String?
    private var socket: AgentSocket?
    private var mounts: ClusterMountKeeper!

    public init(options: Options, log: @escaping (String) -> Void) {
        self.options = options
        self.log = log
        view = ClusterView(clusterName: "", localNode: 0, quorate: false, expectedVotes: 0,
                           totalVotes: 0, quorum: 0, nodes: [])
    }

    /// Runs until SIGTERM/SIGINT or until corosync goes away.
    public func run() throws(SSIError) {
        // A supervisor stays behind and restarts the agent if it dies: the
        // view, the mount table and the other nodes' state are learned
        // again from CPG (a newcomer is told everything); cluster locks
        // and requests of this node's clients end with the connection
        // (they see it close; the other members drop our holders when we
        // leave the group).
        AgentSupervisor.superviseSelf(name: "membership agent", logPath: options.stateDirectory + "/agent.log", log: log)
        let signalFD = try blockSignals()
        let signals = signalFD.rawValue
        cpg = try CPGClient(group: options.group)
        quorum = try QuorumClient()
        votequorum = try? VotequorumClient()
        view.localNode = try cpg.localNode()
        loadNodeList()
        loadConfig()
        readStage()

        writePID()
        let door = try AgentSocket(directory: options.stateDirectory)
        socket = door
        mounts = ClusterMountKeeper(agent: .init(
            localNode: { [unowned self] in self.view.localNode },
            members: { [unowned self] in self.members },
            address: { [unowned self] n in self.view.nodes.first { $0.number == n }.map(\.address) },
            network: { [unowned self] in self.network },
            send: { [unowned self] message in
                do { try self.send(message) } catch { self.log("agent: cannot send to the cluster: \(error)") }
            },
            reply: { [unowned self] fd, line in self.socket?.send(fd, AgentReply.decode(line)) },
            log: { [unowned self] line in self.log(line) },
            trace: { [unowned self] line in self.trace(line) },
            stateDirectory: options.stateDirectory))
        locks = ClusterLocks(localNode: { [unowned self] in self.view.localNode },
                             send: { [unowned self] message in try? self.send(message) },
                             reply: { [unowned self] fd, line in self.socket?.send(fd, AgentReply.decode(line)) })
        cpg.onMessage = { [unowned self] node, payload in self.received(from: node, payload) }
        cpg.onMembership = { [unowned self] list, left, joined in self.membershipChanged(members: list, left: left, joined: joined) }
        quorum.onChange = { [unowned self] q in self.quorumChanged(q) }
        try cpg.join()
        try quorum.track()
        try announce()
        writeView()
        log("agent: node \(view.localNode) joined \(options.group) in cluster \(view.clusterName)")

        // The devices this node has mounted or swaps on (checkDevices) are
        // looked at when PID 1's mount table or the swap areas change, not
        // after every poll round (parsing mountinfo cost 7-49 ms a round
        // under TCG). Without a watch, once a second.
        let mountWatch = try? TableWatch("/proc/1/mountinfo")
        let swapWatch = try? TableWatch("/proc/swaps")
        let unwatched = pollfd(fd: -1, events: 0, revents: 0)
        var fixed = [pollfd(fd: try cpg.fileDescriptor(), events: Int16(POLLIN), revents: 0),
                     pollfd(fd: try quorum.fileDescriptor(), events: Int16(POLLIN), revents: 0),
                     pollfd(fd: signals, events: Int16(POLLIN), revents: 0),
                     pollfd(fd: door.listenFD, events: Int16(POLLIN), revents: 0),
                     mountWatch?.pollEntry ?? unwatched,
                     swapWatch?.pollEntry ?? unwatched]
        let watched = mountWatch != nil && swapWatch != nil
        // Kept open until the loop ends.
        defer { withExtendedLifetime((mountWatch, swapWatch)) {} }
        var devicesStale = true
        var staleSince = 0.0
        var lastDeviceCheck = 0.0
        var lastReconcile = 0.0
        while running {
            // Clients of the socket and the cluster mount children come
            // and go: the poll set is rebuilt each round.
            let clients = door.clientFDs
            fixed[3].events = door.listenEvents
            var fds = fixed + clients.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
                + mounts.childFDs.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let n = pollRetrying(&fds, timeoutMs: 1000)
            if n < 0 {
                let lastErrno = errno
                throw SSIError("agent", "poll: \(errnoDescription(lastErrno))")
            }
            if fds[0].revents != 0 { try cpg.dispatch() }
            if fds[1].revents != 0 { try quorum.dispatch() }
            if fds[2].revents != 0 { try handleSignal(signals) }
            if fds[3].revents & Int16(POLLIN) != 0 { door.accept() }
            if !devicesStale && (TableWatch.changed(fds[4].revents) || TableWatch.changed(fds[5].revents)) {
                devicesStale = true
                staleSince = Process.now()
            }
            for (i, fd) in clients.enumerated() where fds[fixed.count + i].revents != 0 {
                door.read(fd, line: { self.request($0, from: fd) }, closed: {
                    self.mounts.clientClosed(fd)
                    self.locks.clientClosed(fd)
                })
            }
            door.expireSilent { fd in
                self.mounts.clientClosed(fd)
                self.locks.clientClosed(fd)
            }
            mounts.checkChildren()
            if Process.now() - lastReconcile >= 2 {
                lastReconcile = Process.now()
                mounts.reconcile()
                refreshVotes()
            }
            if fds[0].revents & Int16(POLLHUP | POLLERR) != 0 || fds[1].revents & Int16(POLLHUP | POLLERR) != 0 {
                throw SSIError("agent", "corosync closed the connection", hint: "corosync stopped or crashed; see its log")
            }
            Process.reapZombies()
            if let mine = loadSampler.tick(now: Process.now(), loadavg: { try? FileSystem.readText("/proc/loadavg") }) {
                try? send(.load(hundredths: mine.hundredths, cpus: mine.cpus))
            }
            readBootEvents()
            sendIdentitiesIfChanged()
            checkGFS2Mounts()
            if !watched && !devicesStale && Process.now() - lastDeviceCheck >= 1 {
                devicesStale = true
                staleSince = Process.now()
            }
            // A cluster mount changes the table: the mount and its answers
            // go first (the look took up to 80 ms of the node's one CPU
            // under TCG, beside the part's thread), the look once it is
            // done, or a second after the change.
            if devicesStale && (!mounts.busy || Process.now() - staleSince >= 1) {
                devicesStale = false
                lastDeviceCheck = Process.now()
                checkDevices()
            }
        }
        myState = .goingDown
        try? announce()
        cpg.leave()
        log("agent: node \(view.localNode) leaving")
    }

    // MARK: events

    /// A line in the state directory's agent.log, with the uptime.
    private func trace(_ line: String) {
        guard let file = try? Descriptor(open: options.stateDirectory + "/agent.log", O_WRONLY | O_APPEND | O_CREAT, mode: 0o644) else { return }
        writeAll(file.rawValue, "\(Log.uptimeString()) \(line)\n")
    }

    private func writePID() {
        try? FileSystem.makeDirectories(options.stateDirectory)
        try? FileSystem.writeFile(options.stateDirectory + "/agent.pid", "\(getpid())\n")
    }

    /// One message to every member (this node included: CPG delivers it
    /// back in the agreed order).
    private func send(_ message: CPGMessage) throws(SSIError) {
        try cpg.send(message.encode())
    }

    /// The request `ssi cluster reload` wrote: its id and the configuration,
    /// sent to every member as "reload ID" parts.
    private func sendReload() {
        guard let bytes = try? FileSystem.readFile(options.reloadDirectory + "/request"),
              let newline = bytes.firstIndex(of: 10) else { return }
        let id = String(decoding: bytes[..<newline], as: UTF8.self)
        // The id names the file of answers.
        guard CPGMessage.isReloadID(Substring(id)) else {
            log("agent: ignoring a reload request with a bad id")
            return
        }
        guard let parts = CPGMessage.reloadParts(id: id, text: Array(bytes[(newline + 1)...])) else {
            appendReloadResult(id: id, line: "\(view.localNode) error: the configuration is larger than \(CPGMessage.maxReloadBytes) bytes")
            return
        }
        do {
            for part in parts { try send(part) }
        } catch {
            appendReloadResult(id: id, line: "\(view.localNode) error: cannot send to the cluster: \(error.message)")
        }
    }

    /// Reloads being gathered, part by part, by sender.
    private var reloads = Reassembly<UInt8>()
    /// Senders whose protocol version was already logged as not ours.
    private var warnedVersions: Set<String> = []

    /// Every member writes the new corosync.conf, dlm.conf (when it runs
    /// dlm_controld) and cluster.conf into its own root (where corosync and the agents read them), then says how
    /// it went; the requester's agent collects the answers for the command.
    private func applyReload(from node: UInt32, id: String, text: String) {
        var result = "ok"
        do throws(SSIError) {
            let config = try ClusterConfig.parse(text: text, file: "cluster.conf (reload from node \(node))")
            guard config.cluster.name == view.clusterName || view.clusterName.isEmpty else {
                throw SSIError("reload", "the configuration is for cluster \(config.cluster.name), this node is in \(view.clusterName)")
            }
            if let running = self.config, let why = running.reloadRefusal(to: config) {
                throw SSIError("reload", why)
            }
            try writeAtomically(options.corosyncConfPath, config.corosyncConf(keyfile: "/etc/corosync/authkey"))
            if FileSystem.exists(options.dlmConfPath) {
                // With @NAME fence arguments: resolved from the secrets this
                // node opened at boot, in the daemons' root (RAM).
                let dlm = config.fenceSecretNames.isEmpty ? config.dlmConf()
                    : try config.dlmConf(secrets: try FenceSecrets.load(options.fenceSecretsPath), source: options.fenceSecretsPath)
                try writeAtomically(options.dlmConfPath, dlm, mode: 0o600)
            }
            try writeAtomically(options.configPath, text, mode: 0o600)
            loadConfig()
            // The view follows the new nodelist: new nodes DOWN until heard
            // from, removed nodes gone (unless still members).
            for n in config.nodes {
                update(UInt32(n.number)) {
                    $0.name = n.name
                    $0.address = config.clusterAddress(n).description
                }
            }
            let kept = Set(config.nodes.map { UInt32($0.number) })
            view.nodes.removeAll { !kept.contains($0.number) && $0.state == .down }
            view.nodes.sort { $0.number < $1.number }
            writeView()
            // A node dropped from the configuration has its key taken
            // out of the tunnel here, on every node at once.
            syncTunnel()
        } catch {
            result = "error: \(error.description)"
        }
        try? send(.reloaded(id: id, node: view.localNode, result: result))
    }

    /// `mode` 0600 for what may hold a secret: cluster.conf and dlm.conf
    /// carry the fence agents' arguments (passwords).
    private func writeAtomically(_ path: String, _ text: String, mode: mode_t = 0o644) throws(SSIError) {
        // A fresh temporary file given `mode` whatever a leftover of an
        // agent killed mid-reload had (a fixed name kept its old mode).
        do throws(SystemCallError) {
            try writeFileAtomically(path, Array(text.utf8), mode: mode, replace: true)
        } catch {
            throw SSIError("reload", "writing \(path): \(error.description)")
        }
    }

    private func appendReloadResult(id: String, line: String) {
        let path = options.reloadDirectory + "/" + id
        guard let file = try? Descriptor(open: path, O_WRONLY | O_APPEND | O_CREAT, mode: 0o644) else { return }
        writeAll(file.rawValue, line + "\n")
    }

    /// A line from a command on this node's socket (AgentProtocol.swift).
    private func request(_ line: String, from fd: Int32) {
        let request: AgentRequest
        do {
            request = try AgentRequest.decode(line)
        } catch {
            socket?.send(fd, .line(error.description))
            socket?.send(fd, .end(1))
            return
        }
        switch request {
        case .mount(let entry): mounts.requestMount(entry, client: fd)
        case .umount(let target): mounts.requestUmount(target: target, client: fd)
        case .lock(let name): locks.request(name, client: fd)
        }
    }

    private func received(from node: UInt32, _ payload: [UInt8]) {
        let message: CPGMessage
        do {
            message = try CPGMessage.decode(payload)
        } catch {
            if error.isVersionMismatch {
                // Every message of such a node would say the same.
                guard warnedVersions.insert("\(node) \(error)").inserted else { return }
                log("agent: ignoring the messages of node \(node): \(error) (run one ssi version on every node)")
                return
            }
            let text = String(decoding: payload.prefix(80), as: UTF8.self)
            log("agent: ignoring a malformed message from node \(node): \(error): \(Self.printable(Substring(text)))")
            return
        }
        if mounts.received(message, from: node) { return }
        if locks.received(message, from: node) { return }
        switch message {
        case .reload(let id, let part, let bytes):
            guard let all = reloads.add(from: node, key: id, part: part, items: bytes) else { return }
            applyReload(from: node, id: id, text: String(decoding: all, as: UTF8.self))
        case .reloaded(let id, let from, let result):
            // Only the requester keeps them.
            if (try? FileSystem.readText(options.reloadDirectory + "/request"))?.hasPrefix(id + "\n") == true {
                appendReloadResult(id: id, line: "\(from) \(result.prefix { $0 != "\n" })")
            }
        case .peers(let list):
            // Only the identity sender says who the peers are.
            guard node == identitySender else { return }
            let text = list.map { "\($0.name) \($0.key)\n" }.joined()
            do throws(SSIError) {
                identities = try KnownIdentities.parse(text, source: "the identities from node \(node)")
                syncTunnel()
            } catch {
                log("agent: ignoring the tunnel peers from node \(node): \(error.message)")
            }
        case .load(let hundredths, let cpus):
            loads.byNode[node] = .init(hundredths: hundredths, cpus: cpus)
            writeLoads()
        case .devices(let list):
            update(node) { $0.devices = list }
            writeView()
        case .gfs2(let list):
            update(node) { $0.gfs2 = list }
            writeView()
        case .boot(let target, let stage):
            // About a node that is booting from the network and not yet a
            // member, from the CFS init node.
            let r = record(target)
            guard r.state == .down || (r.state == .comingUp && Self.firmwareStages.contains(r.stage)) else { return }
            update(target) {
                $0.state = .comingUp
                $0.stage = stage
            }
            writeView()
        case .state(let state, let stage):
            reported[node] = .init(state: state, stage: stage)
            let old = record(node).state
            update(node) {
                $0.state = state
                $0.stage = stage
            }
            if old != .up && state == .up { runHooks("up", node: node) }
            if old != .down && state == .down { runHooks("down", node: node) }
            writeView()
        default:
            break  // the keeper's and the locks' (consumed above)
        }
    }

    /// Text from a peer for the log: control characters as "?".
    static func printable(_ s: Substring) -> String {
        String(String.UnicodeScalarView(s.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7f ? "?" : $0 }))
    }

    private func membershipChanged(members list: [CPGClient.Member], left: [CPGClient.Member], joined: [CPGClient.Member]) {
        members = Set(list.map(\.node))
        for m in left { reloads.drop(m.node) }
        defer {
            mounts.membershipChanged(members: members, left: left.map(\.node), joined: joined.map(\.node))
            locks.membershipChanged(members: members, left: left.map(\.node), joined: joined.map(\.node))
        }
        if !left.isEmpty {
            for m in left { loads.byNode[m.node] = nil }
            writeLoads()
        }
        for m in left where m.node != view.localNode {
            reported[m.node] = nil
            let old = record(m.node).state
            update(m.node) {
                $0.state = .down
                $0.stage = ""
                $0.gfs2 = []
                $0.devices = []
            }
            if old != .down { runHooks("down", node: m.node) }
            log("agent: node \(m.node) left")
        }
        if !joined.isEmpty {
            for m in joined where m.node != view.localNode && record(m.node).state == .down {
                update(m.node) { $0.state = .comingUp }
            }
            // A newcomer knows nobody's state: everyone says theirs again.
            try? announce()
            // A newcomer learns the tunnel's peers from the init node.
            identitiesStamp = ""
        }
        writeView()
    }

    /// votequorum tells the quorum library of membership and quorum
    /// changes only: expected votes lowered by a reload or by `ssi cluster
    /// shutdown` left the view's numbers stale until the next change.
    /// Asked every 2 s; the view is written only when they moved.
    private func refreshVotes() {
        guard let info = try? votequorum?.info(),
              (info.expectedVotes, info.totalVotes, info.quorum) != (view.expectedVotes, view.totalVotes, view.quorum) else { return }
        view.expectedVotes = info.expectedVotes
        view.totalVotes = info.totalVotes
        view.quorum = info.quorum
        writeView()
    }

    private func quorumChanged(_ q: QuorumClient) {
        view.quorate = q.quorate
        if let info = try? votequorum?.info() {
            view.expectedVotes = info.expectedVotes
            view.totalVotes = info.totalVotes
            view.quorum = info.quorum
        }
        let (down, back) = QuorumRule.apply(to: &view.nodes, quorum: Set(q.members), cpg: members, reported: reported,
                                            local: view.localNode)
        for n in down { runHooks("down", node: n) }
        for n in back where reported[n]?.state == .up { runHooks("up", node: n) }
        writeView()
    }

    private func handleSignal(_ fd: Int32) throws(SSIError) {
        var info = signalfd_siginfo()
        let n = read(fd, &info, MemoryLayout<signalfd_siginfo>.size)
        guard n == MemoryLayout<signalfd_siginfo>.size else { return }
        switch Int32(info.ssi_signo) {
        case SIGTERM, SIGINT:
            running = false
        case SIGHUP:
            // ssi-init moved to another boot stage (/run/ssi/stage).
            readStage()
            try announce()
            writeView()
        case SIGUSR1:
            // `ssi cluster reload` left a configuration for the cluster.
            sendReload()
        default:
            break  // SIGCHLD: reaped in the loop
        }
    }

    // MARK: state

    private func readStage() {
        let text = (try? FileSystem.readText(options.stateDirectory + "/stage")) ?? ""
        let stage = Self.stageToken(String(text.prefix { $0 != "\n" }))
        if stage == "up" {
            myState = .up
            myStage = ""
        } else if !stage.isEmpty {
            myState = .comingUp
            myStage = stage
        }
        update(view.localNode) {
            $0.state = myState
            $0.stage = myStage
        }
    }

    /// A stage as the state message and the view file can carry it (a
    /// token: printable ASCII, no space, at most 256 bytes): anything
    /// else becomes "_", so that the view stays readable for everyone.
    static func stageToken(_ stage: String) -> String {
        String(decoding: stage.utf8.prefix(CPGMessage.maxTokenBytes).map { $0 > 0x20 && $0 < 0x7f ? $0 : UInt8(ascii: "_") }, as: UTF8.self)
    }

    private func announce() throws(SSIError) {
        try send(.state(myState, stage: myStage))
        try send(.gfs2(myGFS2))
        try send(.devices(myDevices))
    }

    /// The block devices this node uses, by UUID (libblkid, cached by
    /// device number): mounted ones from the system's mount table, swap
    /// from /proc/swaps. Checked each round; a change is told to all.
    private func checkDevices() {
        var now: [String] = []
        for e in Mount.entries(path: "/proc/1/mountinfo") where e.source.hasPrefix("/dev/") {
            if let u = uuid(e.source) { now.append("m:" + u) }
        }
        let swaps = ((try? FileSystem.readText("/proc/swaps")) ?? "").lines().dropFirst()
        for line in swaps {
            if let path = line.split(separator: " ").first, path.hasPrefix("/dev/"), let u = uuid(String(path)) {
                now.append("s:" + u)
            }
        }
        // Only what the devs message can carry (see checkGFS2Mounts).
        now = Array(Set(now).filter { !$0.contains(",") && CPGMessage.isToken(Substring($0)) }).sorted()
        now = Array(now.prefix(CPGMessage.maxListItems))
        guard now != myDevices else { return }
        myDevices = now
        update(view.localNode) { $0.devices = now }
        try? send(.devices(now))
        writeView()
    }

    private func uuid(_ path: String) -> String? {
        guard let st = try? FileSystem.status(path, followSymlinks: true) else { return nil }
        let key = "\(path) \(st.rdevMajor):\(st.rdevMinor)"
        if let u = uuidCache[key] { return u }
        let u = BlockDevices.probe(path)?.uuid
        if let u { uuidCache[key] = u }
        return u
    }

    /// The GFS2 file systems mounted here: the kernel lists each, by lock
    /// table, in /sys/fs/gfs2 (the agent's /sys is the system's). Checked
    /// about once a second; a change is told to every member.
    static let gfs2SysDirectory = "/sys/fs/gfs2"

    private func checkGFS2Mounts() {
        // Lock tables are tokens ("cluster:fs"); one that is not could not
        // be sent (the peers would refuse the whole list).
        let now = Array(((try? FileSystem.list(Self.gfs2SysDirectory)) ?? [])
            .filter { $0.contains(":") && !$0.contains(",") && CPGMessage.isToken(Substring($0)) }.sorted().prefix(CPGMessage.maxListItems))
        guard now != myGFS2 else { return }
        myGFS2 = now
        update(view.localNode) { $0.gfs2 = now }
        try? send(.gfs2(now))
        writeView()
    }

    private func record(_ node: UInt32) -> NodeRecord {
        view.nodes.first { $0.number == node }
            ?? NodeRecord(number: node, name: "", address: "", state: .down, stage: "")
    }

    private func update(_ node: UInt32, _ change: (inout NodeRecord) -> Void) {
        let before = record(node)
        if let i = view.nodes.firstIndex(where: { $0.number == node }) {
            change(&view.nodes[i])
        } else {
            var r = NodeRecord(number: node, name: "", address: "", state: .down, stage: "")
            change(&r)
            view.nodes.append(r)
        }
        changed(from: before, to: record(node))
    }

    /// Stages a network-booting node goes through before its own agent
    /// speaks, as the init node's dnsmasq saw them.
    static let firmwareStages: Set<String> = ["dhcp", "image"]

    /// Every state or stage change goes to `stages.log` in the state
    /// directory (a node's boot, step by step, for whoever asks later).
    /// The CFS init node going down is said on this node's console: every
    /// node's root lives on it.
    private func changed(from old: NodeRecord, to new: NodeRecord) {
        guard old.state != new.state || old.stage != new.stage else { return }
        let line = "\(Log.uptimeString()) node \(new.number) \(new.state.rawValue) \(new.stage.isEmpty ? "-" : new.stage)\n"
        if let file = try? Descriptor(open: options.stateDirectory + "/stages.log", O_WRONLY | O_APPEND | O_CREAT, mode: 0o644) {
            writeAll(file.rawValue, line)
        }
        if let server = cfsServer, new.number == server.number, server.number != view.localNode,
           new.state == .down, old.state != .down {
            let message = "the CFS init node \(server.name) (node \(server.number), \(server.address)) is DOWN: "
                + "this node's root file system is served by it and every access to it waits until it is back; "
                + "CFS cannot survive the loss of its init node (see INSTALL.md)"
            log("agent: " + message)
            kernelLog(critical: "ssi-agent: " + message)
        }
    }

    /// A line on the console and in dmesg, whatever the booted system's
    /// logging (crit: above every console log level but "quiet"'s).
    private func kernelLog(critical text: String) {
        guard let kmsg = try? Descriptor(open: "/dev/kmsg", O_WRONLY) else { return }
        writeAll(kmsg.rawValue, "<2>" + text + "\n")
    }

    private func loadConfig() {
        guard let config = try? ClusterConfig.load(path: options.configPath) else { return }
        self.config = config
        network = config.clusterNetwork.description
        nodesByLinkAddress = Dictionary(config.nodes.map { ($0.address.description, UInt32($0.number)) }) { a, _ in a }
        guard let server = config.cfsServer else { return }
        cfsServer = (UInt32(server.number), server.name, config.clusterAddress(server).description)
    }

    /// Who tells the members the tunnel's peers: the CFS init node, which
    /// keeps the enrolled identities on its own disk; on a shared root
    /// (gfs2), where every member reads the same file, the lowest-numbered
    /// member.
    private var identitySender: UInt32? { cfsServer?.number ?? members.min() }

    /// On the identity sender with [tunnel]: the enrolled identities (its
    /// root's file) to every member when the file changes (`ssi cluster
    /// node enroll`, `remove`) or a node joins.
    private func sendIdentitiesIfChanged() {
        guard let config, config.tunnel != nil, identitySender == view.localNode else { return }
        let path = "/proc/1/root" + config.identity.known
        var st = stat()
        let stamp = stat(path, &st) == 0 ? "\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec) \(st.st_size) \(st.st_ino)" : "none"
        guard stamp != identitiesStamp else { return }
        identitiesStamp = stamp
        // A missing file says nothing (it is not "no node enrolled", which
        // would take every peer away): the peers stay as they are.
        guard stamp != "none" else {
            log("agent: \(config.identity.known) is not on this node's root: the tunnel's peers are not sent")
            return
        }
        do throws(SSIError) {
            let known = try KnownIdentities.load(path)
            try send(.peers(known.entries.map { CPGMessage.Identity(name: $0.name, key: $0.identity.description) }))
        } catch {
            log("agent: cannot send the tunnel's peers: \(error.message)")
        }
    }

    /// The tunnel's peers made what the configuration and the identities
    /// say (before any identities arrived: the current peers of nodes
    /// still in the configuration).
    private func syncTunnel() {
        guard let config, config.tunnel != nil else { return }
        let me = Int(view.localNode)
        do throws(SSIError) {
            let change: (added: Int, removed: Int)
            if let identities {
                change = try ClusterTunnel.sync(peers: ClusterTunnel.peers(config: config, known: identities, me: me).peers)
            } else {
                change = try ClusterTunnel.prune(config: config, me: me)
            }
            if change.added + change.removed > 0 {
                log("agent: tunnel peers: \(change.added) added, \(change.removed) removed")
            }
        } catch {
            log("agent: \(error.description)")
        }
    }

    /// New lines from dnsmasq's script (only on the CFS init node): a DHCP
    /// lease or a finished image transfer to a node that is not a member
    /// yet becomes its stage, told to the whole cluster.
    private func readBootEvents() {
        guard cfsServer?.number == view.localNode else { return }
        var st = stat()
        guard stat(options.bootEventsPath, &st) == 0 else { return }
        let size = Int(st.st_size)
        if size < bootEventsOffset { bootEventsOffset = 0 }
        guard size > bootEventsOffset, let bytes = try? FileSystem.readFile(options.bootEventsPath) else { return }
        let end = bytes.lastIndex(of: 10).map { $0 + 1 } ?? bootEventsOffset
        guard end > bootEventsOffset else { return }
        let text = String(decoding: bytes[bootEventsOffset..<end], as: UTF8.self)
        bootEventsOffset = end
        for line in text.lines() {
            let f = line.split(separator: " ").map(String.init)
            guard f.count >= 3, let number = nodesByLinkAddress[f[1]] else { continue }
            let stage: String
            switch f[0] {
            case "dhcp": stage = "dhcp"
            case "tftp" where f[2] == "initrd.img": stage = "image"
            default: continue
            }
            try? send(.boot(node: number, stage: stage))
        }
    }

    /// Names and addresses from corosync's own nodelist: every configured
    /// node is in the view from the start, DOWN until heard from.
    private func loadNodeList() {
        guard let cmap = try? CmapClient() else { return }
        view.clusterName = cmap.string("totem.cluster_name") ?? ""
        for i in 0..<1024 {
            guard let id = cmap.uint32("nodelist.node.\(i).nodeid") else { break }
            let name = cmap.string("nodelist.node.\(i).name") ?? ""
            let addr = cmap.string("nodelist.node.\(i).ring0_addr") ?? ""
            update(id) {
                $0.name = name
                $0.address = addr
            }
        }
    }

    private func writeLoads() {
        do throws(SSIError) {
            try writeAtomically(options.stateDirectory + "/" + NodeLoads.fileName, loads.text)
        } catch {
            log("agent: \(error.description)")
        }
    }

    private func writeView() {
        do {
            try view.write(directory: options.stateDirectory)
        } catch {
            log("agent: \(error.description)")
        }
    }

    /// Runs every executable in the hooks directory, in name order, with
    /// the event and node number as arguments and the node in the
    /// environment. The agent itself lives chrooted among the daemons'
    /// files; hooks are the administrator's programs and run in the
    /// system's root, which is PID 1's ("/proc/1/root": the initramfs
    /// before the hand-off, the distro after). Not waited for here:
    /// children are reaped in the loop.
    private func runHooks(_ event: String, node: UInt32) {
        let systemRoot = "/proc/1/root"
        guard let names = try? FileSystem.list(systemRoot + options.hooksDirectory) else { return }
        let r = record(node)
        let env = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "SSI_EVENT=\(event)", "SSI_NODE_NUM=\(node)",
                   "SSI_NODE_NAME=\(r.name)", "SSI_LOCAL_NODE=\(view.localNode)"]
        for name in names.sorted() where !name.hasPrefix(".") {
            let path = options.hooksDirectory + "/" + name
            guard FileSystem.isExecutableFile(systemRoot + path) else { continue }
            let args: [String] = [path, event, String(node)]
            do throws(SystemCallError) { _ = try SpawnSpec.inRoot(systemRoot, .path(path), argv: args, environment: env).spawn() } catch {
                log("agent: hook \(path): \(error.description)")
            }
        }
    }

    private func blockSignals() throws(SSIError) -> Descriptor {
        var set = sigset_t()
        sigemptyset(&set)
        for s in [SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGUSR1] { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
        let fd = signalfd(-1, &set, Int32(SFD_CLOEXEC))
        guard fd >= 0 else { let lastErrno = errno; throw SSIError("agent", "signalfd: \(errnoDescription(lastErrno))") }
        return Descriptor(owning: fd)
    }
}

/// How corosync's quorum membership changes the view, whatever the order
/// in which the quorum and CPG callbacks arrive. A node corosync no longer
/// lists is down even before CPG says so; a node it lists again, that is a
/// CPG member, gets back what it last said (or COMINGUP). Without the
/// second half, a stale quorum list dispatched after a partition merged
/// (corosync formed {2,3} then {1,2,3} within a second on a loaded host)
/// marked node 1 down after its CPG state had arrived, and it stayed DOWN
/// in nodes 2's and 3's views while it served their root.
enum QuorumRule {
    struct Reported: Equatable {
        var state: NodeState
        var stage: String
    }

    /// Returns the nodes it marked down and those it brought back.
    static func apply(to nodes: inout [NodeRecord], quorum: Set<UInt32>, cpg: Set<UInt32>,
                      reported: [UInt32: Reported], local: UInt32) -> (down: [UInt32], back: [UInt32]) {
        var down: [UInt32] = [], back: [UInt32] = []
        for i in nodes.indices where nodes[i].number != local {
            let n = nodes[i].number
            if !quorum.contains(n) {
                if nodes[i].state != .down {
                    nodes[i].state = .down
                    nodes[i].stage = ""
                    down.append(n)
                }
            } else if nodes[i].state == .down && cpg.contains(n) {
                let r = reported[n] ?? Reported(state: .comingUp, stage: "")
                nodes[i].state = r.state
                nodes[i].stage = r.stage
                back.append(n)
            }
        }
        return (down, back)
    }
}
