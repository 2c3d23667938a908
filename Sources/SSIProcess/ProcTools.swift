#if canImport(Glibc)
import Glibc
#endif
import CSSIShim
import SSICore
import SSILinux
import SSIMembership
import SSITools

/// The commands: ssi-migrate (migrate), onnode, where_pid, and the
/// cluster's ps. Each talks to its node's process agent on
/// /run/ssi/proc.sock. Exit codes: 0 done, 1 the operation failed (the
/// message says why), 2 bad usage.
public struct ProcTools {
    public var program: String
    /// /run/ssi, or SSI_STATE_DIR (the host tests run agents elsewhere).
    public var stateDirectory: String

    public init(program: String) {
        self.program = program
        stateDirectory = getenv("SSI_STATE_DIR").flatMap { String(validatingCString: $0) } ?? ClusterView.defaultDirectory
    }

    /// Every message goes through `terminalSafe`: the agent's refusals
    /// name files and command lines, which are anybody's to choose.
    func err(_ text: String) { writeAll(2, "\(program): \(Self.terminalSafe(text))\n") }

    /// Text for a terminal: control characters but newline and tab (and
    /// DEL, and the C1 controls) shown as \xHH, so a file or process named
    /// with an escape sequence cannot drive the user's terminal.
    static func terminalSafe(_ s: String) -> String { printable(s, keepingLineBreaks: true) }
    func out(_ text: String) { writeAll(1, text + "\n") }

    func usageError(_ text: String, usage: String) -> Int32 {
        err(text)
        return usageLines(usage)
    }

    /// A command line glibc's getopt_long refused: its message (which
    /// names the program) as it is, then the usage.
    func usageError(_ failure: GetOpt.Failure, usage: String) -> Int32 {
        writeAll(2, Self.terminalSafe(failure.message) + "\n")
        return usageLines(usage)
    }

    private func usageLines(_ usage: String) -> Int32 {
        writeAll(2, "Usage: \(usage)\nTry '\(program) --help' for more information.\n")
        return 2
    }

    func connect() throws(SSIError) -> LocalChannel {
        try LocalChannel.connect(path: stateDirectory + "/" + ProcAgent.socketName)
    }

    /// The agent's next answer, decoded; nil when it closed the connection.
    func reply(_ ch: LocalChannel) throws(SSIError) -> LocalReply? {
        guard let f = try ch.receiveFields() else { return nil }
        do throws(ProcMessageError) { return try LocalReply.decode(f) } catch { throw error.asSSIError }
    }

    /// A node by number or by name, from the membership view.
    func node(_ text: String) throws(SSIError) -> UInt32 {
        if let n = UInt32(text) { return n }
        guard let view = try? ClusterView.load(directory: stateDirectory) else {
            throw SSIError("proc", "\(text) is not a node number, and there is no cluster view to look names up in")
        }
        guard let n = view.nodes.first(where: { $0.name == text }) else {
            throw SSIError("proc", "no node named \(text)", hint: "nodes: " + view.nodes.map { "\($0.number) (\($0.name))" }.joined(separator: ", "))
        }
        return n.number
    }

    // MARK: ssi-migrate

    public static let migrateUsage = "migrate [-t] [--through-root] [--stop-and-copy] PID NODE"
    public static let migrateHelp = """
        Usage:
         migrate [options] PID NODE

        Move a running process to another node of the cluster. CRIU freezes
        and dumps it here and restores it there under the same PID; files on
        the cluster root are reopened there, and its pipes, sockets and
        terminals stay on their home node, shipped to it.

        Pre-copy: while the process runs, its memory goes to the target in
        rounds (criu pre-dump), each carrying what changed since the one
        before, until they stop shrinking; the freeze then carries only the
        pages dirtied since the last round. The answer gives the rounds, the
        pages they sent, and the freeze (dump, restore).

        Options:
         -t, --tree           move the process with all its descendants
             --through-root   pass CRIU's images through the cluster root
                              (/cluster/migrate) instead of the agents'
                              encrypted stream
             --stop-and-copy  no pre-copy: every page moves while the
                              process is frozen
         -h, --help           display this help

        NODE is a node number or name. Exit status: 0 moved, 1 not moved
        (the process goes on where it was; the message says why), 2 usage.
        """

    /// glibc's getopt_long, as every other command line of ssi: bundles,
    /// unique prefixes of long names, "--", options after operands.
    static let migrateOptions = GetOpt([
        .init("t", "tree"), .init(nil, "through-root"), .init(nil, "stop-and-copy"), .init("h", "help"),
    ])

    public func migrate(_ args: [String]) -> Int32 {
        let p: GetOpt.Parsed
        do throws(GetOpt.Failure) { p = try Self.migrateOptions.parse(args, program: program) } catch {
            return usageError(error, usage: Self.migrateUsage)
        }
        if p.has("help") { out(Self.migrateHelp); return 0 }
        let tree = p.has("tree"), throughRoot = p.has("through-root"), precopy = !p.has("stop-and-copy")
        let operands = p.operands
        guard operands.count == 2 else {
            return usageError(operands.count < 2 ? "missing operand" : "too many operands", usage: Self.migrateUsage)
        }
        guard let pid = pid_t(operands[0]), pid > 0 else { return usageError("\(operands[0]): not a process ID", usage: Self.migrateUsage) }
        do {
            let target = try node(operands[1])
            let ch = try connect()
            defer { ch.close() }
            try ch.send(LocalRequest.migrate(pid: pid, node: target, tree: tree, throughRoot: throughRoot, precopy: precopy).encode())
            while let r = try reply(ch) {
                switch r {
                case .migrated(let m):
                    out(Self.terminalSafe(Self.movedLine(pid: pid, m)))
                    return 0
                case .error(let message):
                    err(message)
                    return 1
                default:
                    continue
                }
            }
            err("the agent closed the connection without an answer; see /run/ssi/proc-agent.log")
            return 1
        } catch {
            err(error.description)
            return 1
        }
    }

    /// ssi-migrate's answer: where it went, the freeze and its parts,
    /// the pre-copy rounds. "frozen N ms" is what scripts (bench/migrate)
    /// read.
    static func movedLine(pid: pid_t, _ m: LocalReply.Migrated) -> String {
        // The numbers come from an agent, maybe relayed from another
        // node: arithmetic that cannot overflow, whatever they are.
        let mb = { (b: Int) -> String in
            let tenths = ((b & 0xFFFFF) * 10) >> 20
            return b >= 10 << 20 || b < 0 ? "\(b >> 20) MB" : "\(b >> 20).\(tenths) MB"
        }
        let dump = "dump \(m.dumpMs) ms" + (m.frozenBytes > 0 ? " of \(mb(m.frozenBytes))" : "")
        let parts = m.restoreMs > 0 ? "\(dump), transfer \(max(0, m.freezeMs &- m.dumpMs &- m.restoreMs)) ms, restore \(m.restoreMs) ms" : dump
        let precopy = m.rounds > 0 ? "\(m.rounds) pre-copy round\(m.rounds == 1 ? "" : "s") sent \(mb(m.precopyBytes)) while it ran"
                                   : (m.note.isEmpty ? "stop and copy" : m.note)
        return "\(pid): moved to node \(m.node) (\(m.name)), frozen \(m.freezeMs) ms (\(parts)); \(precopy); \(m.totalMs) ms in all, \(m.shipped) descriptors shipped"
    }

    // MARK: onnode

    public static let onnodeUsage = "onnode [-p] [-b] NODE COMMAND [ARG...]"
    public static let onnodeHelp = """
        Usage:
         onnode [options] NODE COMMAND [ARG...]

        Run a command on another node with this one's environment, working
        directory and user; its stdin, stdout and stderr stay here (shipped).
        The command's exit status is onnode's. SIGINT, SIGTERM, SIGHUP, SIGQUIT,
        SIGUSR1 and SIGUSR2 sent to onnode go to the command, wherever it runs.

        Options:
         -p, --pin          pin the command to NODE: the load leveler never moves it
                            (OpenSSI's -p; SSI_LL_PIN=1 in its environment)
         -b, --background   leave the command running there and return at once
         -h, --help         display this help
        """

    /// Options end at the node (getopt's "+"): what follows is the
    /// command's own command line.
    static let onnodeOptions = GetOpt([.init("p", "pin"), .init("b", "background"), .init("h", "help")], ordering: .requireOrder)

    public func onnode(_ args: [String]) -> Int32 {
        let p: GetOpt.Parsed
        do throws(GetOpt.Failure) { p = try Self.onnodeOptions.parse(args, program: program) } catch {
            return usageError(error, usage: Self.onnodeUsage)
        }
        if p.has("help") { out(Self.onnodeHelp); return 0 }
        let persistent = p.has("background")
        let pin = p.has("pin")
        let rest = p.operands[...]
        guard let nodeText = rest.first else { return usageError("missing node", usage: Self.onnodeUsage) }
        let command = Array(rest.dropFirst())
        guard !command.isEmpty else { return usageError("missing command", usage: Self.onnodeUsage) }
        do {
            let target = try node(nodeText)
            let ch = try connect()
            defer { ch.close() }
            // No identity in the request: the agent asks the kernel who we
            // are (SO_PEERCRED), and the command runs as exactly that.
            // Values travel as UTF-8 text (PROTOCOLS.md 6): what is not
            // cannot be passed on unchanged, so it is not passed at all,
            // and said (an empty entry, or "/" for the directory, was sent).
            var environment: [String] = []
            var e = environ
            while let p = e.pointee {
                if let entry = String(validatingCString: p) {
                    environment.append(entry)
                } else {
                    let name = String(decoding: UnsafeRawBufferPointer(start: p, count: strlen(p)).prefix { $0 != UInt8(ascii: "=") }, as: UTF8.self)
                    err("the environment variable \(name) is not valid UTF-8: not passed on")
                }
                e += 1
            }
            if pin { environment = environment.filter { !$0.hasPrefix("SSI_LL_PIN=") } + ["SSI_LL_PIN=1"] }
            let cwd = try currentDirectory()
            let f = LocalRequest.onnode(OnnodeRequest(node: target, persistent: persistent, cwd: cwd, argv: command,
                                                      environment: environment)).encode()
            try ch.send(Wire.fields, f.encoded, fds: [0, 1, 2])
            // The agent has our stdio now: ours must not compete for input.
            let null = open("/dev/null", O_RDWR)
            dup2(null, 0)
            while let r = try reply(ch) {
                switch r {
                case .started(let pid, let node):
                    if persistent {
                        err("pid \(pid) runs on node \(node)")
                        return 0
                    }
                    forwardSignals(on: ch)
                case .exit(let status, let how):
                    if !how.isEmpty { err(how) }
                    return status
                case .error(let message):
                    err(message)
                    return 255
                default: continue
                }
            }
            err("the agent closed the connection; the command's exit status is unknown")
            return 255
        } catch {
            err(error.description)
            return 255
        }
    }

    /// From now on SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2
    /// sent to onnode go to the command (through the agents) instead of
    /// ending onnode, which goes on waiting for the command's exit status.
    func forwardSignals(on ch: LocalChannel) {
        var fds: [Int32] = [-1, -1]
        guard ssi_pipe(&fds) == 0 else { return }
        OnnodeSignals.pipe = fds[1]
        var unblock = sigset_t()
        sigemptyset(&unblock)
        for sig in OnnodeSignals.forwarded {
            // An ignored signal stays ignored (a background job of a
            // script ignores SIGINT, and so does its command then).
            var old = sigaction()
            sigaction(sig, nil, &old)
            if let h = old.__sigaction_handler.sa_handler, unsafeBitCast(h, to: Int.self) == 1 /* SIG_IGN */ { continue }
            signal(sig) { n in
                var b = UInt8(truncatingIfNeeded: n)
                _ = write(OnnodeSignals.pipe, &b, 1)
            }
            // Whatever started onnode may have blocked them (a test
            // runner does): they are for the command.
            sigaddset(&unblock, sig)
        }
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        let reader = fds[0]
        startThread {
            var b: UInt8 = 0
            while read(reader, &b, 1) == 1 {
                // The main thread only receives on this connection.
                try? ch.send(LocalRequest.signal(Int32(b)).encode())
            }
        }
    }

    /// The directory the command runs in there: this one, exactly, or an
    /// error (it used to be "/" when getcwd failed or the path was not
    /// UTF-8: the command ran somewhere else than asked).
    func currentDirectory() throws(SSIError) -> String {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX))
        guard getcwd(&buf, buf.count) != nil else {
            let e = errno
            throw SSIError("onnode", "the current directory: getcwd: \(errnoDescription(e))", hint: "cd to a directory that exists, then run onnode")
        }
        guard let path = buf.withUnsafeBufferPointer({ String(validatingCString: $0.baseAddress!) }) else {
            throw SSIError("onnode", "the current directory's path is not valid UTF-8, which onnode cannot pass on unchanged",
                           hint: "cd to a directory whose path is UTF-8, then run onnode")
        }
        return path
    }

    enum OnnodeSignals {
        static let forwarded: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2]
        /// The write end of the signal handler's pipe (set before the handlers).
        nonisolated(unsafe) static var pipe: Int32 = -1
    }

    // MARK: where_pid

    public func wherePID(_ args: [String]) -> Int32 {
        if args.contains("-h") || args.contains("--help") {
            out("Usage:\n where_pid PID...\n\nPrint the node each process runs on now (its PID is its cluster-wide identity:\nit keeps it when it migrates).")
            return 0
        }
        guard !args.isEmpty else { return usageError("missing process ID", usage: "where_pid PID...") }
        var pids: [pid_t] = []
        for a in args {
            guard let p = pid_t(a), p > 0 else { return usageError("\(a): not a process ID", usage: "where_pid PID...") }
            pids.append(p)
        }
        let f = LocalRequest.where(pids: pids).encode()
        do {
            let ch = try connect()
            defer { ch.close() }
            try ch.send(f)
            var status: Int32 = 0
            answers: while let r = try reply(ch) {
                switch r {
                case .end: break answers
                case .error(let message): err(message); return 1
                case .where(let pid, let nodes):
                    let list = nodes.map(String.init).joined(separator: ",")
                    if nodes.isEmpty {
                        err("\(pid): no such process on any node")
                        status = 1
                    } else {
                        out(args.count > 1 ? "\(pid) \(list)" : list)
                    }
                default: continue
                }
            }
            return status
        } catch {
            err(error.description)
            return 1
        }
    }

    // MARK: ps

    /// `ssi cluster ps`: every node's processes with the node.
    public func ps(json: Bool) -> Int32 {
        do {
            let ch = try connect()
            defer { ch.close() }
            try ch.send(LocalRequest.ps.encode())
            var rows: [(node: String, pid: String, uid: String, command: String)] = []
            var status: Int32 = 0
            answers: while let r = try reply(ch) {
                switch r {
                case .end: break answers
                case .error(let message): err(message); status = 1
                case .ps(let node, let part):
                    for p in part { rows.append((String(node), String(p.pid), String(p.uid), p.command)) }
                default: continue
                }
            }
            if json {
                let items = rows.map { "{\"node\":\($0.node),\"pid\":\($0.pid),\"uid\":\($0.uid),\"command\":\(jsonString($0.command))}" }
                out("[" + items.joined(separator: ",\n") + "]")
            } else {
                out("NODE     PID   UID COMMAND")
                for r in rows {
                    out(pad(r.node, 4) + " " + pad(r.pid, 7) + " " + pad(r.uid, 5) + " " + psQuoted(r.command))
                }
            }
            return status
        } catch {
            err(error.description)
            return 1
        }
    }

    /// A command line for a one-line-per-process listing: control
    /// characters (a newline in an argument) print as "?", as procps does.
    func psQuoted(_ s: String) -> String {
        String(String.UnicodeScalarView(s.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7f ? "?" : $0 }))
    }

    func pad(_ s: String, _ n: Int) -> String { String(repeating: " ", count: max(0, n - s.count)) + s }

    func jsonString(_ s: String) -> String {
        var o = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": o += "\\\""
            case "\\": o += "\\\\"
            default:
                if u.value < 0x20 { o += "\\u00" + (u.value < 16 ? "0" : "") + String(u.value, radix: 16) } else { o.unicodeScalars.append(u) }
            }
        }
        return o + "\""
    }
}

// MARK: kill

extension ProcTools {
    /// Linux's signal names, by number (x86_64).
    static let signalNames = ["HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2", "PIPE",
                              "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG", "XCPU", "XFSZ",
                              "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS"]

    /// A signal by name (TERM, SIGTERM, any case) or number (0 to 64).
    static func signalNumber(_ text: String) -> Int32? {
        if let n = Int32(text) { return (0...64).contains(n) ? n : nil }
        var name = text.uppercased()
        if name.hasPrefix("SIG") { name.removeFirst(3) }
        if let i = signalNames.firstIndex(of: name) { return Int32(i + 1) }
        return nil
    }

    static let killUsage = "ssi kill [-s SIGNAL | -SIGNAL] PID...\n       ssi kill -l"

    /// `ssi kill`: a signal to processes wherever they run in the
    /// cluster, as the caller (the agent of the node each runs on checks
    /// that the caller may signal it, as kill(2) does). A PID whose
    /// process moved away reaches the process, not its deputy.
    public func kill(_ args: [String]) -> Int32 {
        var sig = SIGTERM
        var rest = args[...]
        if rest.first == "-h" || rest.first == "--help" {
            out("Usage:\n \(Self.killUsage)\n\nSend a signal (default TERM) to each process, on whatever node it runs now.")
            return 0
        }
        if rest.first == "-l" || rest.first == "--list" {
            out(Self.signalNames.joined(separator: " "))
            return 0
        }
        if let first = rest.first, first == "-s" || first == "--signal" || first == "-n" {
            guard rest.count >= 2 else { return usageError("option requires an argument -- '\(first.dropFirst())'", usage: Self.killUsage) }
            guard let n = Self.signalNumber(rest[rest.startIndex + 1]) else {
                return usageError("unknown signal \(rest[rest.startIndex + 1]); see ssi kill -l", usage: Self.killUsage)
            }
            sig = n
            rest = rest.dropFirst(2)
        } else if let first = rest.first, first.hasPrefix("-"), first != "--", Int(first) == nil || first.count > 1 {
            guard let n = Self.signalNumber(String(first.dropFirst())) else {
                return usageError("unknown signal \(first.dropFirst()); see ssi kill -l", usage: Self.killUsage)
            }
            sig = n
            rest = rest.dropFirst()
        }
        if rest.first == "--" { rest = rest.dropFirst() }
        guard !rest.isEmpty else { return usageError("not enough arguments", usage: Self.killUsage) }
        var pids: [pid_t] = []
        for a in rest {
            guard let p = pid_t(a), p > 0 else { return usageError("\(a): not a process ID (ssi kill takes PIDs, not groups)", usage: Self.killUsage) }
            pids.append(p)
        }
        var status: Int32 = 0
        for p in pids {
            do {
                let ch = try connect()
                defer { ch.close() }
                try ch.send(LocalRequest.kill(pid: p, signal: sig).encode())
                switch try reply(ch) {
                case .end?: break
                case .error(let message)?: err(message); status = 1
                default: err("(\(p)): no answer from the process agent"); status = 1
                }
            } catch {
                err(error.description)
                status = 1
            }
        }
        return status
    }
}
