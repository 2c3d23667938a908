#if canImport(Glibc)
import Glibc
#endif
import CSSIShim
import SSICore
import SSILinux

/// The phases of a move, in order. Each one's effects are undone, in
/// reverse, by the one rollback if a later step fails; commit does not fail.
enum MigrationPhase: String, Sendable, CaseIterable {
    /// The target's PIDs checked, the image directory made, home channels
    /// opened for what stays here (devices get their injected stand-ins).
    case prepare
    /// Pre-copy rounds: criu pre-dump while the tree runs, each round's
    /// pages sent to the target (the first all of them, then those
    /// dirtied since), until the rounds stop shrinking.
    case precopy
    /// criu dump (the tree stays here, stopped), the frozen tree checked
    /// again, stand-ins from an earlier move paused and drained.
    case dump
    /// The images and carried bytes sent; the target's restore answer.
    case transfer
    /// The target runs it: the stopped original goes.
    case commit
}

/// A move that failed and was rolled back: the phase it failed in and
/// the error as the user sees it (its words do not name the phase:
/// they are the ones users and the VM tests know).
struct MigrationFailure: Error {
    var phase: MigrationPhase
    var error: SSIError
}

/// The source node's side of a move, as the transaction touches it:
/// processes, descriptors, the agent's registries. The agent is the
/// production implementation (below); tests give a fake.
protocol MigrationHost: AnyObject {
    var localNode: UInt32 { get }
    var homes: HomeRegistry { get }
    var standIns: StandInRegistry { get }
    func trace(_ line: String)
    /// Makes the image directory `dir` (the agent's path); the stream's
    /// tmpfs first unless the images go through the cluster root.
    func makeImageDirectory(_ dir: String, throughRoot: Bool) throws(SSIError)
    /// Removes it, with its pre-copy rounds' directories.
    func removeImageDirectory(_ dir: String)
    /// The bytes of memory pages in image directory `dir` (its pages-*.img).
    func pageBytes(in dir: String) -> Int
    /// Frees the memory of a round's pages once the target has them.
    func releasePages(in dir: String)
    /// The agent's own copy of a process's descriptor (pidfd_getfd), or
    /// -1 and the errno.
    func takeCopy(pid: pid_t, fd: Int32) -> (fd: Int32, errno: Int32)
    /// See ProcAgent.injectStandIn.
    func injectStandIn(pid: pid_t, fd: Int32, name: String, stop: Bool, what kind: String) throws(SSIError) -> (Int32, String)
    /// See ProcAgent.relayDevice.
    func relayDevice(agentEnd: Int32, device: Int32, path: String)
    /// The process and its descendants, parents first.
    func processTree(root: pid_t) -> [pid_t]
    func processStatus(_ pid: pid_t) -> ProcessStatus?
    /// SIGCONT to each: they run on here.
    func resumeProcesses(_ tasks: [pid_t])
    /// Where an onnode session waits for `pid`'s exit, if one does.
    func exitReport(_ pid: pid_t) -> (node: UInt32, session: String)?
    /// The target runs them: they are killed here, without counting as
    /// exits, and their exit reports are the target's now.
    func retireProcesses(_ tasks: [pid_t])
    /// Where the moved process's deputy is: this node for a process that
    /// moves from its home, its home for one that moves on, nil for an
    /// onnode command (its session gets its exit).
    func deputyHome(of pid: pid_t) -> UInt32?
    /// Registers the deputy-to-be of `pid` (owner `uid`), whose process
    /// runs on `node` once restored; `forgetDeputy` undoes it.
    func expectDeputy(pid: pid_t, uid: uid_t, node: UInt32)
    func forgetDeputy(_ pid: pid_t)
    /// The stopped original becomes its deputy: nil, or why not.
    func becomeDeputy(_ pid: pid_t, moveID: String, shippedTTY: Bool) -> String?
    /// Freezes the tree of `pid` in a cgroup of its own for move `id`
    /// (TreeFreezer): criu's path to that cgroup, or nil when this node
    /// cannot (the dump then stops it, as criu does by itself).
    func freezeTree(_ pid: pid_t, moveID: String) -> String?
    /// A failed move: the frozen tree runs on where it was.
    func thawTree(moveID: String)
    /// A committed move: the deputy (if one was made) back in its own
    /// cgroup, and the move's cgroup removed.
    func releaseTree(moveID: String, deputy: pid_t?)
}

/// The node a move goes to. `RemoteTarget` talks to its agent.
protocol MigrationTarget {
    var node: UInt32 { get }
    /// The command holding `pid` on the target; nil when it is free (or
    /// the target could not be reached: the restore then says so).
    func commandHolding(_ pid: pid_t) throws(SSIError) -> String?
    /// One pre-copy round (PROTOCOLS.md 3.10): the image files of
    /// `imageDirectory`, round `round` of move `id`, on the move's
    /// connection (opened by the first round).
    func sendRound(_ round: Int, id: String, imageDirectory: String) throws(SSIError)
    /// The restore (PROTOCOLS.md 3.9), on the rounds' connection if they
    /// opened one: `request`, the carried bytes, the image files of
    /// `imageDirectory` unless `sendImages` is false (they go through the
    /// cluster root), "go"; the target's answer.
    func restore(_ request: Fields, carries: [(resource: String, bytes: [UInt8])], imageDirectory: String,
                 sendImages: Bool) throws(SSIError) -> Fields
    /// Closes the move's connection: a target that did not restore yet
    /// drops the rounds it received.
    func close()
    /// How move `id` ended on the target, asked on a new connection when
    /// the restore's answer was lost: its `restored` answer, or why not
    /// (a restore still running there is given up); nil if the target
    /// cannot be reached.
    func settle(id: String) -> Fields?
}

/// One pre-copy round as the source saw it: the pages it carried, the
/// pre-dump's and the transfer's time.
struct PrecopyRound: Equatable, Sendable {
    var bytes: Int
    var dumpMs: Int
    var sendMs: Int
}

/// One move of a planned tree: prepare, dump, transfer, commit. Every
/// effect on this node is registered, as it is made, with what undoes it;
/// a failure in any phase runs those in reverse (`rollback`), so the tree
/// runs on here with its descriptors as they were (a device keeps its
/// injected stand-in, relayed here), and the error says why.
final class MigrationTransaction {
    let plan: MigrationPlan
    let id: String
    /// The images' directory as criu sees it (in the system's root), and
    /// as the agent does.
    let criuDir: String
    let dir: String
    let host: any MigrationHost
    let checkpointer: any Checkpointer
    let target: any MigrationTarget
    let clock: () -> Double

    /// The phase running or that failed, and the phases done.
    private(set) var phase = MigrationPhase.prepare
    private(set) var done: [MigrationPhase] = []
    /// What the rollback undid, in order (for the log and the tests).
    private(set) var undone: [String] = []
    private var undo: [(what: String, action: () -> Void)] = []

    /// The stand-ins' description for the target, in channel order.
    private(set) var specs: [ShipSpec] = []
    /// The tree: as planned, then as CRIU froze it.
    private(set) var tasks: [pid_t]
    private var frozen = false
    /// criu's path to the cgroup the tree is frozen in, if it is.
    private(set) var freezeCgroup: String?
    private var ttyModes: [String: String] = [:]
    private var oldStandIns: [(standIn: StandIn, pid: pid_t, fd: Int32)] = []
    /// Devices whose descriptors became sockets to this agent: the
    /// agent's end, its own copy of the device, and the device's path.
    private var devices: [(agentEnd: Int32, device: Int32, path: String)] = []
    private var carries: [String: [UInt8]] = [:]
    private(set) var freezeStart = 0.0, dumped = 0.0, restored = 0.0
    /// The pre-copy rounds done (their directories are pre-1, pre-2...
    /// under the image directory); why there were none when pre-copy was
    /// asked for and could not run.
    private(set) var rounds: [PrecopyRound] = []
    private(set) var precopyNote: String?
    /// The target's own restore time, from its answer (0: not told).
    private(set) var restoreMs = 0
    /// Where the process's deputy is (see MigrationHost.deputyHome).
    private(set) var deputyHome: UInt32?
    /// Why the original did not become a deputy here, when it should have
    /// (it was killed instead: its parent saw it die).
    private(set) var deputyNote: String?
    /// The pages the final dump carried (with pre-copy: those dirtied
    /// since the last round).
    private(set) var frozenBytes = 0

    /// When the rounds stop: at most this many; once a round carries no
    /// more than `settledBytes` (the final dump's share is then small);
    /// or once a round is not at least a fifth smaller than the one
    /// before (the process dirties its memory about as fast as it goes:
    /// more rounds would not shorten the freeze).
    static let maxRounds = 6
    static let settledBytes = 4 << 20

    init(plan: MigrationPlan, id: String, systemRoot: String, stateDirectory: String, host: any MigrationHost,
         checkpointer: any Checkpointer, target: any MigrationTarget, clock: @escaping () -> Double = { Process.now() }) {
        self.plan = plan
        self.id = id
        // Through the root: the path as criu (in the system root) and as
        // this agent (in the agents root, through /proc/1/root) see it.
        criuDir = plan.request.throughRoot ? ProcAgent.rootImages + "/" + id : stateDirectory + "/migrate/" + id
        dir = systemRoot + criuDir
        self.host = host
        self.checkpointer = checkpointer
        self.target = target
        self.clock = clock
        tasks = plan.tasks
    }

    /// A move's id: NODE-PID-RANDOM (the target's image directory, the
    /// home channels' prefix).
    static func newID(node: UInt32, pid: pid_t) -> String { "\(node)-\(pid)-\(UInt32.random(in: 0...UInt32.max))" }

    /// Runs the phases. On a failure everything done so far is undone,
    /// in reverse, before the error is thrown.
    func run() throws(MigrationFailure) {
        do throws(SSIError) {
            phase = .prepare
            try prepare()
            done.append(.prepare)
            phase = .precopy
            try precopy()
            done.append(.precopy)
            phase = .dump
            try dump()
            done.append(.dump)
            phase = .transfer
            try transfer()
            done.append(.transfer)
        } catch {
            rollback(error)
            throw MigrationFailure(phase: phase, error: error)
        }
        phase = .commit
        commit()
        done.append(.commit)
    }

    private func onRollback(_ what: String, _ action: @escaping () -> Void) { undo.append((what, action)) }

    /// The one rollback: what the phases did, undone in reverse.
    private func rollback(_ error: SSIError) {
        while let step = undo.popLast() {
            step.action()
            undone.append(step.what)
        }
        host.trace("moving \(plan.pid) to node \(target.node) failed in the \(phase.rawValue) phase (\(error.message)); undone: "
                   + (undone.isEmpty ? "nothing" : undone.joined(separator: ", ")))
    }

    // MARK: prepare

    private func prepare() throws(SSIError) {
        // CRIU restores the same PIDs: they must be free on the target.
        for t in plan.tasks {
            if let command = try target.commandHolding(t) {
                throw SSIError("migrate", "PID \(t) is in use on node \(target.node) by `\(command)`; CRIU restores a process under its own PID",
                               hint: "processes started after the boot have PIDs in their node's range and move freely; this one is older")
            }
        }
        try host.makeImageDirectory(dir, throughRoot: plan.request.throughRoot)
        onRollback("the image directory") { [host, dir] in host.removeImageDirectory(dir) }

        // Home channels for what stays here; stand-ins that moved here
        // earlier keep their home.
        for (n, s) in plan.shipped.enumerated() where s.kind == .device {
            // CRIU cannot dump most devices: the descriptor becomes a unix
            // socket to this agent first, and the socket is shipped.
            let channel = "\(id).\(n)"
            let device = host.takeCopy(pid: s.pid, fd: s.fd)
            guard device.fd >= 0 else {
                throw SSIError("migrate", "fd \(s.fd) of process \(s.pid): pidfd_getfd: \(errnoDescription(device.errno))")
            }
            let path = String(s.resource.prefix { $0 != "#" })
            let injected: (Int32, String)
            do throws(SSIError) {
                injected = try host.injectStandIn(pid: s.pid, fd: s.fd, name: "ssi-device-\(id)-\(n)", stop: false, what: "device")
            } catch {
                close(device.fd)
                throw error
            }
            let relayed = (agentEnd: injected.0, device: fcntl(device.fd, F_DUPFD_CLOEXEC, 3), path: path)
            devices.append(relayed)
            host.homes.add(HomeChannel(id: channel, kind: .socket, fd: device.fd))
            // The process holds the stand-in now: if the move fails, it is
            // relayed to the device here.
            onRollback("the home channel \(channel) of \(path)") { [host] in
                host.homes.release(channel)
                host.relayDevice(agentEnd: relayed.agentEnd, device: relayed.device, path: relayed.path)
            }
            var spec = ShipSpec(resource: injected.1, kind: .socket, home: host.localNode, channel: channel)
            spec.pid = s.pid
            spec.fd = s.fd
            specs.append(spec)
        }
        for (n, s) in plan.shipped.enumerated() where s.kind != .device {
            let copy = host.takeCopy(pid: s.pid, fd: s.fd)
            if s.kind == .tty, copy.fd >= 0, let hex = termiosHex(copy.fd) { ttyModes[s.resource] = hex }
            if let old = host.standIns.get(s.resource) {
                if copy.fd >= 0 { close(copy.fd) }
                specs.append(ShipSpec(resource: s.resource, kind: s.kind, home: old.home, channel: old.channelID))
                oldStandIns.append((old, s.pid, s.fd))
                continue
            }
            guard copy.fd >= 0 else {
                throw SSIError("migrate", "fd \(s.fd) of process \(s.pid): pidfd_getfd: \(errnoDescription(copy.errno))")
            }
            let channel = "\(id).\(n)"
            let home = HomeChannel(id: channel, kind: s.kind, fd: copy.fd)
            if s.kind == .tty {
                // The holder's place (its deputy's, once it moved) in the
                // terminal's job control decides when keys go to it.
                let (pid, tty) = (s.pid, copy.fd)
                home.readable = { ProcessInspector.mayRead(terminal: tty, pid: pid) }
                // At most once a second: the stand-in says `waiting` with
                // each read until the stop reaches the process there.
                let last = Locked<Double>(0)
                home.onBackgroundRead = { [weak home] in
                    let now = Process.now()
                    guard last.withLock({ l in defer { if now - l >= 1 { l = now } }; return now - l >= 1 }) else { return }
                    if ProcessInspector.stopForTerminalInput(pid) { home?.log?("process \(pid) read its terminal in the background: SIGTTIN to its group") }
                }
                home.signalsAtHome()
            }
            host.homes.add(home)
            onRollback("the home channel \(channel)") { [host] in host.homes.release(channel) }
            var spec = ShipSpec(resource: s.resource, kind: s.kind, home: host.localNode, channel: channel)
            spec.pid = s.pid
            spec.fd = s.fd
            specs.append(spec)
        }
    }

    // MARK: precopy

    /// A pre-copy round's directory, relative to the image directory.
    static func roundDirectory(_ round: Int) -> String { "pre-\(round)" }

    /// Whether the rounds stop after `rounds` (the last one just done).
    static func settled(_ rounds: [PrecopyRound]) -> Bool {
        guard let last = rounds.last else { return false }
        if rounds.count >= maxRounds || last.bytes <= settledBytes { return true }
        if rounds.count >= 2 && last.bytes * 5 > rounds[rounds.count - 2].bytes * 4 { return true }
        return false
    }

    private func precopy() throws(SSIError) {
        guard plan.request.precopy else { return }
        let pid = plan.pid
        // The target drops what it received when the connection closes
        // before a restore.
        onRollback("the target's pre-copy rounds") { [target] in target.close() }
        var round = 0
        repeat {
            round += 1
            let name = Self.roundDirectory(round)
            try host.makeImageDirectory(dir + "/" + name, throughRoot: plan.request.throughRoot)
            let started = clock()
            do throws(SSIError) {
                try checkpointer.preDump(MigrationPlan.preDumpArguments(pid: pid, imageDirectory: criuDir + "/" + name,
                                                                        parent: round > 1 ? "../" + Self.roundDirectory(round - 1) : nil),
                                         imageDirectory: criuDir + "/" + name, readFrom: dir + "/" + name)
            } catch {
                // criu thaws the tree when a pre-dump fails (and a criu
                // that died lets go of it); as after a failed dump, a
                // SIGCONT makes sure. The move goes on from the rounds
                // done (none: a stop and copy, and the answer says why).
                host.resumeProcesses(host.processTree(root: pid))
                host.removeImageDirectory(dir + "/" + name)
                host.trace("pre-copy round \(round) of \(pid) failed: \(error.message)")
                if round == 1 { precopyNote = "no pre-copy (\(error.message))" }
                break
            }
            let dumpedAt = clock()
            let bytes = host.pageBytes(in: dir + "/" + name)
            host.trace(plan.request.throughRoot ? "pre-copy round \(round) of \(pid): \(bytes >> 20) MB of pages in \(criuDir)"
                       : "sending the images of \(pid) to node \(target.node) (pre-copy round \(round), \(bytes >> 20) MB of pages)")
            if !plan.request.throughRoot {
                do throws(SSIError) { try target.sendRound(round, id: id, imageDirectory: dir + "/" + name) } catch {
                    throw SSIError("migrate", "node \(target.node) did not take pre-copy round \(round) of process \(pid): \(error.message); it goes on running on node \(host.localNode)")
                }
                // Sent: its pages' memory in the images' tmpfs goes (the
                // process's memory and every round would not fit twice).
                host.releasePages(in: dir + "/" + name)
            }
            rounds.append(PrecopyRound(bytes: bytes, dumpMs: Int((dumpedAt - started) * 1000), sendMs: Int((clock() - dumpedAt) * 1000)))
        } while !Self.settled(rounds)
    }

    // MARK: dump

    private func dump() throws(SSIError) {
        let pid = plan.pid
        // Registered before criu runs: criu thaws the tree when a dump
        // fails, but the tree must not stay stopped if it did not, nor
        // after any later failure. The frozen tree once it is known.
        freezeStart = clock()
        // Frozen in a cgroup when the node can: its parent sees no stop
        // (a job-control shell would say "Stopped" of a foreground job).
        freezeCgroup = host.freezeTree(pid, moveID: id)
        if freezeCgroup != nil {
            onRollback("the frozen tree thawed") { [self] in host.thawTree(moveID: id) }
        } else {
            onRollback("the stopped tree resumed") { [self] in
                host.resumeProcesses(frozen ? tasks : host.processTree(root: pid))
            }
        }
        try checkpointer.dump(MigrationPlan.dumpArguments(pid: pid, imageDirectory: criuDir, specs: specs,
                                                          parent: rounds.isEmpty ? nil : Self.roundDirectory(rounds.count),
                                                          freezeCgroup: freezeCgroup),
                              imageDirectory: criuDir, readFrom: dir)
        dumped = clock()
        frozenBytes = host.pageBytes(in: dir)
        // What the process wrote to a device's stand-in before the freeze
        // goes to the device now, before anything it writes on the target.
        for d in devices {
            let pending = ProcAgent.drain(d.agentEnd, tty: false)
            do throws(SystemCallError) {
                try writeAll(d.device, pending[...], name: d.path)
            } catch {
                host.trace("\(pending.count) bytes the process wrote to \(d.path) before the freeze were lost: \(error.description)")
            }
        }
        // The tree as CRIU froze it (children come and go until then).
        tasks = host.processTree(root: pid)
        frozen = true
        if let refusal = MigrationPlan.frozenTreeRefusal(pid: pid, tasks: tasks, uid: plan.request.uid, status: host.processStatus) {
            throw refusal
        }
        // Stand-ins from an earlier move: stop their relays; what the
        // process had not read yet goes with it.
        for (s, holder, fd) in oldStandIns {
            // What was drained from the process's end goes back (before
            // what the relay fetched from home, kept in its carry), and the
            // relay runs again.
            let unread = Locked<[UInt8]>([])
            onRollback("the stand-in \(s.channelID) resumed") {
                // Ahead of what the relay fetched: the relay gives its
                // carry to the process first (never a write that blocks).
                let bytes = unread.current
                if !bytes.isEmpty { s.carry.withLock { $0 = bytes + $0 } }
                s.resume()
            }
            guard s.pause() else {
                throw SSIError("migrate", "the shipped \(s.kind.rawValue) of channel \(s.channelID) did not settle in 15 s (its home, node \(s.home), is not answering)")
            }
            if s.kind != .pipeOut {
                let copy = host.takeCopy(pid: holder, fd: fd)
                var drained: [UInt8] = []
                if copy.fd >= 0 {
                    drained = ProcAgent.drain(copy.fd, tty: s.kind == .tty)
                    close(copy.fd)
                }
                let fetched = s.carry.withLock { c in defer { c = [] }; return c }
                carries[s.resource] = drained + fetched
                // Kept to put back if the move fails.
                s.carry.withLock { $0 = fetched }
                unread.withLock { $0 = drained }
            }
        }
    }

    // MARK: transfer

    /// The restore request (PROTOCOLS.md 3.5).
    static func restoreRequest(id: String, pid: pid_t, tasks: [pid_t], sharedImages: String?, specs: [ShipSpec],
                               ttyModes: [String: String], reports: [(pid_t, (node: UInt32, session: String))],
                               deputy: UInt32? = nil) -> Fields {
        RestoreRequest(id: id, pid: pid, tasks: tasks, images: sharedImages, ships: specs,
                       termios: ttyModes.map { RestoreRequest.Mode(resource: $0.key, hex: $0.value) },
                       reports: reports.map { RestoreRequest.Report(pid: $0.0, node: $0.1.node, session: $0.1.session) },
                       deputy: deputy).encode()
    }

    private func transfer() throws(SSIError) {
        let pid = plan.pid
        deputyHome = host.deputyHome(of: pid)
        if deputyHome == host.localNode {
            // Before the request: what the target reports at once (a
            // process that ends as soon as it runs) waits for the deputy.
            host.expectDeputy(pid: pid, uid: host.processStatus(pid)?.uids.first ?? 0, node: target.node)
            onRollback("the deputy's record") { [host] in host.forgetDeputy(pid) }
        }
        let request = Self.restoreRequest(id: id, pid: pid, tasks: tasks, sharedImages: plan.request.throughRoot ? criuDir : nil,
                                          specs: specs, ttyModes: ttyModes,
                                          reports: tasks.compactMap { t in host.exitReport(t).map { (t, $0) } },
                                          deputy: deputyHome)
        var result: Fields
        do throws(SSIError) {
            result = try target.restore(request, carries: carries.filter { !$0.value.isEmpty }.map { ($0.key, $0.value) },
                                        imageDirectory: dir, sendImages: !plan.request.throughRoot)
        } catch {
            // No answer (a cut connection, a timeout): the target may
            // have restored it all the same. Asked on a new connection, it
            // says so, or gives the restore up for good; only then does
            // the rollback resume the copy here (DESIGN-NOTES: "A lost
            // answer never makes two copies", and its one window). A
            // target that cannot be reached at all is taken as gone.
            result = Fields("error", [("message", error.message)])
            if let settled = target.settle(id: id) {
                if settled.op == "restored" {
                    result = settled
                    answerLost = "the restore's answer was lost (\(error.message)); node \(target.node) confirmed it"
                } else if let why = settled["message"] {
                    result = Fields("error", [("message", "\(error.message); then: \(why)")])
                }
            }
        }
        guard result.op == "restored" else {
            throw SSIError("migrate", "node \(target.node) could not restore process \(pid): \(result["message"] ?? result.op); it goes on running on node \(host.localNode)")
        }
        restored = clock()
        restoreMs = result["restore_ms"].flatMap { Int($0) } ?? 0
    }

    // MARK: commit

    /// Why the target's answer came by `settle`, for the move's note.
    private(set) var answerLost: String?

    private func commit() {
        undo = []
        target.close()
        // The devices' stand-ins at home are no longer needed.
        for d in devices {
            close(d.agentEnd)
            close(d.device)
        }
        devices = []
        // The target runs it: the stopped original becomes its deputy if
        // this is its home (its parent, group and session keep it), and
        // goes otherwise; the rest of a tree goes (their parent moved),
        // first: the deputy's injection thaws the frozen cgroup they are in.
        var retired = tasks
        var deputy: pid_t?
        if deputyHome == host.localNode {
            let rest = tasks.filter { $0 != plan.pid }
            if !rest.isEmpty { host.retireProcesses(rest) }
            retired = [plan.pid]
            if let why = host.becomeDeputy(plan.pid, moveID: id, shippedTTY: specs.contains { $0.kind == .tty }) {
                deputyNote = "no deputy here (\(why)): its parent saw it killed"
                host.trace("process \(plan.pid): \(deputyNote ?? "")")
                host.forgetDeputy(plan.pid)
            } else {
                retired = []
                deputy = plan.pid
            }
        }
        if !retired.isEmpty { host.retireProcesses(retired) }
        if freezeCgroup != nil { host.releaseTree(moveID: id, deputy: deputy) }
        for (s, _, _) in oldStandIns {
            s.finish()
            host.standIns.remove(s.resource)
        }
        host.removeImageDirectory(dir)
    }
}

// MARK: the production implementations

extension ProcAgent: MigrationHost {
    func makeImageDirectory(_ dir: String, throughRoot: Bool) throws(SSIError) {
        if !throughRoot { try prepareImageSpace() }
        try makeDirectory(dir)
    }

    func removeImageDirectory(_ dir: String) { removeTree(dir) }

    func takeCopy(pid: pid_t, fd: Int32) -> (fd: Int32, errno: Int32) {
        // As ProcessInspector.takeCopy, with the errno read at the call.
        let pidfd = ssi_pidfd_open(pid)
        guard pidfd >= 0 else { let e = errno; return (-1, e) }
        let copy = ssi_pidfd_getfd(pidfd, fd)
        let e = errno
        close(pidfd)
        return (copy, copy >= 0 ? 0 : e)
    }

    func processTree(root: pid_t) -> [pid_t] { ProcessInspector.tree(root: root) }

    func processStatus(_ pid: pid_t) -> ProcessStatus? { ProcessStatus.of(pid) }

    func resumeProcesses(_ tasks: [pid_t]) {
        for t in tasks { kill(t, SIGCONT) }
    }

    func freezeTree(_ pid: pid_t, moveID: String) -> String? {
        do throws(SSIError) {
            let f = try TreeFreezer.freeze(name: "ssi-move-" + moveID, systemRoot: options.systemRoot,
                                           tree: { ProcessInspector.tree(root: pid) })
            freezers.withLock { $0[moveID] = f }
            return f.criuPath
        } catch {
            // Said once per agent: every move here would say the same.
            let first = freezerUnavailableSaid.withLock { said in defer { said = true }; return !said }
            if first { trace("moves stop the process (its parent can see the stop): no cgroup freezer here: \(error.message)") }
            return nil
        }
    }

    func thawTree(moveID: String) {
        freezers.withLock { $0.removeValue(forKey: moveID) }?.thaw()
    }

    func releaseTree(moveID: String, deputy: pid_t?) {
        freezers.withLock { $0.removeValue(forKey: moveID) }?.release(deputy: deputy)
    }

    func exitReport(_ pid: pid_t) -> (node: UInt32, session: String)? { exitReports.withLock { $0[pid] } }

    func deputyHome(of pid: pid_t) -> UInt32? {
        if exitReport(pid) != nil { return nil }
        return deputyHomes.withLock { $0[pid] } ?? localNode
    }

    func retireProcesses(_ tasks: [pid_t]) {
        departed.withLock { d in for t in tasks { d.insert(t) } }
        for t in tasks {
            kill(t, SIGKILL)
            exitReports.withLock { _ = $0.removeValue(forKey: t) }
            // Moved on: the new node reports to its deputy now.
            deputyHomes.withLock { _ = $0.removeValue(forKey: t) }
        }
        // A while later the pids may be reused here.
        startThread { [self, tasks] in
            Process.sleep(milliseconds: 5000)
            departed.withLock { d in for t in tasks { d.remove(t) } }
        }
    }
}

/// The target's process agent: one connection per request; a move's
/// pre-copy rounds and its restore share one (the target drops the
/// rounds if it closes before the restore).
final class RemoteTarget: MigrationTarget {
    let agent: ProcAgent
    let node: UInt32
    private var move: SecureChannel?

    init(agent: ProcAgent, node: UInt32) {
        self.agent = agent
        self.node = node
    }

    deinit { move?.close() }

    func commandHolding(_ pid: pid_t) throws(SSIError) -> String? {
        // One request per connection (serveRemote's rule).
        guard let c = try? agent.connect(node, timeoutSeconds: 5) else { return nil }
        defer { c.close() }
        try c.send(PeerRequest.where(pid: pid).encode())
        let r = try c.expectFields("where")
        let reply: PeerReply
        do throws(ProcMessageError) { reply = try PeerReply.decode(r) } catch {
            throw SSIError("migrate", "node \(node)'s answer to where: \(error.description)", hint: error.hint)
        }
        switch reply {
        case .where(let found, let command): return found ? command : nil
        case .error(let message): throw SSIError("migrate", "node \(node): \(message)")
        default: throw SSIError("migrate", "node \(node) answered \(r.op) to where")
        }
    }

    func settle(id: String) -> Fields? {
        // A new connection: the move's own is what broke.
        guard let c = try? agent.connect(node, timeoutSeconds: 10) else { return nil }
        defer { c.close() }
        c.setReceiveTimeout(seconds: 30)
        guard (try? c.send(PeerRequest.settle(id: id).encode())) != nil else { return nil }
        return try? c.expectFields("settle")
    }

    func sendRound(_ round: Int, id: String, imageDirectory dir: String) throws(SSIError) {
        let c: SecureChannel
        if let move { c = move } else {
            c = try agent.connect(node, timeoutSeconds: 30)
            move = c
            try c.send(PeerRequest.precopy(id: id).encode())
        }
        try c.send(PrecopyStep.round(number: round).encode())
        for name in ((try? FileSystem.list(dir)) ?? []).sorted() where name.hasSuffix(".img") {
            try agent.sendFile(dir + "/" + name, as: name, on: c)
        }
    }

    func restore(_ request: Fields, carries: [(resource: String, bytes: [UInt8])], imageDirectory dir: String,
                 sendImages: Bool) throws(SSIError) -> Fields {
        let c: SecureChannel
        if let move { c = move } else { c = try agent.connect(node, timeoutSeconds: 30) }
        move = c
        c.setReceiveTimeout(seconds: 240)
        try c.send(request)
        let imageBytes = ((try? FileSystem.list(dir)) ?? []).reduce(0) { sum, name in
            var st = stat()
            return sum + (lstat(dir + "/" + name, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG ? Int(st.st_size) : 0)
        }
        agent.trace("sending the images of \(request["pid"] ?? "?") to node \(node) (\(imageBytes >> 20) MB)")
        for (res, bytes) in carries {
            try c.send(RestoreStep.carry(resource: res, size: bytes.count).encode())
            try agent.sendChunks(bytes, on: c)
        }
        for name in ((try? FileSystem.list(dir)) ?? []).sorted() where name.hasSuffix(".img") && sendImages {
            try agent.sendFile(dir + "/" + name, as: name, on: c)
        }
        try c.send(RestoreStep.go.encode())
        return try c.expectFields("the target's restore result")
    }

    func close() {
        move?.close()
        move = nil
    }
}
