#if canImport(Glibc)
import Glibc
#endif
import CSSIShim
import SSICore
import SSILinux

/// One shipped object in a restore or run request: "RESOURCE|KIND|HOME|CHANNEL".
struct ShipSpec: Sendable {
    var resource: String
    var kind: ShipKind
    var home: UInt32
    var channel: String

    /// A TCP connection's holder: its stand-in is injected there.
    var pid: pid_t = 0
    var fd: Int32 = -1

    var line: String { "\(resource)|\(kind.rawValue)|\(home)|\(channel)" + (kind == .tcp ? "|\(pid)|\(fd)" : "") }
    init(resource: String, kind: ShipKind, home: UInt32, channel: String) {
        self.resource = resource
        self.kind = kind
        self.home = home
        self.channel = channel
    }
    init?(line: String) {
        let f = line.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
        guard f.count == 4 || f.count == 6, let k = ShipKind(rawValue: f[1]), let h = UInt32(f[2]) else { return nil }
        self.init(resource: f[0], kind: k, home: h, channel: f[3])
        if f.count == 6, let p = pid_t(f[4]), let d = Int32(f[5]) {
            pid = p
            fd = d
        }
    }
}

/// A process-side stand-in made for a restore or a run: the end the
/// process gets and the end the agent relays.
struct MadeStandIn {
    var spec: ShipSpec
    var processEnd: Int32
    var agentEnd: Int32

    /// CRIU's name of the process end, for the next migration.
    var resource: String {
        var st = stat()
        fstat(processEnd, &st)
        switch spec.kind {
        case .pipeIn, .pipeOut: return "pipe:[\(st.st_ino)]"
        case .socket, .tcp, .device: return "socket:[\(st.st_ino)]"
        case .tty: return "tty[\(String(st.st_rdev, radix: 16)):\(String(st.st_dev, radix: 16))]"
        }
    }

    static func make(_ spec: ShipSpec, termios mode: termios? = nil) throws(SSIError) -> MadeStandIn {
        var fds: [Int32] = [-1, -1]
        switch spec.kind {
        case .pipeIn, .pipeOut:
            guard ssi_pipe(&fds) == 0 else { let lastErrno = errno; throw SSIError("proc", "pipe: \(errnoDescription(lastErrno))") }
            // Room for what a previous node carried over.
            _ = ssi_set_pipe_size(fds[0], 1 << 20)
            return spec.kind == .pipeIn ? MadeStandIn(spec: spec, processEnd: fds[0], agentEnd: fds[1])
                                        : MadeStandIn(spec: spec, processEnd: fds[1], agentEnd: fds[0])
        case .tcp, .device:
            throw SSIError("proc", "a \(spec.kind.rawValue) stand-in is injected, not made")
        case .socket:
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
                let lastErrno = errno
                throw SSIError("proc", "socketpair: \(errnoDescription(lastErrno))")
            }
            return MadeStandIn(spec: spec, processEnd: fds[0], agentEnd: fds[1])
        case .tty:
            var master: Int32 = -1, slave: Int32 = -1
            guard ssi_open_pty(&master, &slave) == 0 else { let lastErrno = errno; throw SSIError("proc", "openpty: \(errnoDescription(lastErrno))") }
            if var t = mode { tcsetattr(slave, TCSANOW, &t) }
            return MadeStandIn(spec: spec, processEnd: slave, agentEnd: master)
        }
    }
}

func termiosHex(_ fd: Int32) -> String? {
    var t = termios()
    guard tcgetattr(fd, &t) == 0 else { return nil }
    return withUnsafeBytes(of: t) { $0.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined() }
}

func termiosFrom(hex: String) -> termios? {
    var t = termios()
    let bytes = Array(hex.utf8)
    guard bytes.count == MemoryLayout<termios>.size * 2 else { return nil }
    withUnsafeMutableBytes(of: &t) { p in
        for i in 0..<p.count {
            p[i] = UInt8(String(decoding: bytes[2 * i..<2 * i + 2], as: UTF8.self), radix: 16) ?? 0
        }
    }
    return t
}

extension ProcAgent {
    static let criu = "/usr/sbin/criu"
    /// Where --through-root puts the images: on the cluster root, beside
    /// the node-private copies (not under /var, which is private on a
    /// diskless node).
    static let rootImages = "/cluster/migrate"

    /// Runs criu in the system's root and waits; on failure the error has
    /// criu's own error lines from its log.
    func runCRIU(_ args: [String], dir: String, log logName: String, fds extra: [Int32] = [], readFrom: String? = nil) throws(SSIError) {
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { close(null) }
        var spec = JobSpec(root: options.systemRoot, cwd: "/", argv: [Self.criu] + args + ["-o", dir + "/" + logName, "-v4"],
                           environment: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], fds: [null, null, null] + extra)
        // criu restore --shell-job must not lead its session or group.
        spec.keeper = 1
        loadCRIUModules()
        trace("criu " + args.joined(separator: " "))
        let pid: pid_t
        do throws(SSIError) { pid = try reaper.spawn(spec) } catch {
            throw SSIError("migrate", "cannot run criu on node \(localNode): \(error.message)",
                           hint: FileSystem.exists(options.systemRoot + Self.criu) ? nil : "install it there: apt-get install criu")
        }
        guard let exit = reaper.wait(pid, timeoutMs: 600_000) else {
            kill(pid, SIGKILL)
            throw SSIError("migrate", "criu \(args[0]) did not finish in 10 minutes")
        }
        if exit != .exited(0) {
            let logText = (try? FileSystem.readText((readFrom ?? dir) + "/" + logName)) ?? ""
            var errors = logText.lines().filter { $0.contains("Error") || $0.contains("error") }
                .suffix(6).map { String($0) }
            if errors.isEmpty { errors = logText.lines().suffix(3).map { String($0) } }
            throw SSIError("migrate", "criu \(args[0]) failed (\(exit)): " + (errors.isEmpty ? "no log in \(dir)/\(logName)" : errors.joined(separator: " | ")))
        }
    }

    /// Moves `pid` (with its tree when `tree`) to `target`. Answers on
    /// `reply`: progress lines, then "migrated" or "error".
    /// `throughRoot`: CRIU writes the images into the cluster root
    /// (/cluster/migrate) and the target restores from there, instead
    /// of the agents' stream (measured both ways: BENCHMARKS.md).
    func migrate(pid: pid_t, to target: UInt32, tree: Bool, uid: uid_t, throughRoot: Bool = false,
                 reply: any MessageChannel) throws(SSIError) {
        let started = Process.now()
        guard target != localNode else { throw SSIError("migrate", "process \(pid) is already on node \(target)") }
        guard let peer = peers()[target] else { throw SSIError("migrate", "node \(target) is not in the cluster", hint: "see `ssi cluster status`") }
        guard peer.up else { throw SSIError("migrate", "node \(target) (\(peer.name)) is not up") }
        guard isHere(pid) else { throw SSIError("migrate", "\(pid): no such process on node \(localNode)") }
        guard pid != 1, pid != getpid(), !ProcessInspector.command(pid).hasPrefix("@") else {
            throw SSIError("migrate", "process \(pid) is a cluster daemon (PID 1 or an agent) and stays on its node")
        }
        var tasks = ProcessInspector.tree(root: pid)
        // Every process of the tree is the caller's, not only its root (a
        // root-owned child, a setuid program, would move with them).
        let notOwned = Self.ownershipRefusals(tree: tasks, uid: uid, status: ProcessStatus.of)
        if !notOwned.isEmpty {
            throw SSIError("migrate", "process \(pid) cannot move: " + notOwned.joined(separator: "; "),
                           hint: uid == 0 ? nil : "move only your own processes, or ask root to")
        }
        if !tree && tasks.count > 1 {
            throw SSIError("migrate", "process \(pid) has child processes (\(tasks.dropFirst().map(String.init).joined(separator: ", "))): CRIU moves a whole tree",
                           hint: "move them all with -t, or move a leaf process")
        }
        guard migrating.withLock({ $0.insert(pid).inserted }) else {
            throw SSIError("migrate", "process \(pid) is already being moved")
        }
        defer { _ = migrating.withLock { $0.remove(pid) } }

        // What moves, what stays home, what blocks the move.
        let inspector = ProcessInspector(systemRoot: options.systemRoot)
        var shipped: [(resource: String, kind: ShipKind, pid: pid_t, fd: Int32)] = []
        var refusals: [String] = []
        var pipeEnds = Set<String>()
        for t in tasks {
            // A child that ended since the tree was read (a shell's sleep)
            // is not there to inspect: CRIU dumps the tree as it is frozen.
            let descriptors: [OpenDescriptor]
            do throws(SSIError) { descriptors = try inspector.descriptors(pid: t) } catch {
                if t != pid && !FileSystem.exists("/proc/\(t)") { continue }
                throw error
            }
            for d in descriptors {
                switch d.disposition {
                case .reopen: break
                case .refuse(let why): refusals.append(t == pid ? why : "process \(t): \(why)")
                case .ship(let kind, let resource):
                    if let other = shipped.first(where: { $0.resource == resource }) {
                        // CRIU names a file by its path: two different opens
                        // of one path (a FIFO's two ends, a file opened twice)
                        // would get one stand-in.
                        let same = resource.hasPrefix("pipe:[") || resource.hasPrefix("socket:[")
                            ? 0 : ssi_kcmp_file(other.pid, t, other.fd, d.fd)
                        if same < 0 {
                            let lastErrno = errno
                            refusals.append("/\(resource): cannot tell whether fd \(other.fd) of \(other.pid) and fd \(d.fd) of \(t) are one open file (kcmp: \(errnoDescription(lastErrno)))")
                        } else if same != 0 {
                            refusals.append("/\(resource) is open twice (fd \(other.fd) of \(other.pid), fd \(d.fd) of \(t)): only one open of a shipped file can move; close one first")
                        } else if other.kind != kind {
                            pipeEnds.insert(resource)
                        }
                    } else {
                        shipped.append((resource, kind, t, d.fd))
                    }
                }
            }
            refusals += inspector.mappingProblems(pid: t).map { t == pid ? $0 : "process \(t): \($0)" }
        }
        // A pipe with both ends in the tree moves whole with CRIU (its
        // buffered data too), unless something outside the tree holds it.
        if !pipeEnds.isEmpty {
            let outside = ProcessInspector.holders(of: pipeEnds, except: Set(tasks))
            for r in pipeEnds {
                if let (p, fd) = outside[r] {
                    refusals.append("\(r) joins processes of the tree and process \(p) (fd \(fd)) outside it: CRIU would split it; move a tree that holds all its ends")
                }
            }
            shipped.removeAll { pipeEnds.contains($0.resource) }
        }
        // A TCP connection gets one stand-in, put in one descriptor.
        var tcpHolders: [String: Int] = [:]
        for t in tasks {
            for d in (try? inspector.descriptors(pid: t)) ?? [] {
                if case .ship(.tcp, let r) = d.disposition { tcpHolders[r, default: 0] += 1 }
            }
        }
        for (r, n) in tcpHolders where n > 1 {
            refusals.append("the TCP connection \(r) is held by \(n) descriptors (only one can get its stand-in)")
        }
        // The target's own checks, made here before anything is frozen.
        let ttyCount = Set(shipped.filter { $0.kind == .tty }.map(\.resource)).count
        if ttyCount > 1 { refusals.append("it uses \(ttyCount) terminals; only one can be shipped") }
        if ttyCount > 0 && !tcpHolders.isEmpty {
            refusals.append("it has both a terminal and a TCP connection, which cannot move together yet (the terminal's session keeper and the TCP stand-in's injection each need the restore to themselves)")
        }
        if !refusals.isEmpty {
            throw SSIError("migrate", "process \(pid) cannot move: " + refusals.joined(separator: "; "))
        }
        // CRIU restores the same PIDs: they must be free on the target.
        for t in tasks {
            // One request per connection (serveRemote's rule).
            if let c = try? connect(target, timeoutSeconds: 5) {
                defer { c.close() }
                try c.send(Fields("where", [("pid", String(t))]))
                let r = try c.expectFields("where")
                if r["found"] == "1" {
                    throw SSIError("migrate", "PID \(t) is in use on node \(target) by `\(r["command"] ?? "?")`; CRIU restores a process under its own PID",
                                   hint: "processes started after the boot have PIDs in their node's range and move freely; this one is older")
                }
            }
        }

        let id = "\(localNode)-\(pid)-\(UInt32.random(in: 0...UInt32.max))"
        // Through the root: the path as criu (in the system root) and as
        // this agent (in the agents root, through /proc/1/root) see it.
        let criuDir = throughRoot ? Self.rootImages + "/" + id : options.stateDirectory + "/migrate/" + id
        let dir = options.systemRoot + criuDir
        if !throughRoot { try prepareImageSpace() }
        try makeDirectory(dir)
        defer { removeTree(dir) }

        // Home channels for what stays here; stand-ins that moved here
        // earlier keep their home.
        var specs: [ShipSpec] = []
        var newHomes: [String] = []
        var oldStandIns: [(StandIn, pid: pid_t, fd: Int32)] = []
        var ttyModes: [String: String] = [:]
        // Devices whose descriptors became sockets to this agent: the
        // agent's end, its own copy of the device, and the device's path.
        var devices: [(agentEnd: Int32, device: Int32, path: String)] = []
        func dropNewHomes() {
            newHomes.forEach { homes.release($0) }
            // The move failed: the devices' stand-ins are relayed here.
            for d in devices { relayDevice(agentEnd: d.agentEnd, device: d.device, path: d.path) }
            devices = []
        }
        for (n, s) in shipped.enumerated() where s.kind == .device {
            // CRIU cannot dump most devices: the descriptor becomes a unix
            // socket to this agent first, and the socket is shipped.
            let channel = "\(id).\(n)"
            let device = inspector.takeCopy(pid: s.pid, fd: s.fd)
            guard device >= 0 else {
                let lastErrno = errno
                dropNewHomes()
                throw SSIError("migrate", "fd \(s.fd) of process \(s.pid): pidfd_getfd: \(errnoDescription(lastErrno))")
            }
            let path = String(s.resource.prefix { $0 != "#" })
            let injected: (Int32, String)
            do throws(SSIError) {
                injected = try injectStandIn(pid: s.pid, fd: s.fd, name: "ssi-device-\(id)-\(n)", stop: false, what: "device")
            } catch {
                close(device)
                dropNewHomes()
                throw error
            }
            devices.append((injected.0, fcntl(device, F_DUPFD_CLOEXEC, 3), path))
            homes.add(HomeChannel(id: channel, kind: .socket, fd: device))
            newHomes.append(channel)
            var spec = ShipSpec(resource: injected.1, kind: .socket, home: localNode, channel: channel)
            spec.pid = s.pid
            spec.fd = s.fd
            specs.append(spec)
        }
        for (n, s) in shipped.enumerated() where s.kind != .device {
            let copy = inspector.takeCopy(pid: s.pid, fd: s.fd)
            if s.kind == .tty, copy >= 0, let hex = termiosHex(copy) { ttyModes[s.resource] = hex }
            if let old = standIns.get(s.resource) {
                if copy >= 0 { close(copy) }
                specs.append(ShipSpec(resource: s.resource, kind: s.kind, home: old.home, channel: old.channelID))
                oldStandIns.append((old, s.pid, s.fd))
                continue
            }
            guard copy >= 0 else {
                let lastErrno = errno
                dropNewHomes()
                throw SSIError("migrate", "fd \(s.fd) of process \(s.pid): pidfd_getfd: \(errnoDescription(lastErrno))")
            }
            let channel = "\(id).\(n)"
            homes.add(HomeChannel(id: channel, kind: s.kind, fd: copy))
            newHomes.append(channel)
            var spec = ShipSpec(resource: s.resource, kind: s.kind, home: localNode, channel: channel)
            spec.pid = s.pid
            spec.fd = s.fd
            specs.append(spec)
        }

        // Freeze and dump. --leave-stopped: the process stays here,
        // stopped, until the target has it running.
        // --shell-job: the process's session and terminal stay behind
        // (the restore gives it the stand-in terminal's session). A unix
        // socket whose peer stays home is external: "unix[INO]".
        var dump = ["dump", "-t", String(pid), "-D", criuDir, "--shell-job", "--leave-stopped",
                    "--manage-cgroups=ignore", "--skip-in-flight"]
        for s in specs where s.kind == .socket {
            dump += ["--external", "unix[" + s.resource.dropFirst("socket:[".count)]
        }
        if specs.contains(where: { $0.kind == .tcp }) { dump.append("--tcp-close") }
        let freezeStart = Process.now()
        do throws(SSIError) {
            try runCRIU(dump, dir: criuDir, log: "dump.log", readFrom: dir)
        } catch {
            // criu thaws the tree when a dump fails; in case it did not.
            dropNewHomes()
            for t in ProcessInspector.tree(root: pid) { kill(t, SIGCONT) }
            throw error
        }
        let dumped = Process.now()
        // What the process wrote to a device's stand-in before the freeze
        // goes to the device now, before anything it writes on the target.
        for d in devices {
            let pending = drain(d.agentEnd, tty: false)
            do throws(SystemCallError) {
                try writeAll(d.device, pending[...], name: d.path)
            } catch {
                trace("\(pending.count) bytes the process wrote to \(d.path) before the freeze were lost: \(error.description)")
            }
        }
        // The tree as CRIU froze it (children come and go until then).
        tasks = ProcessInspector.tree(root: pid)
        func resumeHere() {
            dropNewHomes()
            for (s, _, _) in oldStandIns { s.resume() }
            for t in tasks { kill(t, SIGCONT) }
        }
        // The frozen tree is checked again: a process forked (or a setuid
        // program run) between the check above and the freeze is in it.
        let notOwnedFrozen = Self.ownershipRefusals(tree: tasks, uid: uid, status: ProcessStatus.of)
        if !notOwnedFrozen.isEmpty {
            resumeHere()
            throw SSIError("migrate", "process \(pid) cannot move: " + notOwnedFrozen.joined(separator: "; "),
                           hint: "a process of the tree changed owner while it was being frozen; it runs on here")
        }

        // Stand-ins from an earlier move: stop their relays; what the
        // process had not read yet goes with it.
        var carries: [String: [UInt8]] = [:]
        for (s, holder, fd) in oldStandIns {
            guard s.pause() else {
                resumeHere()
                throw SSIError("migrate", "the shipped \(s.kind.rawValue) of channel \(s.channelID) did not settle in 15 s (its home, node \(s.home), is not answering)")
            }
            if s.kind != .pipeOut {
                let copy = inspector.takeCopy(pid: holder, fd: fd)
                var unread: [UInt8] = []
                if copy >= 0 {
                    unread = drain(copy, tty: s.kind == .tty)
                    close(copy)
                }
                let fetched = s.carry.withLock { c in defer { c = [] }; return c }
                carries[s.resource] = unread + fetched
                // Kept to put back if the move fails.
                s.carry.withLock { $0 = fetched }
                if !unread.isEmpty { carries[s.resource + "#unread"] = unread }
            }
        }

        // Send the images and the stand-ins' description.
        var result: Fields
        do throws(SSIError) {
            let c = try connect(target, timeoutSeconds: 30)
            defer { c.close() }
            c.setReceiveTimeout(seconds: 240)
            var req = Fields("restore", [("id", id), ("pid", String(pid))])
            for t in tasks { req.add("task", String(t)) }
            if throughRoot { req.add("images", criuDir) }
            for s in specs { req.add("ship", s.line) }
            for (res, hex) in ttyModes { req.add("termios", res + "|" + hex) }
            for t in tasks {
                if let r = exitReports.withLock({ $0[t] }) { req.add("report", "\(t)|\(r.node)|\(r.session)") }
            }
            try c.send(req)
            let imageBytes = ((try? FileSystem.list(dir)) ?? []).reduce(0) { sum, name in
                var st = stat()
                return sum + (stat(dir + "/" + name, &st) == 0 ? Int(st.st_size) : 0)
            }
            trace("sending the images of \(pid) to node \(target) (\(imageBytes >> 20) MB)")
            for (res, bytes) in carries where !res.hasSuffix("#unread") && !bytes.isEmpty {
                try c.send(Fields("carry", [("resource", res), ("size", String(bytes.count))]))
                try sendChunks(bytes, on: c)
            }
            for name in ((try? FileSystem.list(dir)) ?? []).sorted() where name.hasSuffix(".img") && !throughRoot {
                try sendFile(dir + "/" + name, as: name, on: c)
            }
            try c.send(Fields("go"))
            result = try c.expectFields("the target's restore result")
        } catch {
            result = Fields("error", [("message", error.message)])
        }
        guard result.op == "restored" else {
            // Put back what was drained, oldest first, then resume.
            for (s, _, _) in oldStandIns {
                if let unread = carries[s.resource + "#unread"] {
                    unread.withUnsafeBytes { _ = write(s.fd, $0.baseAddress!, $0.count) }
                }
            }
            resumeHere()
            throw SSIError("migrate", "node \(target) could not restore process \(pid): \(result["message"] ?? result.op); it goes on running on node \(localNode)")
        }
        let restored = Process.now()
        // The devices' stand-ins at home are no longer needed.
        for d in devices {
            close(d.agentEnd)
            close(d.device)
        }
        devices = []
        // The target runs it: the stopped original goes.
        departed.withLock { d in for t in tasks { d.insert(t) } }
        for t in tasks {
            kill(t, SIGKILL)
            exitReports.withLock { _ = $0.removeValue(forKey: t) }
        }
        for (s, _, _) in oldStandIns {
            s.finish()
            standIns.remove(s.resource)
        }
        // A while later the pids may be reused here.
        startThread { [self, tasks] in
            Process.sleep(milliseconds: 5000)
            departed.withLock { d in for t in tasks { d.remove(t) } }
        }
        let ms = { (a: Double, b: Double) in String(Int((b - a) * 1000)) }
        trace("migrated \(pid) to node \(target): freeze \(ms(freezeStart, restored)) ms (dump \(ms(freezeStart, dumped)) ms)")
        try reply.send(Fields("migrated", [("pid", String(pid)), ("node", String(target)), ("name", peer.name),
                                           ("freeze_ms", ms(freezeStart, restored)), ("dump_ms", ms(freezeStart, dumped)),
                                           ("total_ms", ms(started, Process.now())), ("shipped", String(specs.count))]))
    }

    /// Gives a process a stand-in for its descriptor `fd` (a restored,
    /// stopped process's TCP connection; a device before a dump): a unix
    /// socket connected to this agent, put on the descriptor by injected
    /// syscalls (ssi_inject_unix_fd). `stop`: the process was stopped and
    /// stays so. Returns the agent's end and the process end's resource name.
    func injectStandIn(pid: pid_t, fd: Int32, name: String, stop: Bool, what kind: String) throws(SSIError) -> (Int32, String) {
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard listener >= 0 else { let lastErrno = errno; throw SSIError("migrate", "socket: \(errnoDescription(lastErrno))") }
        defer { close(listener) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(name.utf8.prefix(100))
        withUnsafeMutableBytes(of: &addr.sun_path) { p in for (i, b) in bytes.enumerated() { p[i + 1] = b } }
        let len = socklen_t(MemoryLayout<sa_family_t>.size + 1 + bytes.count)
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, len) } }
        guard rc == 0, listen(listener, 1) == 0 else { let lastErrno = errno; throw SSIError("migrate", "bind @\(name): \(errnoDescription(lastErrno))") }
        var step: UnsafePointer<CChar>? = nil
        guard ssi_inject_unix_fd(pid, fd, name, stop ? 1 : 0, &step) == 0 else {
            let what = step.map { String(validatingCString: $0) ?? "?" } ?? "?"
            let lastErrno = errno
            throw SSIError("migrate", "giving process \(pid) its \(kind) stand-in on fd \(fd): \(what): \(errnoDescription(lastErrno))")
        }
        var p = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, 5000) > 0 else { throw SSIError("migrate", "process \(pid) did not connect its \(kind) stand-in") }
        let agentEnd = ssi_accept(listener)
        guard agentEnd >= 0 else { let lastErrno = errno; throw SSIError("migrate", "accept: \(errnoDescription(lastErrno))") }
        let resource = (try? FileSystem.readLink("/proc/\(pid)/fd/\(fd)")) ?? ""
        trace("process \(pid) fd \(fd): \(kind) stand-in \(resource)")
        return (agentEnd, resource)
    }

    /// criu restore for a process with a terminal: a keeper leads the
    /// session of the stand-in pty (its controlling terminal), runs criu in
    /// a group of its own with the pty as its stdio, and stays as long as
    /// the process. Returns the keeper's pid.
    /// Without a terminal (`tty` nil): a keeper that holds a process
    /// restored stopped (a subreaper, see ssi_job.subreaper).
    func restoreWithKeeper(_ args: [String], dir: String, tty: Int32?, fds: [Int32], readFrom: String) throws(SSIError) -> pid_t {
        loadCRIUModules()
        var status: [Int32] = [-1, -1]
        guard ssi_pipe(&status) == 0 else { let lastErrno = errno; throw SSIError("migrate", "pipe: \(errnoDescription(lastErrno))") }
        defer { close(status[0]) }
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { close(null) }
        let std = tty ?? null
        var spec = JobSpec(root: options.systemRoot, cwd: "/", argv: [Self.criu] + args + ["-o", dir + "/restore.log", "-v4"],
                           environment: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], fds: [std, std, std] + fds)
        spec.controllingTTY = tty == nil ? -1 : 0
        spec.subreaper = tty == nil ? 1 : 0
        spec.keeper = 2
        spec.statusFD = status[1]
        trace("criu (terminal keeper) " + args.joined(separator: " "))
        let keeper: pid_t
        do throws(SSIError) { keeper = try reaper.spawn(spec) } catch {
            close(status[1])
            throw error
        }
        close(status[1])
        var p = pollfd(fd: status[0], events: Int16(POLLIN), revents: 0)
        var code: UInt8 = 255
        // Less than the source waits for the answer (240 s), so that the
        // answer is criu's own error.
        if poll(&p, 1, 180_000) > 0, read(status[0], &code, 1) == 1, code == 0 {
            reaper.unwatch(keeper)
            return keeper
        }
        // What the keeper and its children were doing, for the message.
        let states = ProcessInspector.tree(root: keeper).map { p -> String in
            let stat = (try? FileSystem.readText("/proc/\(p)/stat")) ?? ""
            let state = stat.lastIndex(of: ")").map { String(stat[stat.index($0, offsetBy: 2)...].prefix(1)) } ?? "?"
            let wchan = (try? FileSystem.readText("/proc/\(p)/wchan")) ?? "?"
            return "\(p) \(ProcessInspector.command(p).prefix(40)) \(state) \(wchan)"
        }
        trace("terminal keeper \(keeper) gave no status: " + states.joined(separator: "; "))
        kill(keeper, SIGKILL)
        let logText = (try? FileSystem.readText(readFrom + "/restore.log")) ?? ""
        var errors = logText.lines().filter { $0.contains("Error") }.suffix(6).map { String($0) }
        if errors.isEmpty { errors = logText.lines().suffix(3).map { String($0) } }
        throw SSIError("migrate", "criu restore failed (status \(code); \(states.joined(separator: "; "))): " + (errors.isEmpty ? "no log in \(readFrom)/restore.log" : errors.joined(separator: " | ")))
    }

    func sendChunks(_ bytes: [UInt8], on c: SecureChannel) throws(SSIError) {
        var off = 0
        while off < bytes.count {
            let end = min(off + SecureChannel.maxPayload, bytes.count)
            try c.send(Wire.data, Array(bytes[off..<end]))
            off = end
        }
    }

    /// Sends an image file a chunk at a time (never whole in memory).
    func sendFile(_ path: String, as name: String, on c: SecureChannel) throws(SSIError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { let lastErrno = errno; throw SSIError("migrate", "\(path): \(errnoDescription(lastErrno))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { let lastErrno = errno; throw SSIError("migrate", "\(path): \(errnoDescription(lastErrno))") }
        let size = Int(st.st_size)
        try c.send(Fields("file", [("name", name), ("size", String(size))]))
        var buf = [UInt8](repeating: 0, count: SecureChannel.maxPayload)
        var sent = 0
        while sent < size {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress!, min($0.count, size - sent)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { let lastErrno = errno; throw SSIError("migrate", "reading \(path): \(n == 0 ? "it shrank" : errnoDescription(lastErrno))") }
            try c.send(Wire.data, Array(buf[0..<n]))
            sent += n
        }
    }

    /// Receives `size` bytes of an image into `path`, chunk by chunk.
    func receiveFile(size: Int, into path: String, from c: SecureChannel) throws(SSIError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { let lastErrno = errno; throw SSIError("migrate", "\(path): \(errnoDescription(lastErrno))") }
        defer { close(fd) }
        var got = 0
        while got < size {
            guard let (type, payload) = try c.receive(), type == Wire.data else {
                throw SSIError("migrate", "the image transfer broke off")
            }
            guard payload.count <= size - got else {
                throw SSIError("migrate", "the source sent more than the \(size) bytes it announced for \(path)")
            }
            do throws(SystemCallError) {
                try writeAll(fd, payload[...], name: path)
            } catch {
                throw SSIError("migrate", "receiving the images: \(error.description)", hint: "is the images' tmpfs (or /cluster/migrate) full?")
            }
            got += payload.count
        }
    }

    /// The most a stand-in's carried bytes can be: a pipe's buffer (1 MiB,
    /// see MadeStandIn), a relay's chunk in flight (256 KiB) and a
    /// terminal's line, with room to spare. The size comes from the peer:
    /// it is checked before anything is reserved.
    static let maxCarryBytes = 4 << 20

    func receiveChunks(size: Int, from c: SecureChannel) throws(SSIError) -> [UInt8] {
        guard size >= 0, size <= Self.maxCarryBytes else {
            throw SSIError("migrate", "the source announced \(size) carried bytes: the limit is \(Self.maxCarryBytes)",
                           hint: "the source agent is not of this version, or its message is damaged")
        }
        var out: [UInt8] = []
        out.reserveCapacity(size)
        while out.count < size {
            guard let (type, payload) = try c.receive(), type == Wire.data else {
                throw SSIError("migrate", "the image transfer broke off")
            }
            guard payload.count <= size - out.count else {
                throw SSIError("migrate", "the source sent more than the \(size) carried bytes it announced")
            }
            out += payload
        }
        return out
    }

    /// Everything readable now from a stand-in's process end.
    /// A device's stand-in (a socket to this agent, put in the process
    /// before a move that then failed) relayed to the device here, both
    /// ways, until the process closes it: reads and writes go on working;
    /// ioctls do not.
    func relayDevice(agentEnd: Int32, device: Int32, path: String) {
        trace("relaying \(path) to its stand-in here (the move failed)")
        let open = Locked(2)
        let done: @Sendable () -> Void = {
            if open.withLock({ n -> Int in n -= 1; return n }) == 0 { close(agentEnd); close(device) }
        }
        startThread {
            Self.copyStream(from: agentEnd, to: device)
            done()
        }
        startThread {
            // A device opened write-only fails its reads at once; the
            // other direction goes on.
            Self.copyStream(from: device, to: agentEnd)
            shutdown(agentEnd, Int32(SHUT_WR))
            done()
        }
    }

    /// Copies until end of file or an error on either side.
    static func copyStream(from: Int32, to: Int32) {
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(from, $0.baseAddress!, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return }
            do throws(SystemCallError) {
                try writeAll(to, buf[0..<n], name: "relay")
            } catch { return }
        }
    }

    func drain(_ fd: Int32, tty: Bool) -> [UInt8] {
        var saved = termios()
        let isTTY = tty && tcgetattr(fd, &saved) == 0
        if isTTY {
            // Non-canonical for a moment, so a half-typed line is readable.
            var raw = saved
            raw.c_lflag &= ~tcflag_t(ICANON)
            raw.c_cc.6 = 0   // VMIN
            raw.c_cc.5 = 0   // VTIME
            tcsetattr(fd, TCSANOW, &raw)
        }
        defer { if isTTY { tcsetattr(fd, TCSANOW, &saved) } }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 0) > 0, p.revents & Int16(POLLIN) != 0 else { break }
            let n = buf.withUnsafeMutableBytes { recvOrRead(fd, $0.baseAddress!, $0.count) }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return out
    }

    private func recvOrRead(_ fd: Int32, _ p: UnsafeMutableRawPointer, _ n: Int) -> Int {
        let r = recv(fd, p, n, Int32(MSG_DONTWAIT))
        if r < 0 && errno == ENOTSOCK {
            let flags = fcntl(fd, F_GETFL)
            _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
            defer { _ = fcntl(fd, F_SETFL, flags) }
            return read(fd, p, n)
        }
        return r
    }

    /// The stream's images live in their own tmpfs (large processes do
    /// not fit /run, a fifth of the RAM), mounted in the system's tree on
    /// first use, so that criu and this agent see the same directory.
    func prepareImageSpace() throws(SSIError) {
        let path = options.systemRoot + options.stateDirectory + "/migrate"
        try makeDirectory(path)
        if !Mount.isMountPoint(path) {
            do throws(SystemCallError) {
                try Mount.mount(source: "ssi-migrate", target: path, type: "tmpfs", flags: [.noSuid, .noDev], data: "mode=0700,size=75%")
            } catch {
                trace("no tmpfs for the images at \(path): \(error.description); they go to /run")
            }
        }
    }

    func makeDirectory(_ path: String) throws(SSIError) {
        do { try FileSystem.makeDirectories(path, mode: 0o700) } catch { throw SSIError("migrate", error.description) }
    }

    func removeTree(_ path: String) {
        for name in (try? FileSystem.list(path)) ?? [] { unlink(path + "/" + name) }
        rmdir(path)
    }

    // MARK: the target's side

    func restoreHere(_ req: Fields, from c: SecureChannel) throws(SSIError) {
        // The id names this move's image directory: NODE-PID-RANDOM, digits
        // and dashes, never a path (a peer's "../x" would have been one).
        guard let id = req["id"], !id.isEmpty, id.utf8.count <= 64, id.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || $0 == UInt8(ascii: "-") }),
              let pid = pid_t(req["pid"] ?? ""), pid > 0 else {
            throw SSIError("migrate", "bad restore request from node \(c.peerNode)")
        }
        let shared = req["images"]
        if let shared, !shared.hasPrefix(Self.rootImages + "/") || shared.contains("..") {
            throw SSIError("migrate", "images outside \(Self.rootImages): \(shared)")
        }
        // criu's path (in the system root) and this agent's to the same.
        let criuDir = shared ?? options.stateDirectory + "/migrate/" + id + ".in"
        let dir = options.systemRoot + criuDir
        if shared == nil {
            try prepareImageSpace()
            try makeDirectory(dir)
        } else if !FileSystem.exists(dir) {
            throw SSIError("migrate", "node \(localNode) does not see the images at \(criuDir): is \(Self.rootImages) a node-private path here?",
                           hint: "--through-root needs \(Self.rootImages) on the shared cluster root")
        }
        defer { if shared == nil { removeTree(dir) } }
        var carries: [String: [UInt8]] = [:]
        c.setReceiveTimeout(seconds: 120)
        while true {
            let f = try c.expectFields("the images")
            if f.op == "go" { break }
            let size = f.int("size") ?? 0
            if f.op == "file", let name = f["name"], !name.contains("/"), !name.hasPrefix(".") {
                // Written as it arrives: an image is as large as the
                // process's memory, and must not be held in ours too.
                try receiveFile(size: size, into: dir + "/" + name, from: c)
                continue
            }
            let bytes = try receiveChunks(size: size, from: c)
            if f.op == "carry", let r = f["resource"] { carries[r] = bytes }
        }
        var modes: [String: termios] = [:]
        for m in req.all("termios") {
            let f = m.split(separator: "|").map(String.init)
            if f.count == 2, let t = termiosFrom(hex: f[1]) { modes[f[0]] = t }
        }
        var made: [MadeStandIn] = []
        func closeAll() { for m in made { close(m.processEnd); close(m.agentEnd) } }
        do throws(SSIError) {
            for line in req.all("ship") {
                guard let spec = ShipSpec(line: line) else { throw SSIError("migrate", "bad stand-in \(line)") }
                if spec.kind == .tcp { continue }     // injected after the restore
                let m = try MadeStandIn.make(spec, termios: modes[spec.resource])
                if let bytes = carries[spec.resource], !bytes.isEmpty {
                    bytes.withUnsafeBytes { _ = write(m.agentEnd, $0.baseAddress!, $0.count) }
                }
                made.append(m)
            }
        } catch {
            closeAll()
            try c.send(Fields("error", [("message", error.message)]))
            return
        }
        // Pipes and unix sockets: --inherit-fd. A terminal cannot be
        // inherited (CRIU wants its session leader in the dump): criu runs
        // with the stand-in pty as its own terminal, in a session whose
        // leader (a keeper) stays as long as the process, and --shell-job
        // gives the process that session.
        let ttys = made.filter { $0.spec.kind == .tty }
        if Set(ttys.map(\.spec.channel)).count > 1 {
            closeAll()
            try c.send(Fields("error", [("message", "the process uses more than one terminal; only one can be shipped")]))
            return
        }
        let inherited = made.filter { $0.spec.kind != .tty }
        let tcp = req.all("ship").compactMap { ShipSpec(line: $0) }.filter { $0.kind == .tcp }
        var args = ["restore", "-D", criuDir, "--shell-job", "--restore-detached", "--manage-cgroups=ignore",
                    "--pidfile", criuDir + "/restored.pid"]
        // TCP: restored closed, stopped, then given its stand-in.
        if !tcp.isEmpty { args += ["--tcp-close", "--leave-stopped"] }
        for (i, m) in inherited.enumerated() { args += ["--inherit-fd", "fd[\(3 + i)]:\(m.spec.resource)"] }
        var keeper: pid_t = 0
        if !tcp.isEmpty && !ttys.isEmpty {
            closeAll()
            try c.send(Fields("error", [("message", "a process with both a terminal and a TCP connection cannot move yet")]))
            return
        }
        do throws(SSIError) {
            if let tty = ttys.first {
                keeper = try restoreWithKeeper(args, dir: criuDir, tty: tty.processEnd, fds: inherited.map(\.processEnd),
                                               readFrom: dir)
            } else if !tcp.isEmpty {
                // Left stopped for the injection: held by a keeper until
                // it runs again (see ssi_job.subreaper).
                keeper = try restoreWithKeeper(args, dir: criuDir, tty: nil, fds: inherited.map(\.processEnd), readFrom: dir)
            } else {
                try runCRIU(args, dir: criuDir, log: "restore.log", fds: inherited.map(\.processEnd), readFrom: dir)
            }
        } catch {
            // Whatever criu may have started under these PIDs (free here
            // before, checked by the source) goes: the source resumes it.
            for t in req.all("task").compactMap({ pid_t($0) }) + [pid] where FileSystem.exists("/proc/\(t)") {
                kill(t, SIGKILL)
            }
            closeAll()
            try c.send(Fields("error", [("message", error.message)]))
            return
        }
        reaper.watch(pid)
        var tcpStands: [StandIn] = []
        if !tcp.isEmpty {
            let tasks = req.all("task").compactMap { pid_t($0) }
            do throws(SSIError) {
                for (n, spec) in tcp.enumerated() {
                    let (agentEnd, resource) = try injectStandIn(pid: spec.pid, fd: spec.fd, name: "ssi-standin-\(id)-\(n)",
                                                                 stop: true, what: "TCP")
                    tcpStands.append(StandIn(channelID: spec.channel, home: spec.home, kind: .tcp, fd: agentEnd,
                                             resource: resource, log: { [weak self] in self?.trace($0) }))
                }
            } catch {
                for t in tasks { kill(t, SIGKILL) }
                if keeper > 0 { kill(keeper, SIGKILL) }
                tcpStands.forEach { close($0.fd) }
                closeAll()
                try c.send(Fields("error", [("message", error.message)]))
                return
            }
            for t in tasks { kill(t, SIGCONT) }
            // Running again: its keeper can go (it becomes our child).
            kill(keeper, SIGKILL)
            keeper = 0
        }
        for r in req.all("report") {
            let f = r.split(separator: "|").map(String.init)
            if f.count == 3, let p = pid_t(f[0]), let n = UInt32(f[1]) { exitReports.withLock { $0[p] = (n, f[2]) } }
        }
        let stands = made.map { m in
            StandIn(channelID: m.spec.channel, home: m.spec.home, kind: m.spec.kind, fd: m.agentEnd, resource: m.resource,
                    log: { [weak self] in self?.trace($0) })
        } + tcpStands
        for m in made { close(m.processEnd) }
        for s in stands where s.kind == .tty { s.keeper = keeper }
        stands.forEach { standIns.add($0) }
        try c.send(Fields("restored", [("pid", String(pid))]))
        trace("restored \(pid) (\(id)) with \(stands.count) stand-ins")
        // The source lets go of the homes' channels once it has our
        // answer; attaching waits for that.
        for s in stands {
            startThread { [self] in
                do throws(SSIError) { try s.start(connect: { (n: UInt32) throws(SSIError) -> SecureChannel in try self.connect(n) }) } catch {
                    trace("stand-in \(s.channelID): \(error.description)")
                }
            }
        }
        watchExit(pid, standIns: stands)
    }

    /// Reports a process's exit to its onnode session at home, once its
    /// output has gone home.
    func watchExit(_ pid: pid_t, standIns stands: [StandIn]) {
        startThread { [self] in
            guard let exit = reaper.wait(pid) else { return }
            if departed.current.contains(pid) { return }
            // Its terminal's keeper holds the pty open: it goes now, so the
            // relays see the end and home gets its terminal back.
            for s in stands where s.keeper > 0 { kill(s.keeper, SIGTERM) }
            guard let report = exitReports.withLock({ $0.removeValue(forKey: pid) }) else { return }
            // Let the output relays finish (bounded).
            for _ in 0..<250 {
                if stands.allSatisfy({ $0.kind == .pipeIn || $0.outFinished }) { break }
                Process.sleep(milliseconds: 40)
            }
            let (status, how): (Int32, String) = {
                switch exit {
                case .exited(let c): return (c, "")
                case .signaled(let s): return (128 + s, "killed by signal \(s)")
                }
            }()
            do throws(SSIError) {
                let c = try connect(report.node)
                defer { c.close() }
                try c.send(Fields("exited", [("session", report.session), ("status", String(status)), ("how", how)]))
                _ = try c.receiveFields()
            } catch {
                trace("exit of \(pid) not reported to node \(report.node): \(error.description)")
            }
        }
    }
}

extension StandIn {
    var outFinished: Bool { !kind.directions.contains("out") || stoppedDirections.contains("out") }
}

/// SSILinux.writeAll for bytes in an array (withUnsafeBytes does not
/// pass a typed error on).
func writeAll(_ fd: Int32, _ bytes: ArraySlice<UInt8>, name: String) throws(SystemCallError) {
    let failure: SystemCallError? = bytes.withUnsafeBytes { b in
        do throws(SystemCallError) { try SSILinux.writeAll(fd, b, name: name); return nil } catch { return error }
    }
    if let failure { throw failure }
}
