#if canImport(Glibc)
import Glibc
#endif
import CSSIShim
import SSICore
import SSILinux

/// What a `ssi migrate` asks for.
struct MigrationRequest: Sendable, Equatable {
    var pid: pid_t
    var target: UInt32
    /// -t: the process moves with its descendants.
    var tree: Bool
    /// The caller, as the kernel named it (root: any process).
    var uid: uid_t
    /// --through-root: the images go through the cluster root.
    var throughRoot: Bool = false
    /// Pre-copy rounds while the process runs (the default); false:
    /// --stop-and-copy, every page moves while it is frozen.
    var precopy: Bool = true
}

/// One descriptor that stays home and is shipped: the first holder of
/// the object in the tree (a TCP connection's stand-in goes there).
struct ShippedDescriptor: Sendable, Equatable {
    var resource: String
    var kind: ShipKind
    var pid: pid_t
    var fd: Int32
}

/// Everything the plan is decided from, read beforehand from /proc, the
/// membership view and the agent's state. The two questions that depend on
/// the plan's own progress (are two opens one file, who outside the tree
/// holds a pipe) are read-only queries, so that the plan stays a pure
/// function of these facts and a test gives them as a table.
struct MigrationFacts {
    var localNode: UInt32
    /// The agent itself: never moved.
    var agentPID: pid_t
    /// The target in the membership view, nil when it is not in it.
    var peer: (name: String, up: Bool)?
    /// Whether the process runs on this node (ProcAgent.isHere).
    var isHere: Bool
    /// Its command line ("@..." is a cluster daemon's).
    var command: String
    /// Whether a move of it is under way (the agent's `migrating`; the
    /// agent claims the move again after the plan, in case one began since).
    var beingMoved: Bool = false
    /// The tree, its root first, as read before anything is frozen.
    var tasks: [pid_t]
    /// The owners of the tree's processes (nil: gone).
    var status: (pid_t) -> ProcessStatus?
    /// Each process's descriptors; a child missing here ended since the
    /// tree was read, a failure is a process that could not be read.
    var descriptors: [pid_t: Result<[OpenDescriptor], SSIError>]
    /// Mappings CRIU cannot restore elsewhere, by process.
    var mappingProblems: [pid_t: [String]]
    /// kcmp(KCMP_FILE): 0 one open file, > 0 two, < 0 unknown (with errno).
    var sameFile: (_ pid1: pid_t, _ pid2: pid_t, _ fd1: Int32, _ fd2: Int32) -> (result: Int32, errno: Int32)
    /// For each resource, a process outside `except` that holds it.
    var holders: (_ resources: Set<String>, _ except: Set<pid_t>) -> [String: (pid_t, Int32)]
    /// Connected unix sockets by inode, with their peer's inode (sock_diag;
    /// empty when it cannot be read: every unix socket is then shipped).
    var unixPeers: [UInt32: UInt32] = [:]
}

/// What a move will do, decided before anything is touched: the tree that
/// moves, the descriptors shipped (in channel order: shipped[n] gets the
/// home channel "ID.n"), or the refusals, checked on every process of the
/// tree. Pure: `make` reads only its facts.
struct MigrationPlan: Sendable {
    var request: MigrationRequest
    var targetName: String
    var tasks: [pid_t]
    var shipped: [ShippedDescriptor]

    var pid: pid_t { request.pid }

    /// The plan for `request`, or the first refusal as the user sees it
    /// (the same checks, in the same order and words, as before the plan
    /// existed: VM tests grep them).
    static func make(_ request: MigrationRequest, facts: MigrationFacts) throws(SSIError) -> MigrationPlan {
        let pid = request.pid, target = request.target, uid = request.uid
        guard target != facts.localNode else { throw SSIError("migrate", "process \(pid) is already on node \(target)") }
        guard let peer = facts.peer else { throw SSIError("migrate", "node \(target) is not in the cluster", hint: "see `ssi cluster status`") }
        guard peer.up else { throw SSIError("migrate", "node \(target) (\(peer.name)) is not up") }
        guard facts.isHere else { throw SSIError("migrate", "\(pid): no such process on node \(facts.localNode)") }
        guard pid != 1, pid != facts.agentPID, !facts.command.hasPrefix("@") else {
            throw SSIError("migrate", "process \(pid) is a cluster daemon (PID 1 or an agent) and stays on its node")
        }
        let tasks = facts.tasks
        // Every process of the tree is the caller's, not only its root (a
        // root-owned child, a setuid program, would move with them).
        let notOwned = ProcAgent.ownershipRefusals(tree: tasks, uid: uid, status: facts.status)
        if !notOwned.isEmpty {
            throw SSIError("migrate", "process \(pid) cannot move: " + notOwned.joined(separator: "; "),
                           hint: uid == 0 ? nil : "move only your own processes, or ask root to")
        }
        if !request.tree && tasks.count > 1 {
            throw SSIError("migrate", "process \(pid) has child processes (\(tasks.dropFirst().map(String.init).joined(separator: ", "))): CRIU moves a whole tree",
                           hint: "move them all with -t, or move a leaf process")
        }
        guard !facts.beingMoved else { throw alreadyMoving(pid) }

        // What moves, what stays home, what blocks the move.
        var shipped: [ShippedDescriptor] = []
        var refusals: [String] = []
        var pipeEnds = Set<String>()
        var tcpHolders: [String: Int] = [:]
        for t in tasks {
            // A child that ended since the tree was read (a shell's sleep)
            // is not there to inspect: CRIU dumps the tree as it is frozen.
            guard let read = facts.descriptors[t] else { continue }
            let descriptors: [OpenDescriptor]
            switch read {
            case .success(let d): descriptors = d
            case .failure(let error): throw error
            }
            for d in descriptors {
                switch d.disposition {
                case .reopen: break
                case .refuse(let why): refusals.append(t == pid ? why : "process \(t): \(why)")
                case .ship(let kind, let resource):
                    if kind == .tcp { tcpHolders[resource, default: 0] += 1 }
                    if let other = shipped.first(where: { $0.resource == resource }) {
                        // CRIU names a file by its path: two different opens
                        // of one path (a FIFO's two ends, a file opened twice)
                        // would get one stand-in.
                        let same = resource.hasPrefix("pipe:[") || resource.hasPrefix("socket:[")
                            ? (result: Int32(0), errno: Int32(0)) : facts.sameFile(other.pid, t, other.fd, d.fd)
                        if same.result < 0 {
                            refusals.append("/\(resource): cannot tell whether fd \(other.fd) of \(other.pid) and fd \(d.fd) of \(t) are one open file (kcmp: \(errnoDescription(same.errno)))")
                        } else if same.result != 0 {
                            refusals.append("/\(resource) is open twice (fd \(other.fd) of \(other.pid), fd \(d.fd) of \(t)): only one open of a shipped file can move; close one first")
                        } else if other.kind != kind {
                            pipeEnds.insert(resource)
                        }
                    } else {
                        shipped.append(ShippedDescriptor(resource: resource, kind: kind, pid: t, fd: d.fd))
                    }
                }
            }
            refusals += (facts.mappingProblems[t] ?? []).map { t == pid ? $0 : "process \(t): \($0)" }
        }
        // A socketpair (or a connected unix socket) with both ends in the
        // tree moves whole with CRIU too, as a pipe does: its peer is not
        // home, it is beside it.
        let sockets = Set(shipped.filter { $0.kind == .socket }.map(\.resource))
        for r in sockets {
            guard let inode = UInt32(r.dropFirst("socket:[".count).dropLast()), let peer = facts.unixPeers[inode],
                  sockets.contains("socket:[\(peer)]") else { continue }
            pipeEnds.insert(r)
        }
        // A pipe with both ends in the tree moves whole with CRIU (its
        // buffered data too), unless something outside the tree holds it.
        if !pipeEnds.isEmpty {
            let outside = facts.holders(pipeEnds, Set(tasks))
            for r in pipeEnds {
                if let (p, fd) = outside[r] {
                    refusals.append("\(r) joins processes of the tree and process \(p) (fd \(fd)) outside it: CRIU would split it; move a tree that holds all its ends")
                }
            }
            shipped.removeAll { pipeEnds.contains($0.resource) }
        }
        // A TCP connection gets one stand-in, put in one descriptor.
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
        return MigrationPlan(request: request, targetName: peer.name, tasks: tasks, shipped: shipped)
    }

    static func alreadyMoving(_ pid: pid_t) -> SSIError { SSIError("migrate", "process \(pid) is already being moved") }

    /// The frozen tree checked again: a process forked (or a setuid
    /// program run) between the plan and the freeze is in it.
    static func frozenTreeRefusal(pid: pid_t, tasks: [pid_t], uid: uid_t, status: (pid_t) -> ProcessStatus?) -> SSIError? {
        let notOwned = ProcAgent.ownershipRefusals(tree: tasks, uid: uid, status: status)
        if notOwned.isEmpty { return nil }
        return SSIError("migrate", "process \(pid) cannot move: " + notOwned.joined(separator: "; "),
                        hint: "a process of the tree changed owner while it was being frozen; it runs on here")
    }

    /// criu dump's arguments. --leave-stopped: the process stays here,
    /// stopped, until the target has it running; or, `freezeCgroup` (criu's
    /// path to the tree's frozen cgroup, TreeFreezer), --leave-running
    /// --freeze-cgroup: it stays frozen there, a stop its parent does
    /// not see. --shell-job: the
    /// process's session and terminal stay behind (the restore gives it
    /// the stand-in terminal's session). A unix socket whose peer stays
    /// home is external: "unix[INO]".
    /// `parent`: the last pre-copy round's directory, relative to
    /// `criuDir`: only the pages dirtied since it are dumped (soft-dirty
    /// tracking, --track-mem), the rest are found in the rounds at restore.
    static func dumpArguments(pid: pid_t, imageDirectory criuDir: String, specs: [ShipSpec], parent: String? = nil,
                              freezeCgroup: String? = nil) -> [String] {
        var dump = ["dump", "-t", String(pid), "-D", criuDir, "--shell-job"]
            + (freezeCgroup.map { ["--leave-running", "--freeze-cgroup", $0] } ?? ["--leave-stopped"])
            + ["--manage-cgroups=ignore", "--skip-in-flight"]
        if let parent { dump += ["--track-mem", "--prev-images-dir", parent] }
        for s in specs where s.kind == .socket {
            dump += ["--external", "unix[" + s.resource.dropFirst("socket:[".count)]
        }
        if specs.contains(where: { $0.kind == .tcp }) { dump.append("--tcp-close") }
        return dump
    }

    /// criu pre-dump's arguments for one pre-copy round: the tree's
    /// memory only, while it runs (it is frozen just long enough to list
    /// its pages; --pre-dump-mode=read then copies them with
    /// process_vm_readv instead of pinning them all in pipes), with
    /// soft-dirty tracking reset so that the next round, or the final
    /// dump, carries only what changed since. `parent`: the previous
    /// round's directory, relative to this one's.
    static func preDumpArguments(pid: pid_t, imageDirectory criuDir: String, parent: String?) -> [String] {
        var args = ["pre-dump", "-t", String(pid), "-D", criuDir, "--shell-job", "--manage-cgroups=ignore",
                    "--track-mem", "--pre-dump-mode=read"]
        if let parent { args += ["--prev-images-dir", parent] }
        return args
    }
}

extension MigrationFacts {
    /// Each task's descriptors as the plan saw them ("65803: 0 /dev/null,
    /// 1 pipe:[4711]"), for the agent's log; at most 4000 characters (a
    /// tree with thousands of descriptors is cut short, and says so).
    var descriptorSummary: String {
        let text = tasks.map { t in
            switch descriptors[t] {
            // A file's name is its owner's to choose: escaped, it cannot
            // forge a line of the log.
            case .success(let d)?: return "\(t): " + d.map { "\($0.fd) \(printable($0.target))" }.joined(separator: ", ")
            case .failure(let e)?: return "\(t): \(printable(e.message))"
            case nil: return "\(t): not read"
            }
        }.joined(separator: "; ")
        return text.count <= 4000 ? text : text.prefix(4000) + " ... (cut)"
    }

    /// The facts as this node shows them now (reads only: /proc, the
    /// membership view, pidfd copies that are closed again).
    static func read(_ request: MigrationRequest, agent: ProcAgent) -> MigrationFacts {
        let pid = request.pid
        let here = agent.isHere(pid)
        let tasks = here ? ProcessInspector.tree(root: pid) : [pid]
        let inspector = ProcessInspector(systemRoot: agent.options.systemRoot)
        var descriptors: [pid_t: Result<[OpenDescriptor], SSIError>] = [:]
        var mappings: [pid_t: [String]] = [:]
        if here {
            for t in tasks {
                do throws(SSIError) { descriptors[t] = .success(try inspector.descriptors(pid: t)) } catch {
                    if t != pid && !FileSystem.exists("/proc/\(t)") { continue }
                    descriptors[t] = .failure(error)
                }
                mappings[t] = inspector.mappingProblems(pid: t)
            }
        }
        return MigrationFacts(
            localNode: agent.localNode, agentPID: getpid(),
            peer: agent.peers()[request.target].map { (name: $0.name, up: $0.up) },
            isHere: here, command: here ? ProcessInspector.command(pid) : "",
            beingMoved: agent.migrating.withLock { $0.contains(pid) },
            tasks: tasks, status: ProcessStatus.of,
            descriptors: descriptors, mappingProblems: mappings,
            sameFile: { p1, p2, fd1, fd2 in
                let r = ssi_kcmp_file(p1, p2, fd1, fd2)
                let e = errno
                return (r, e)
            },
            holders: { ProcessInspector.holders(of: $0, except: $1) },
            unixPeers: here ? Self.unixPeers(agent: agent) : [:])
    }

    /// sock_diag's view of the unix sockets; a failure (no unix_diag
    /// module) is logged and ships every unix socket, as before.
    static func unixPeers(agent: ProcAgent) -> [UInt32: UInt32] {
        do throws(SystemCallError) {
            var diag = try Netlink.socketDiagnostics()
            return try diag.unixSocketPeers()
        } catch {
            agent.trace("unix socket peers unknown (\(error.description)): each end of a socketpair in the tree is shipped")
            return [:]
        }
    }
}
