#if canImport(Glibc)
import Glibc
#endif
import CSSIShim
import SSICore
import SSILinux

/// One shipped object in a restore or run request: "RESOURCE|KIND|HOME|CHANNEL",
/// and "|PID|FD" after a `tcp` one (and only there).
struct ShipSpec: Equatable, Sendable {
    var resource: String
    var kind: ShipKind
    var home: UInt32
    var channel: String

    /// A TCP connection's holder: its stand-in is injected there.
    var pid: pid_t = 0
    var fd: Int32 = -1

    /// RESOURCE is escaped (`%` as `%25`, `|` as `%7C`): a node-local
    /// file's path may hold `|`.
    var line: String { "\(Self.escape(resource))|\(kind.rawValue)|\(home)|\(channel)" + (kind == .tcp ? "|\(pid)|\(fd)" : "") }
    init(resource: String, kind: ShipKind, home: UInt32, channel: String) {
        self.resource = resource
        self.kind = kind
        self.home = home
        self.channel = channel
    }
    /// Exactly what `line` writes: a bad or missing holder of a `tcp`
    /// spec is a refusal, not a stand-in injected into pid 0.
    init?(line: String) {
        let f = line.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
        guard f.count >= 4, let k = ShipKind(rawValue: f[1]), f.count == (k == .tcp ? 6 : 4), let h = UInt32(f[2]),
              !f[0].isEmpty, !f[3].isEmpty, let resource = Self.unescape(f[0]) else { return nil }
        self.init(resource: resource, kind: k, home: h, channel: f[3])
        if k == .tcp {
            guard let p = pid_t(f[4]), p > 0, let d = Int32(f[5]), d >= 0 else { return nil }
            pid = p
            fd = d
        }
    }
}

extension ShipSpec {
    static func escape(_ s: String) -> String { PercentEscaping.shipResources.escape(s) }

    /// nil for a `%` that is not an escape.
    static func unescape(_ s: String) -> String? { PercentEscaping.shipResources.unescape(s, strict: true) }
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

    /// Moves `pid` (with its tree when `tree`) to `target`. Answers on
    /// `reply`: progress lines, then "migrated" or "error".
    /// `throughRoot`: CRIU writes the images into the cluster root
    /// (/cluster/migrate) and the target restores from there, instead
    /// of the agents' stream (measured both ways: BENCHMARKS.md).
    /// The plan decides from what this node shows now (or refuses, with
    /// every reason); the transaction then moves it, or rolls back and
    /// the process runs on here.
    func migrate(pid: pid_t, to target: UInt32, tree: Bool, uid: uid_t, throughRoot: Bool = false, precopy: Bool = true,
                 reply: any MessageChannel) throws(SSIError) {
        let started = Process.now()
        let request = MigrationRequest(pid: pid, target: target, tree: tree, uid: uid, throughRoot: throughRoot, precopy: precopy)
        let facts = MigrationFacts.read(request, agent: self)
        let plan = try MigrationPlan.make(request, facts: facts)
        // What the plan was made from: a move that ships nothing its
        // process needed is read from here afterwards.
        trace("moving \(pid) to node \(target): tree \(plan.tasks.map(String.init).joined(separator: " ")); "
              + facts.descriptorSummary + "; shipping " + (plan.shipped.isEmpty ? "nothing"
                : plan.shipped.map { "fd \($0.fd) of \($0.pid) (\($0.resource), \($0.kind.rawValue))" }.joined(separator: ", ")))
        guard migrating.withLock({ $0.insert(pid).inserted }) else { throw MigrationPlan.alreadyMoving(pid) }
        defer { _ = migrating.withLock { $0.remove(pid) } }
        let move = MigrationTransaction(plan: plan, id: MigrationTransaction.newID(node: localNode, pid: pid),
                                        systemRoot: options.systemRoot, stateDirectory: options.stateDirectory,
                                        host: self, checkpointer: CRIU(agent: self), target: RemoteTarget(agent: self, node: target))
        do throws(MigrationFailure) { try move.run() } catch { throw error.error }
        let ms = { (a: Double, b: Double) in Int((b - a) * 1000) }
        let rounds = move.rounds.map { "\($0.bytes >> 20) MB in \($0.dumpMs)+\($0.sendMs) ms" }
        trace("migrated \(pid) to node \(target): freeze \(ms(move.freezeStart, move.restored)) ms (dump \(ms(move.freezeStart, move.dumped)) ms, \(move.frozenBytes >> 20) MB, "
              + "restore \(move.restoreMs) ms); pre-copy rounds: " + (rounds.isEmpty ? "none" : rounds.joined(separator: ", "))
              + (move.answerLost.map { "; \($0)" } ?? ""))
        try reply.send(LocalReply.migrated(.init(pid: pid, node: target, name: plan.targetName, freezeMs: ms(move.freezeStart, move.restored),
                                                 dumpMs: ms(move.freezeStart, move.dumped), totalMs: ms(started, Process.now()),
                                                 shipped: move.specs.count, restoreMs: move.restoreMs, rounds: move.rounds.count,
                                                 precopyBytes: move.rounds.reduce(0) { $0 + $1.bytes }, frozenBytes: move.frozenBytes,
                                                 note: move.precopyNote ?? "")).encode())
    }

    /// Gives a process a stand-in for its descriptor `fd` (a restored,
    /// stopped process's TCP connection; a device before a dump): a unix
    /// socket connected to this agent, put on the descriptor by injected
    /// syscalls (ssi_inject_unix_fd). `stop`: the process was stopped and
    /// stays so. Returns the agent's end and the process end's resource name.
    func injectStandIn(pid: pid_t, fd: Int32, name: String, stop: Bool, what kind: String) throws(SSIError) -> (Int32, String) {
        let listener = try abstractListener(name)
        defer { close(listener) }
        var step: UnsafePointer<CChar>? = nil
        guard ssi_inject_unix_fd(pid, fd, name, stop ? 1 : 0, &step) == 0 else {
            let what = step.map { String(validatingCString: $0) ?? "?" } ?? "?"
            let lastErrno = errno
            throw SSIError("migrate", "giving process \(pid) its \(kind) stand-in on fd \(fd): \(what): \(errnoDescription(lastErrno))")
        }
        var p = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        guard pollRetrying(&p, timeoutMs: 5000) > 0 else { throw SSIError("migrate", "process \(pid) did not connect its \(kind) stand-in") }
        let agentEnd = ssi_accept(listener)
        guard agentEnd >= 0 else { let lastErrno = errno; throw SSIError("migrate", "accept: \(errnoDescription(lastErrno))") }
        let resource = (try? FileSystem.readLink("/proc/\(pid)/fd/\(fd)")) ?? ""
        trace("process \(pid) fd \(fd): \(kind) stand-in \(resource)")
        return (agentEnd, resource)
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
        try c.send(RestoreStep.file(name: name, size: size).encode())
        var buf = [UInt8](repeating: 0, count: SecureChannel.maxPayload)
        var sent = 0
        while sent < size {
            let n: Int
            do throws(SystemCallError) {
                n = try syscall("reading \(path)") { buf.withUnsafeMutableBytes { read(fd, $0.baseAddress!, min($0.count, size - sent)) } }
            } catch { throw SSIError("migrate", error.description) }
            guard n > 0 else { throw SSIError("migrate", "reading \(path): it shrank") }
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
            guard case .done(let n) = attempt({ buf.withUnsafeMutableBytes { read(from, $0.baseAddress!, $0.count) } }),
                  n > 0 else { return }
            do throws(SystemCallError) {
                try writeAll(to, buf[0..<n], name: "relay")
            } catch { return }
        }
    }

    static func drain(_ fd: Int32, tty: Bool) -> [UInt8] {
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
            guard pollRetrying(&p, timeoutMs: 0) > 0, p.revents & Int16(POLLIN) != 0 else { break }
            let n = buf.withUnsafeMutableBytes { recvOrRead(fd, $0.baseAddress!, $0.count) }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return out
    }

    private static func recvOrRead(_ fd: Int32, _ p: UnsafeMutableRawPointer, _ n: Int) -> Int {
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

    /// Removes an image directory and the pre-copy rounds' directories in
    /// it (a symlink, such as criu's `parent`, is removed, not followed).
    func removeTree(_ path: String, depth: Int = 0) {
        for name in (try? FileSystem.list(path)) ?? [] where unlink(path + "/" + name) != 0 && errno == EISDIR && depth < 2 {
            removeTree(path + "/" + name, depth: depth + 1)
        }
        rmdir(path)
    }

    /// Punches out the pages of a round the target has: the files keep
    /// their size and their page maps (criu's next round and the final
    /// dump read a parent's page map to know which pages it holds, never
    /// its pages), and the tmpfs gives their memory back.
    func releasePages(in dir: String) {
        for name in (try? FileSystem.list(dir)) ?? [] where name.hasPrefix("pages-") && name.hasSuffix(".img") {
            let fd = open(dir + "/" + name, O_RDWR | O_CLOEXEC | O_NOFOLLOW)
            guard fd >= 0 else { continue }
            var st = stat()
            if fstat(fd, &st) == 0, st.st_size > 0, ssi_punch_hole(fd, Int64(st.st_size)) != 0 {
                let lastErrno = errno
                trace("\(dir)/\(name): its pages stay in memory: fallocate: \(errnoDescription(lastErrno))")
            }
            close(fd)
        }
    }

    /// The bytes of memory pages in an image directory: criu's pages-N.img.
    func pageBytes(in dir: String) -> Int {
        ((try? FileSystem.list(dir)) ?? []).filter { $0.hasPrefix("pages-") && $0.hasSuffix(".img") }.reduce(0) { sum, name in
            var st = stat()
            return sum + (lstat(dir + "/" + name, &st) == 0 ? Int(st.st_size) : 0)
        }
    }

    // MARK: the target's side

    /// `req` was checked by `RestoreRequest.decode`: its id is digits and
    /// dashes (never a path), its images under `rootImages`.
    /// `rounds`: the pre-copy rounds received on this connection
    /// (`precopyHere`), in pre-1... under the image directory already.
    func restoreHere(_ req: RestoreRequest, from c: SecureChannel, rounds: Int = 0) throws(SSIError) {
        let criu: any Checkpointer = CRIU(agent: self)
        let id = req.id, pid = req.pid
        let shared = req.images
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
        if isDeputy(pid) {
            throw SSIError("migrate", "process \(pid) has its deputy here, on node \(localNode) (its home), which holds its PID for its parent: it cannot move back home",
                           hint: "move it to another node")
        }
        moves.begin(id)
        // Whatever way this ends before the claim below, nothing of the
        // move runs here (a claimed one stays recorded).
        defer { moves.end(id) }
        if rounds > 0 {
            // The final dump's pages are the ones dirtied since the last
            // round; criu finds the rest through `parent`.
            guard symlink(MigrationTransaction.roundDirectory(rounds), dir + "/parent") == 0 else {
                let lastErrno = errno
                throw SSIError("migrate", "\(dir)/parent: \(errnoDescription(lastErrno))")
            }
        }
        var carries: [String: [UInt8]] = [:]
        c.setReceiveTimeout(seconds: 120)
        transfer: while true {
            let f = try c.expectFields("the images")
            let step: RestoreStep
            do throws(ProcMessageError) { step = try RestoreStep.decode(f) } catch {
                throw SSIError("migrate", "the restore transfer from node \(c.peerNode): \(error.description)", hint: error.hint)
            }
            switch step {
            case .go: break transfer
            case .file(let name, let size):
                // Written as it arrives: an image is as large as the
                // process's memory, and must not be held in ours too.
                try receiveFile(size: size, into: dir + "/" + name, from: c)
            case .carry(let resource, let size):
                carries[resource] = try receiveChunks(size: size, from: c)
            }
        }
        var modes: [String: termios] = [:]
        for m in req.termios {
            if let t = termiosFrom(hex: m.hex) { modes[m.resource] = t }
        }
        // The rest is one transaction, as the source's is: each effect is
        // registered, as it is made, with what undoes it; a refusal or a
        // failure runs them in reverse and answers the source with the
        // reason (it resumes its own copy). Nothing after the `restored`
        // answer fails.
        var undo: [(what: String, action: () -> Void)] = []
        func refuse(_ message: String) throws(SSIError) {
            var undone: [String] = []
            while let step = undo.popLast() {
                step.action()
                undone.append(step.what)
            }
            trace("restore \(id) refused: \(message); undone: " + (undone.isEmpty ? "nothing" : undone.joined(separator: ", ")))
            try c.send(PeerReply.error(message).encode())
        }
        // Stand-ins for what stays at home, with the bytes carried over.
        var made: [MadeStandIn] = []
        for spec in req.ships where spec.kind != .tcp {     // TCP: injected after the restore
            let m: MadeStandIn
            do throws(SSIError) { m = try MadeStandIn.make(spec, termios: modes[spec.resource]) } catch {
                return try refuse(error.message)
            }
            undo.append(("the stand-in for \(spec.channel)", { close(m.processEnd); close(m.agentEnd) }))
            made.append(m)
        }
        // Pipes and unix sockets: --inherit-fd. A terminal cannot be
        // inherited (CRIU wants its session leader in the dump): criu runs
        // with the stand-in pty as its own terminal, in a session whose
        // leader (a keeper) stays as long as the process, and --shell-job
        // gives the process that session.
        let ttys = made.filter { $0.spec.kind == .tty }
        let tcp = req.ships.filter { $0.kind == .tcp }
        if Set(ttys.map(\.spec.channel)).count > 1 {
            return try refuse("the process uses more than one terminal; only one can be shipped")
        }
        if !tcp.isEmpty && !ttys.isEmpty {
            return try refuse("a process with both a terminal and a TCP connection cannot move yet")
        }
        let inherited = made.filter { $0.spec.kind != .tty }
        var args = ["restore", "-D", criuDir, "--shell-job", "--restore-detached", "--manage-cgroups=ignore",
                    "--pidfile", criuDir + "/restored.pid"]
        // TCP: restored closed, stopped, then given its stand-in.
        if !tcp.isEmpty { args += ["--tcp-close", "--leave-stopped"] }
        for (i, m) in inherited.enumerated() { args += ["--inherit-fd", "fd[\(3 + i)]:\(m.spec.resource)"] }
        // Whatever criu may have started under these PIDs (free here
        // before, checked by the source) goes if the restore fails.
        let restoredTasks = req.tasks + [pid]
        undo.append(("the restored tasks", {
            for t in restoredTasks where FileSystem.exists("/proc/\(t)") { kill(t, SIGKILL) }
        }))
        var keeper: pid_t = 0
        let restoreStarted = Process.now()
        do throws(SSIError) {
            if let tty = ttys.first {
                keeper = try criu.restoreWithKeeper(args, imageDirectory: criuDir, tty: tty.processEnd, fds: inherited.map(\.processEnd),
                                                    readFrom: dir)
            } else if !tcp.isEmpty {
                // Left stopped for the injection: held by a keeper until
                // it runs again (see ssi_job.subreaper).
                keeper = try criu.restoreWithKeeper(args, imageDirectory: criuDir, tty: nil, fds: inherited.map(\.processEnd), readFrom: dir)
            } else {
                try criu.restore(args, imageDirectory: criuDir, fds: inherited.map(\.processEnd), readFrom: dir)
            }
        } catch {
            return try refuse(error.message)
        }
        reaper.watch(pid)
        if keeper > 0 {
            let k = keeper
            undo.append(("the keeper \(k)", { kill(k, SIGKILL) }))
        }
        var tcpStands: [StandIn] = []
        if !tcp.isEmpty {
            for (n, spec) in tcp.enumerated() {
                let injected: (Int32, String)
                do throws(SSIError) {
                    injected = try injectStandIn(pid: spec.pid, fd: spec.fd, name: "ssi-standin-\(id)-\(n)", stop: true, what: "TCP")
                } catch {
                    return try refuse(error.message)
                }
                let agentEnd = injected.0
                undo.append(("the TCP stand-in for \(spec.channel)", { close(agentEnd) }))
                tcpStands.append(StandIn(channelID: spec.channel, home: spec.home, kind: .tcp, fd: agentEnd,
                                         resource: injected.1, log: { [weak self] in self?.trace($0) }))
            }
        }
        // The commit point, shared with a source that lost our answer and
        // asked (`settle`): restored here, or given up and undone.
        let restoreMs = Int((Process.now() - restoreStarted) * 1000)
        guard moves.claim(id, pid: pid, ms: restoreMs) else {
            return try refuse("node \(c.peerNode) gave the move up while it was being restored here (it resumes its own copy)")
        }
        if !tcp.isEmpty {
            // Commit from here on: nothing below fails.
            for t in req.tasks { kill(t, SIGCONT) }
            // Running again: its keeper can go (it becomes our child).
            kill(keeper, SIGKILL)
            keeper = 0
        }
        for r in req.reports { exitReports.withLock { $0[r.pid] = (r.node, r.session) } }
        if let home = req.deputy { adoptDeputyHome(pid, home: home) }
        // Just arrived: the leveler here leaves it alone for a while (it
        // would otherwise move back a process another node just sent).
        levelMoves.withLock { $0[pid] = Process.now() }
        let stands = made.map { m in
            let s = StandIn(channelID: m.spec.channel, home: m.spec.home, kind: m.spec.kind, fd: m.agentEnd, resource: m.resource,
                            log: { [weak self] in self?.trace($0) })
            // The carried bytes are the relay's first: written into the
            // pipe here, up to 4 MiB would block on its 1 MiB buffer
            // before anything reads it.
            if let bytes = carries[m.spec.resource] { s.carry.withLock { $0 = bytes } }
            // The tree's processes that may read the terminal's slave.
            var name = [CChar](repeating: 0, count: 64)
            if m.spec.kind == .tty, ssi_pty_slave_name(m.agentEnd, &name, name.count) == 0 {
                let slave = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self), tasks = req.tasks
                s.waitingReader = { ProcessInspector.sleepsInRead(of: slave, among: tasks) }
            }
            return s
        } + tcpStands
        for m in made { close(m.processEnd) }
        for s in stands where s.kind == .tty { s.keeper = keeper }
        stands.forEach { standIns.add($0) }
        // If this answer is lost, the source asks `settle` and gets it again.
        try? c.send(PeerReply.restored(pid: pid, ms: restoreMs).encode())
        trace("restored \(pid) (\(id)) with \(stands.count) stand-ins")
        // criu's log of the last restore (-v4: each line timed), kept for
        // `bench/migrate`'s breakdown of the restore; the images go.
        try? FileSystem.copyFile(dir + "/restore.log", to: options.stateDirectory + "/last-restore.log", mode: 0o600)
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

    /// A move's pre-copy rounds (PROTOCOLS.md 3.10): each round's images
    /// into pre-N under the move's image directory, linked to the round
    /// before as criu links them (`parent`), then the move's restore on
    /// the same connection. Whatever ends the connection before the
    /// restore (the source gave up, failed or died) removes the rounds.
    func precopyHere(id: String, from c: SecureChannel) throws(SSIError) {
        let dir = options.systemRoot + options.stateDirectory + "/migrate/" + id + ".in"
        try prepareImageSpace()
        try makeDirectory(dir)
        defer { removeTree(dir) }
        do throws(SSIError) { try receiveRounds(id: id, into: dir, from: c) } catch {
            trace("pre-copy of \(id) dropped: \(error.message)")
            throw error
        }
    }

    private func receiveRounds(id: String, into dir: String, from c: SecureChannel) throws(SSIError) {
        var round = 0
        while true {
            // A round's pre-dump on the source (or its final dump) comes
            // between two messages: waited for while the source is a
            // member, so that a source that died drops its rounds here
            // once the membership sees it gone, not after a timeout.
            try awaitMember(c, what: "the pre-copy of \(id)", seconds: 600)
            c.setReceiveTimeout(seconds: 120)
            let f = try c.expectFields("a pre-copy round")
            let step: PrecopyStep
            do throws(ProcMessageError) { step = try PrecopyStep.decode(f, after: round) } catch {
                throw SSIError("migrate", "the pre-copy from node \(c.peerNode): \(error.description)", hint: error.hint)
            }
            switch step {
            case .round(let n):
                let roundDir = dir + "/" + MigrationTransaction.roundDirectory(n)
                try makeDirectory(roundDir)
                if n > 1, symlink("../" + MigrationTransaction.roundDirectory(n - 1), roundDir + "/parent") != 0 {
                    let lastErrno = errno
                    throw SSIError("migrate", "\(roundDir)/parent: \(errnoDescription(lastErrno))")
                }
                round = n
                trace("pre-copy of \(id): round \(n) from node \(c.peerNode)")
            case .file(let name, let size):
                try receiveFile(size: size, into: dir + "/" + MigrationTransaction.roundDirectory(round) + "/" + name, from: c)
            case .restore(let req):
                guard req.id == id, req.images == nil else {
                    throw SSIError("migrate", "node \(c.peerNode) sent the restore of move \(req.id) after the pre-copy of \(id)")
                }
                trace("pre-copy of \(id): \(round) rounds received")
                return try restoreHere(req, from: c, rounds: round)
            }
        }
    }

    /// Waits until `c` has something to read, for at most `seconds`,
    /// while its peer is a member (or out of the membership for less than
    /// the departure grace).
    func awaitMember(_ c: SecureChannel, what: String, seconds: Int) throws(SSIError) {
        var downSince: Double?
        for _ in 0..<max(1, seconds / 2) {
            var p = pollfd(fd: c.fd, events: Int16(POLLIN), revents: 0)
            if pollRetrying(&p, timeoutMs: 2000) != 0 { return }
            guard !peerDeparted(c.peerNode, downSince: &downSince) else {
                throw SSIError("migrate", "node \(c.peerNode) left the cluster during \(what)")
            }
        }
        throw SSIError("migrate", "node \(c.peerNode) sent nothing for \(seconds) s during \(what)")
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
            let report = exitReports.withLock({ $0.removeValue(forKey: pid) })
            let hasDeputy = deputyHomes.withLock { $0[pid] } != nil
            guard report != nil || hasDeputy else { return }
            // Let the output relays finish (bounded: 60 s; a parent that
            // goes on when its child ended, as gcc reads the assembly its
            // cc1 wrote, must find all of it).
            for _ in 0..<1500 {
                if stands.allSatisfy({ $0.kind == .pipeIn || $0.outFinished }) { break }
                Process.sleep(milliseconds: 40)
            }
            if hasDeputy {
                switch exit {
                case .exited(let c): self.report(.exited(code: c & 0xff), of: pid)
                case .signaled(let s): self.report(.killed(signal: s), of: pid)
                }
            }
            guard let report else { return }
            let (status, how): (Int32, String) = {
                switch exit {
                case .exited(let c): return (c, "")
                case .signaled(let s): return (128 + s, "killed by signal \(s)")
                }
            }()
            do throws(SSIError) {
                let c = try connect(report.node)
                defer { c.close() }
                try c.send(PeerRequest.exited(session: report.session, status: status, how: how).encode())
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


/// What the target knows of the restores it took part in, for a source
/// that lost the answer (`PeerRequest.settle`). The one rule: a move is
/// either restored here (and the source must retire its copy) or given up
/// here (and the source resumes its own), decided under one lock, so a
/// lost answer never leaves two copies running.
final class MoveRecords: @unchecked Sendable {
    enum State: Equatable, Sendable {
        case restoring
        case restored(pid: pid_t, ms: Int)
        /// The source asked while the restore ran: it resumed its own copy.
        case abandoned
    }

    private let records = Locked<[String: (state: State, at: Double)]>([:])
    /// How long an outcome is kept for a late question, and how many.
    static let keepSeconds = 600.0
    static let limit = 256

    func begin(_ id: String, now: Double = Process.now()) {
        records.withLock { r in
            r = r.filter { now - $0.value.at < Self.keepSeconds }
            if r.count >= Self.limit, let oldest = r.min(by: { $0.value.at < $1.value.at }) { r[oldest.key] = nil }
            r[id] = (.restoring, now)
        }
    }

    /// The restore succeeded: true if it stands (the source will be told
    /// `restored`), false if the source gave it up meanwhile (undo it).
    func claim(_ id: String, pid: pid_t, ms: Int, now: Double = Process.now()) -> Bool {
        records.withLock { r in
            if r[id]?.state == .abandoned { return false }
            r[id] = (.restored(pid: pid, ms: ms), now)
            return true
        }
    }

    /// The restore failed or was undone here: nothing of it runs.
    func end(_ id: String) {
        records.withLock { r in
            if case .restored? = r[id]?.state { return }
            r[id] = nil
        }
    }

    /// The answer to `settle`.
    func settle(_ id: String) -> PeerReply {
        records.withLock { r -> PeerReply in
            switch r[id]?.state {
            case .restored(let pid, let ms)?:
                return .restored(pid: pid, ms: ms)
            case .restoring?:
                r[id]?.state = .abandoned
                return .error("the restore of \(id) was still going on here: given up, it will be undone")
            case .abandoned?:
                return .error("the restore of \(id) was given up here")
            case nil:
                return .error("no restore of \(id) runs here")
            }
        }
    }
}
