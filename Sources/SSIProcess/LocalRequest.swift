#if canImport(Glibc)
import Glibc
#endif
import SSICore

/// Every request a command sends its node's process agent on
/// /run/ssi/proc.sock (docs/PROTOCOLS.md 3.6), with its encoder and its
/// decoder: `serveLocal` decodes the first message here, onnode's session
/// thread its `signal`s. No request carries an identity: the caller is who
/// the kernel says (`Caller`); fields this version does not know (an old
/// onnode's `client`, a forged `uid`) are ignored, never read.
enum LocalRequest: Equatable, Sendable {
    /// where_pid: the nodes each PID runs on.
    case `where`(pids: [pid_t])
    /// `ssi cluster ps`.
    case ps
    /// ssi-migrate: move `pid` (which runs on any node) to `node`.
    case migrate(pid: pid_t, node: UInt32, tree: Bool, throughRoot: Bool, precopy: Bool)
    /// onnode, with its stdin, stdout and stderr as the message's 3 descriptors.
    case onnode(OnnodeRequest)
    /// On an onnode connection, after `started`: a signal onnode received,
    /// for the command.
    case signal(Int32)
    /// ssi kill: `signal` to `pid`, wherever it runs, as the caller.
    case kill(pid: pid_t, signal: Int32)
    /// A leveled program is about to run (ssi-ll's wrapper): the node it
    /// should run on.
    case place

    func encode() -> Fields {
        switch self {
        case .where(let pids):
            var f = Fields("where")
            for p in pids { f.add("pid", String(p)) }
            return f
        case .ps:
            return Fields("ps")
        case .migrate(let pid, let node, let tree, let throughRoot, let precopy):
            return Fields("migrate", [("pid", String(pid)), ("node", String(node)), ("tree", tree ? "1" : "0"),
                                      ("root", throughRoot ? "1" : "0"), ("precopy", precopy ? "1" : "0")])
        case .onnode(let r):
            var f = Fields("onnode", [("node", String(r.node)), ("persistent", r.persistent ? "1" : "0"), ("cwd", r.cwd)])
            for a in r.argv { f.add("arg", a) }
            for e in r.environment { f.add("env", e) }
            return f
        case .signal(let sig):
            return Fields("signal", [("signal", String(sig))])
        case .kill(let pid, let sig):
            return Fields("kill", [("pid", String(pid)), ("signal", String(sig))])
        case .place:
            return Fields("place")
        }
    }

    static func decode(_ f: Fields) throws(ProcMessageError) -> LocalRequest {
        let d = FieldReader(f)
        switch f.op {
        case "where":
            // Each PID is a question to every node: a bounded number.
            let texts = f.all("pid")
            guard texts.count <= ProcAgent.maxWherePIDs else {
                throw .invalid(op: "where", field: "pid", why: "\(texts.count) PIDs in one request: at most \(ProcAgent.maxWherePIDs); ask in several calls")
            }
            var pids: [pid_t] = []
            for t in texts {
                guard let p = pid_t(t), p > 0 else { throw d.invalid("pid", t) }
                pids.append(p)
            }
            return .where(pids: pids)
        case "ps":
            return .ps
        case "migrate":
            return .migrate(pid: try d.pid("pid"), node: try d.number("node"), tree: try d.flag("tree"), throughRoot: try d.flag("root"),
                            precopy: try d.flag("precopy"))
        case "onnode":
            let argv = f.all("arg")
            guard !argv.isEmpty else { throw .missing(op: "onnode", field: "arg") }
            return .onnode(OnnodeRequest(node: try d.number("node"), persistent: try d.flag("persistent"), cwd: try d.text("cwd"),
                                         argv: argv, environment: f.all("env")))
        case "signal":
            let sig: Int32 = try d.number("signal")
            guard (1...64).contains(sig) else { throw d.invalid("signal") }
            return .signal(sig)
        case "kill":
            // 0 checks that the process exists and may be signalled.
            let sig: Int32 = try d.number("signal")
            guard (0...64).contains(sig) else { throw d.invalid("signal") }
            return .kill(pid: try d.pid("pid"), signal: sig)
        case "place":
            return .place
        default:
            throw .unknownOp(f.op)
        }
    }
}

/// onnode's request: the command, its directory and environment, where.
struct OnnodeRequest: Equatable, Sendable {
    var node: UInt32
    /// `-p`: the command is left running; no exit status comes back.
    var persistent: Bool
    var cwd: String
    var argv: [String]
    var environment: [String]
}

/// The agent's answers on the local socket (PROTOCOLS.md 3.6), as the
/// commands read them.
enum LocalReply: Equatable, Sendable {
    /// onnode: the command runs, as `pid` on `node`.
    case started(pid: pid_t, node: UInt32)
    /// onnode: the command ended; `how` says how when not by exit (may be empty).
    case exit(status: Int32, how: String)
    case migrated(Migrated)
    /// where_pid: the nodes `pid` runs on (none: nowhere).
    case `where`(pid: pid_t, nodes: [UInt32])
    /// `ssi cluster ps`: a part of one node's list.
    case ps(node: UInt32, rows: [PSRow])
    /// `place`: run it on `node` (this one when leveling is off).
    case placed(node: UInt32)
    case error(String)
    /// The last answer to `where` and `ps`.
    case end

    struct Migrated: Equatable, Sendable {
        var pid: pid_t
        var node: UInt32
        var name: String
        var freezeMs: Int
        var dumpMs: Int
        var totalMs: Int
        var shipped: Int
        /// Where the freeze went after the dump: the target's restore
        /// (the rest of it is the transfer); 0: not told.
        var restoreMs: Int = 0
        /// Pre-copy: the rounds, the pages they sent while the process
        /// ran, and why there were none when asked for (empty otherwise).
        var rounds: Int = 0
        var precopyBytes: Int = 0
        /// The pages the final dump carried while the process was frozen.
        var frozenBytes: Int = 0
        var note: String = ""
    }

    /// `PID SP UID SP COMMAND` (the command line cut, see ProcAgent.bounded).
    struct PSRow: Equatable, Sendable {
        var pid: pid_t
        var uid: uid_t
        var command: String
        var line: String { "\(pid) \(uid) \(command)" }
    }

    func encode() -> Fields {
        switch self {
        case .started(let pid, let node): Fields("started", [("pid", String(pid)), ("node", String(node))])
        case .exit(let status, let how): Fields("exit", [("status", String(status)), ("how", how)])
        case .migrated(let m):
            Fields("migrated", [("pid", String(m.pid)), ("node", String(m.node)), ("name", m.name), ("freeze_ms", String(m.freezeMs)),
                                ("dump_ms", String(m.dumpMs)), ("total_ms", String(m.totalMs)), ("shipped", String(m.shipped)),
                                ("restore_ms", String(m.restoreMs)), ("rounds", String(m.rounds)), ("precopy_bytes", String(m.precopyBytes)),
                                ("frozen_bytes", String(m.frozenBytes)), ("note", m.note)])
        case .where(let pid, let nodes): Fields("where", [("pid", String(pid)), ("nodes", nodes.map(String.init).joined(separator: ","))])
        case .ps(let node, let rows): Fields("ps", [("node", String(node))] + rows.map { ("p", $0.line) })
        case .placed(let node): Fields("placed", [("node", String(node))])
        case .error(let message): Fields("error", [("message", message)])
        case .end: Fields("end")
        }
    }

    static func decode(_ f: Fields) throws(ProcMessageError) -> LocalReply {
        let d = FieldReader(f)
        switch f.op {
        case "started":
            return .started(pid: try d.pid("pid"), node: try d.number("node"))
        case "exit":
            return .exit(status: try d.number("status"), how: try d.text("how", empty: true))
        case "migrated":
            return .migrated(Migrated(pid: try d.pid("pid"), node: try d.number("node"), name: try d.text("name", empty: true),
                                      freezeMs: try d.number("freeze_ms"), dumpMs: try d.number("dump_ms"), totalMs: try d.number("total_ms"),
                                      shipped: try d.number("shipped"), restoreMs: try d.number("restore_ms"), rounds: try d.number("rounds"),
                                      precopyBytes: try d.number("precopy_bytes"), frozenBytes: try d.number("frozen_bytes"),
                                      note: try d.text("note", empty: true)))
        case "where":
            let text = try d.text("nodes", empty: true)
            var nodes: [UInt32] = []
            if !text.isEmpty {
                for n in text.split(separator: ",", omittingEmptySubsequences: false) {
                    guard let node = UInt32(n) else { throw d.invalid("nodes") }
                    nodes.append(node)
                }
            }
            return .where(pid: try d.pid("pid"), nodes: nodes)
        case "ps":
            var rows: [PSRow] = []
            for p in f.all("p") {
                let w = p.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
                guard w.count == 3, let pid = pid_t(w[0]), pid > 0, let uid = uid_t(w[1]) else { throw d.invalid("p", p) }
                rows.append(PSRow(pid: pid, uid: uid, command: String(w[2])))
            }
            return .ps(node: try d.number("node"), rows: rows)
        case "placed":
            return .placed(node: try d.number("node"))
        case "error":
            return .error(try d.text("message", empty: true))
        case "end":
            return .end
        default:
            throw .unknownOp(f.op)
        }
    }
}
