#if canImport(Glibc)
import Glibc
#endif
import CSSIShim
import SSICore
import SSILinux
import SSIMembership

// OpenSSI's load leveling commands (README-mosixll): loadlevel, a shell
// whose children are leveled (OpenSSI's bash-ll: ssi-ll), loads, and the
// wrapper a leveled program runs through.

extension ProcTools {
    /// Where the leveled programs' wrappers are (ProcAgent.levelDirectory).
    public static let levelDirectory = ProcAgent.levelDirectory

    static let loadlevelUsage = "loadlevel [-a | -n NODE] [on | off]"

    /// `loadlevel`: without on/off, where leveling is on; `-a on|off` for
    /// every node (the cluster line, and no node line any more), `on|off`
    /// for this node (`-n NODE` for another). Written to
    /// /etc/ssi/loadlevel; the agents read it every 2 s.
    public func loadlevel(_ args: [String]) -> Int32 {
        var all = false, target: UInt32?, value: Bool?
        var rest = args[...]
        while let a = rest.first {
            rest = rest.dropFirst()
            switch a {
            case "-h", "--help":
                out("Usage:\n \(Self.loadlevelUsage)\n\nTurn load leveling on or off for the whole cluster (-a) or one node (this one, or -n NODE);\nwithout on/off, show where it is on. Leveled are the programs of /etc/ssi/loadlevellist run under ssi-ll.")
                return 0
            case "-a", "--all": all = true
            case "-n", "--node":
                guard let n = rest.first else { return usageError("option requires an argument -- 'n'", usage: Self.loadlevelUsage) }
                rest = rest.dropFirst()
                do { target = try node(n) } catch { err(error.description); return 1 }
            case "on", "off":
                guard value == nil else { return usageError("on or off, once", usage: Self.loadlevelUsage) }
                value = a == "on"
            default:
                return usageError("unknown argument: \(a)", usage: Self.loadlevelUsage)
            }
        }
        guard !(all && target != nil) else { return usageError("-a and -n are each other's opposite", usage: Self.loadlevelUsage) }
        var settings: LoadLevelSettings
        do { settings = try LoadLevelSettings.read() } catch { err(error.description); return 1 }
        guard let value else {
            let view = try? ClusterView.load(directory: stateDirectory)
            out("cluster: \(settings.cluster ? "on" : "off")")
            let nodes = Set((view?.nodes.map(\.number) ?? []) + Array(settings.nodes.keys)).sorted()
            for n in nodes {
                let name = view?.nodes.first { $0.number == n }?.name ?? "node\(n)"
                out("node \(n) (\(name)): \(settings.enabled(on: n) ? "on" : "off")\(settings.nodes[n] != nil ? " (its own line)" : "")")
            }
            return 0
        }
        if all {
            settings.cluster = value
            settings.nodes = [:]
        } else {
            let n: UInt32
            if let target { n = target } else {
                guard let view = try? ClusterView.load(directory: stateDirectory), view.localNode != 0 else {
                    err("this node's number is unknown (no cluster view in \(stateDirectory)); use -n NODE or -a")
                    return 1
                }
                n = view.localNode
            }
            settings.nodes[n] = value
        }
        do throws(SystemCallError) {
            try writeFileAtomically(LoadLevelSettings.path, Array(settings.text.utf8), mode: 0o644, replace: true)
        } catch {
            err("\(LoadLevelSettings.path): \(error.description)")
            return 1
        }
        return 0
    }

    /// `loads`: each node's load as its membership agent publishes it.
    public func loads(_ args: [String]) -> Int32 {
        if args.contains("-h") || args.contains("--help") {
            out("Usage:\n loads\n\nEach node's load (runnable processes, smoothed; per CPU) and whether it is leveled.")
            return 0
        }
        guard args.isEmpty else { return usageError("loads takes no arguments", usage: "loads") }
        let loads = NodeLoads.read(directory: stateDirectory).byNode
        let settings = (try? LoadLevelSettings.read()) ?? LoadLevelSettings()
        let view = try? ClusterView.load(directory: stateDirectory)
        out("NODE NAME LOAD CPUS PER-CPU LEVELING")
        for n in loads.keys.sorted() {
            let l = loads[n]!
            let name = view?.nodes.first { $0.number == n }?.name ?? "-"
            out("\(n) \(name) \(Self.twoPlaces(Double(l.hundredths) / 100)) \(l.cpus) \(Self.twoPlaces(l.perCPU)) \(settings.enabled(on: n) ? "on" : "off")")
        }
        return 0
    }

    /// A non-negative value with two decimals (no Foundation here).
    static func twoPlaces(_ v: Double) -> String {
        let cents = Int((max(0, v) * 100).rounded())
        let frac = cents % 100
        return "\(cents / 100).\(frac < 10 ? "0" : "")\(frac)"
    }

    /// `ssi-ll [COMMAND [ARG...]]` (OpenSSI's bash-ll): runs COMMAND (the
    /// user's shell by default) with the wrappers first in PATH and
    /// SSI_LL=1, so that its leveled programs start on the least loaded
    /// node and the leveler may move them while they run.
    public func ll(_ args: [String]) -> Int32 {
        if args.first == "-h" || args.first == "--help" {
            out("Usage:\n ssi-ll [COMMAND [ARG...]]\n\nRun COMMAND (default: $SHELL) with load leveling for the programs of /etc/ssi/loadlevellist.")
            return 0
        }
        let shell = getenv("SHELL").flatMap { String(validatingCString: $0) } ?? "/bin/sh"
        let argv = args.first == "--" ? Array(args.dropFirst()) : args
        let command = argv.isEmpty ? [shell] : argv
        let path = getenv("PATH").flatMap { String(validatingCString: $0) } ?? "/usr/local/bin:/usr/bin:/bin"
        let dirs = path.split(separator: ":", omittingEmptySubsequences: false).map(String.init).filter { $0 != ProcAgent.levelDirectory }
        setenv("PATH", ([ProcAgent.levelDirectory] + dirs).joined(separator: ":"), 1)
        setenv("SSI_LL", "1", 1)
        unsetenv("SSI_LL_PLACED")
        execvpArray(command)
        let e = errno
        err("\(command[0]): \(errnoDescription(e))")
        return e == ENOENT ? 127 : 126
    }

    /// The wrapper: run as `/run/ssi/ll/NAME`. The real NAME is the next
    /// one in PATH; the agent says where it runs: here it is exec'd (same
    /// process, same PID), elsewhere it runs there as onnode runs a
    /// command, this process standing in for it (its stdio shipped from
    /// here, signals forwarded, its exit status this one's).
    public func leveledExec(_ argv: [String]) -> Int32 {
        let name = basename(of: argv.first ?? "")
        let path = getenv("PATH").flatMap { String(validatingCString: $0) } ?? "/usr/bin:/bin"
        let dirs = path.split(separator: ":", omittingEmptySubsequences: false).map(String.init).filter { $0 != ProcAgent.levelDirectory }
        guard let real = dirs.lazy.map({ ($0.isEmpty ? "." : $0) + "/" + name }).first(where: { access($0, X_OK) == 0 }) else {
            err("\(name): command not found (after \(ProcAgent.levelDirectory) in PATH)")
            return 127
        }
        let placed = getenv("SSI_LL_PLACED") != nil
        unsetenv("SSI_LL_PLACED")
        var node: UInt32?
        if !placed, let ch = try? connect() {
            defer { ch.close() }
            if (try? ch.send(LocalRequest.place.encode())) != nil, case .placed(let n)? = try? reply(ch) { node = n }
        }
        let here = (try? ClusterView.load(directory: stateDirectory))?.localNode
        guard let node, node != here else {
            // Here: the program itself, under this PID, with its path as
            // argv[0]: a program that finds its own files from argv[0]
            // through PATH (gcc finds cc1 so) would find the wrapper.
            execArray(real, [real] + argv.dropFirst())
            let e = errno
            err("\(real): \(errnoDescription(e))")
            return 126
        }
        // There: its own wrapper there execs it without asking again.
        setenv("SSI_LL_PLACED", "1", 1)
        // A terminal is not shipped with a leveled program: its input is
        // /dev/null (a build's compilers read none; a job of `make -j`
        // shipping the build's terminal each, a dozen at once, set it raw
        // and back in turn), and what it writes to a terminal goes
        // through a pipe that this process copies to the terminal.
        if isatty(0) == 1 {
            let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
            if null >= 0 { dup2(null, 0); close(null) }
        }
        let relays = [Int32(1), 2].compactMap { fd in isatty(fd) == 1 ? OutputRelay(replacing: fd) : nil }
        let status = ProcTools(program: name).onnode(["--", String(node)] + argv)
        relays.forEach { $0.finish() }
        return status
    }
}

/// Descriptor `fd` (a terminal) replaced by a pipe whose bytes a thread
/// copies to the terminal, until `finish`.
final class OutputRelay: @unchecked Sendable {
    let fd: Int32
    let terminal: Int32
    let done = Locked(false)
    let readEnd: Int32

    init?(replacing fd: Int32) {
        var p: [Int32] = [-1, -1]
        guard ssi_pipe(&p) == 0 else { return nil }
        let saved = fcntl(fd, F_DUPFD_CLOEXEC, 3)
        guard saved >= 0, dup2(p[1], fd) == fd else { close(p[0]); close(p[1]); if saved >= 0 { close(saved) }; return nil }
        close(p[1])
        self.fd = fd
        terminal = saved
        readEnd = p[0]
        startThread { [self] in
            ProcAgent.copyStream(from: readEnd, to: terminal)
            done.withLock { $0 = true }
        }
    }

    /// Lets the copy end: this process's write end goes; the agent lets go
    /// of its copy once the output went home (bounded wait: 3 s).
    func finish() {
        let null = open("/dev/null", O_WRONLY | O_CLOEXEC)
        if null >= 0 { dup2(null, fd); close(null) }
        for _ in 0..<150 where !done.current { Process.sleep(milliseconds: 20) }
    }
}

func execArray(_ path: String, _ argv: [String]) {
    var cargs = argv.map { strdup($0) } + [nil]
    execv(path, &cargs)
    for p in cargs { free(p) }
}

func execvpArray(_ argv: [String]) {
    var cargs = argv.map { strdup($0) } + [nil]
    execvp(argv[0], &cargs)
    for p in cargs { free(p) }
}

// MARK: OpenSSI's names for scripts

extension ProcTools {
    static let onallUsage = "onall COMMAND [ARG...]"

    /// `onall COMMAND [ARG...]`: the command on every up node in turn (as
    /// onnode runs it, its stdin /dev/null), each line of its output
    /// prefixed with the node ("node2: ..."); the exit status is the
    /// highest of theirs.
    public func onall(_ args: [String]) -> Int32 {
        if args.first == "-h" || args.first == "--help" {
            out("Usage:\n \(Self.onallUsage)\n\nRun COMMAND on every node that is up, one after the other, its output prefixed by the node.")
            return 0
        }
        let command = args.first == "--" ? Array(args.dropFirst()) : args
        guard !command.isEmpty else { return usageError("missing command", usage: Self.onallUsage) }
        guard let view = try? ClusterView.load(directory: stateDirectory) else {
            err("no cluster view in \(stateDirectory): is this node in a cluster?")
            return 1
        }
        var worst: Int32 = 0
        for n in view.nodes where n.state == .up {
            var fds: [Int32] = [-1, -1]
            guard ssi_pipe(&fds) == 0 else { let e = errno; err("pipe: \(errnoDescription(e))"); return 1 }
            var spec = SpawnSpec(.path("/proc/self/exe"), argv: ["onnode", "--", String(n.number)] + command,
                                 environment: ProcessInfoLite.environmentList)
            spec.descriptors = .exactly([.null, .fd(fds[1]), .fd(fds[1])])
            let pid: pid_t
            do throws(SystemCallError) { pid = try spec.spawn() } catch {
                close(fds[0]); close(fds[1])
                err("onnode \(n.number): \(error.description)")
                worst = max(worst, 1)
                continue
            }
            close(fds[1])
            var pending: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 65536)
            func flush(_ line: ArraySlice<UInt8>) { writeAll(1, "\(n.name): " + String(decoding: line, as: UTF8.self) + "\n") }
            while case .done(let k) = attempt({ buf.withUnsafeMutableBytes { read(fds[0], $0.baseAddress!, $0.count) } }), k > 0 {
                pending += buf[0..<k]
                while let nl = pending.firstIndex(of: 10) {
                    flush(pending[..<nl])
                    pending.removeSubrange(...nl)
                }
            }
            if !pending.isEmpty { flush(pending[...]) }
            close(fds[0])
            let status: Int32
            do throws(SystemCallError) {
                switch try Process.wait(for: pid) {
                case .exited(let c): status = c
                case .signaled(let s): status = 128 + s
                }
            } catch { status = 255 }
            worst = max(worst, status)
        }
        return worst
    }

    static let clusterUsage = "cluster [-v | -V] [NODE...]"

    /// `cluster` (OpenSSI's command, for its scripts): the numbers of the
    /// nodes that are up, one a line; `-v` every configured node with its
    /// state ("2: UP"); `-V` also its name and address. With NODEs, only
    /// those, and the exit status says whether all of them are up.
    public func cluster(_ args: [String]) -> Int32 {
        var verbose = 0
        var wanted: [UInt32] = []
        for a in args {
            switch a {
            case "-h", "--help":
                out("Usage:\n \(Self.clusterUsage)\n\nPrint the numbers of the nodes that are up (OpenSSI's cluster); -v: every node and its state; -V: with its name and address.\nWith NODEs: those only, exit status 0 if all are up, 1 if not.")
                return 0
            case "-v": verbose = max(verbose, 1)
            case "-V": verbose = 2
            default:
                guard let n = UInt32(a), n > 0 else {
                    return usageError(a.hasPrefix("-") ? "unknown option: \(a)" : "not a node number: \(a)", usage: Self.clusterUsage)
                }
                wanted.append(n)
            }
        }
        guard let view = try? ClusterView.load(directory: stateDirectory) else {
            err("the cluster's membership is unknown: no cluster view in \(stateDirectory)")
            return 1
        }
        let nodes = view.nodes.filter { wanted.isEmpty || wanted.contains($0.number) }.sorted { $0.number < $1.number }
        if let missing = wanted.first(where: { n in !view.nodes.contains { $0.number == n } }) {
            err("node \(missing) is not in the cluster's configuration")
            return 1
        }
        for n in nodes {
            switch verbose {
            case 0: if n.state == .up { out(String(n.number)) }
            case 1: out("\(n.number): \(n.state.rawValue)")
            default: out("\(n.number): \(n.state.rawValue) \(n.name.isEmpty ? "-" : n.name) \(n.address.isEmpty ? "-" : n.address)")
            }
        }
        return wanted.isEmpty || nodes.allSatisfy({ $0.state == .up }) ? 0 : 1
    }

    /// `clusternode_num`: this node's number (OpenSSI's command).
    public func clusterNodeNum(_ args: [String]) -> Int32 {
        if args.first == "-h" || args.first == "--help" { out("Usage:\n clusternode_num\n\nPrint this node's number."); return 0 }
        guard args.isEmpty else { return usageError("clusternode_num takes no arguments", usage: "clusternode_num") }
        guard let view = try? ClusterView.load(directory: stateDirectory), view.localNode != 0 else {
            err("this node's number is unknown: no cluster view in \(stateDirectory)")
            return 1
        }
        out(String(view.localNode))
        return 0
    }
}
