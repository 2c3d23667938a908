#if canImport(Glibc)
import Glibc
#endif
public import SSICore

/// Every request one process agent sends another over the secure channel
/// (docs/PROTOCOLS.md 3.5), with its encoder and its decoder. The first
/// message of a connection is one of these; `serveRemote` decodes it here
/// and nowhere else, so every field it acts on was checked once: numbers
/// fit their type exactly (`Fields.number`), required fields are there
/// (no `?? 0`), lists are bounded, and an unknown op or a bad field is a
/// `ProcMessageError` naming the field, answered `op=error message=...`.
/// Fields this version does not know are ignored (a request never gains a
/// field without a new `Fields.version`).
enum PeerRequest: Equatable, Sendable {
    /// A stand-in attaches one direction of home channel `channel`.
    case attach(channel: String, direction: Direction)
    /// Whether `pid` runs on the receiving node.
    case `where`(pid: pid_t)
    /// The receiving node's processes.
    case ps
    /// onnode's command, at its target.
    case run(RunRequest)
    /// A move's restore, at its target; the transfer follows (`RestoreStep`).
    case restore(RestoreRequest)
    /// A move's pre-copy rounds, at its target (`PrecopyStep`s), then its
    /// `restore` on the same connection.
    case precopy(id: String)
    /// Move `pid`, which runs on the receiving node (forwarded by the agent
    /// where the command was typed, with its caller's uid from the kernel).
    case migrate(pid: pid_t, node: UInt32, tree: Bool, uid: uid_t, throughRoot: Bool, precopy: Bool)
    /// A command of onnode session `session` ended.
    case exited(session: String, status: Int32, how: String)
    /// onnode's signal to `pid`, as user `uid`.
    case kill(pid: pid_t, signal: Int32, uid: uid_t)
    /// A source that lost the answer to its restore asks how move `id`
    /// ended here: `restored` if it runs here, else an error; a restore
    /// still going on is given up (undone when it ends), so that the
    /// source resuming its own copy never makes two.
    case settle(id: String)
    /// From the node a moved process runs on, to its home: what happened
    /// to it, for its deputy there (DeputyEvent). `seq` numbers the
    /// sender's reports (DeputyRecord.lastReport): a report sent again
    /// after its answer was lost is known, and not acted on twice.
    case deputy(pid: pid_t, event: DeputyEvent, seq: UInt64)

    enum Direction: String, Sendable { case `in`, out }

    func encode() -> Fields {
        switch self {
        case .attach(let channel, let direction):
            return Fields("attach", [("channel", channel), ("dir", direction.rawValue)])
        case .where(let pid):
            return Fields("where", [("pid", String(pid))])
        case .ps:
            return Fields("ps")
        case .run(let r):
            return r.encode()
        case .restore(let r):
            return r.encode()
        case .precopy(let id):
            return Fields("precopy", [("id", id)])
        case .migrate(let pid, let node, let tree, let uid, let throughRoot, let precopy):
            return Fields("migrate", [("pid", String(pid)), ("node", String(node)), ("tree", tree ? "1" : "0"), ("uid", String(uid)),
                                      ("root", throughRoot ? "1" : "0"), ("precopy", precopy ? "1" : "0")])
        case .exited(let session, let status, let how):
            return Fields("exited", [("session", session), ("status", String(status)), ("how", how)])
        case .kill(let pid, let signal, let uid):
            return Fields("kill", [("pid", String(pid)), ("signal", String(signal)), ("uid", String(uid))])
        case .settle(let id):
            return Fields("settle", [("id", id)])
        case .deputy(let pid, let event, let seq):
            return Fields("deputy", [("pid", String(pid)), ("event", event.name), ("value", String(event.value)), ("seq", String(seq))])
        }
    }

    /// `peer`: the sender's node, for the words of a refusal.
    static func decode(_ f: Fields, from peer: UInt32) throws(ProcMessageError) -> PeerRequest {
        let d = FieldReader(f)
        switch f.op {
        case "attach":
            let channel = try d.text("channel")
            guard let dir = Direction(rawValue: try d.text("dir")) else { throw d.invalid("dir") }
            return .attach(channel: channel, direction: dir)
        case "where":
            return .where(pid: try d.pid("pid"))
        case "ps":
            return .ps
        case "run":
            return .run(try RunRequest.decode(f, from: peer))
        case "restore":
            return .restore(try RestoreRequest.decode(f))
        case "precopy":
            return .precopy(id: try RestoreRequest.moveID(d))
        case "migrate":
            // A uid of 2^32-1 is no one's ((uid_t)-1: "no change").
            let uid: uid_t = try d.number("uid")
            guard uid != uid_t.max else { throw d.invalid("uid") }
            return .migrate(pid: try d.pid("pid"), node: try d.number("node"), tree: try d.flag("tree"), uid: uid,
                            throughRoot: try d.flag("root"), precopy: try d.flag("precopy"))
        case "exited":
            return .exited(session: try d.text("session"), status: try d.number("status"), how: try d.text("how", empty: true))
        case "kill":
            let uid: uid_t = try d.number("uid")
            guard uid != uid_t.max else { throw d.invalid("uid") }
            return .kill(pid: try d.pid("pid"), signal: try d.number("signal"), uid: uid)
        case "settle":
            return .settle(id: try RestoreRequest.moveID(d))
        case "deputy":
            let value: UInt32 = try d.number("value")
            guard let event = DeputyEvent(name: try d.text("event"), value: value) else { throw d.invalid("event") }
            return .deputy(pid: try d.pid("pid"), event: event, seq: try d.number("seq"))
        default:
            throw .unknownOp(f.op)
        }
    }
}

/// onnode's command for its target (`run`): who it runs as (the caller's
/// home agent took it from the kernel), what, where, and its stdio.
struct RunRequest: Equatable, Sendable {
    var cwd: String
    var uid: Int32
    var gid: Int32
    var groups: [gid_t]
    var argv: [String]
    var environment: [String]
    /// stdin, stdout, stderr (0...2) each on a home channel at most once.
    var stdio: [Stdio]
    /// The onnode session that waits for the exit; nil for `onnode -p`.
    var session: String?

    /// `I|KIND|HOME|CHANNEL`: a `ShipSpec` line with the stdio number
    /// where the resource goes.
    struct Stdio: Equatable, Sendable {
        var index: Int
        var spec: ShipSpec
        var line: String { "\(index)|\(spec.kind.rawValue)|\(spec.home)|\(spec.channel)" }
    }

    func encode() -> Fields {
        var f = Fields("run", [("cwd", cwd), ("uid", String(uid)), ("gid", String(gid))])
        for a in argv { f.add("arg", a) }
        for e in environment { f.add("env", e) }
        for g in groups { f.add("group", String(g)) }
        for s in stdio { f.add("std", s.line) }
        if let session { f.add("session", session) }
        return f
    }

    static func decode(_ f: Fields, from peer: UInt32) throws(ProcMessageError) -> RunRequest {
        let d = FieldReader(f)
        // Who it runs as, first: the refusals users and tests know.
        let identity: (uid: Int32, gid: Int32, groups: [gid_t])
        do throws(SSIError) { identity = try ProcAgent.runIdentity(f, from: peer) } catch { throw .refused(error) }
        let argv = f.all("arg")
        guard !argv.isEmpty else { throw .missing(op: "run", field: "arg") }
        var stdio: [Stdio] = []
        for line in f.all("std") {
            let p = line.split(separator: "|", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            guard p.count == 2, p[0].utf8.count == 1, let i = Int(p[0]), (0...2).contains(i), !stdio.contains(where: { $0.index == i }),
                  let spec = ShipSpec(line: "-|" + p[1]), spec.kind != .tcp, spec.kind != .device else {
                throw d.invalid("std", line)
            }
            stdio.append(Stdio(index: i, spec: spec))
        }
        let session = f["session"]
        if let session, session.isEmpty { throw d.invalid("session") }
        return RunRequest(cwd: try d.text("cwd"), uid: identity.uid, gid: identity.gid, groups: identity.groups, argv: argv,
                          environment: f.all("env"), stdio: stdio, session: session)
    }
}

/// A move's restore at its target (PROTOCOLS.md 3.5, 3.9).
struct RestoreRequest: Equatable, Sendable {
    /// NODE-PID-RANDOM: names the image directory, so digits and dashes.
    var id: String
    var pid: pid_t
    /// The tree, root first.
    var tasks: [pid_t]
    /// The images' directory under `ProcAgent.rootImages` (--through-root),
    /// or nil: they follow on the connection.
    var images: String?
    var ships: [ShipSpec]
    /// A shipped terminal's modes: CRIU's resource name and `termiosHex`.
    var termios: [Mode]
    /// Where an onnode session waits for a task's exit.
    var reports: [Report]
    /// The node where the moved process's deputy is (its first home):
    /// the target reports its stops and its end there. nil: none (an
    /// onnode command, whose session has its exit).
    var deputy: UInt32? = nil

    struct Mode: Equatable, Sendable {
        var resource: String
        var hex: String
    }

    struct Report: Equatable, Sendable {
        var pid: pid_t
        var node: UInt32
        var session: String
    }

    static let maxIDBytes = 64

    /// The id names this move's image directory: never a path (a peer's
    /// "../x" would have been one).
    static func moveID(_ d: FieldReader) throws(ProcMessageError) -> String {
        let id = try d.text("id")
        guard id.utf8.count <= maxIDBytes, id.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || $0 == UInt8(ascii: "-") }) else {
            throw d.invalid("id")
        }
        return id
    }

    func encode() -> Fields {
        var req = Fields("restore", [("id", id), ("pid", String(pid))])
        for t in tasks { req.add("task", String(t)) }
        if let images { req.add("images", images) }
        for s in ships { req.add("ship", s.line) }
        for m in termios { req.add("termios", m.resource + "|" + m.hex) }
        for r in reports { req.add("report", "\(r.pid)|\(r.node)|\(r.session)") }
        if let deputy { req.add("deputy", String(deputy)) }
        return req
    }

    static func decode(_ f: Fields) throws(ProcMessageError) -> RestoreRequest {
        let d = FieldReader(f)
        let id = try moveID(d)
        var tasks: [pid_t] = []
        for t in f.all("task") {
            guard let p = pid_t(t), p > 0 else { throw d.invalid("task", t) }
            tasks.append(p)
        }
        let images = f["images"]
        if let images, !images.hasPrefix(ProcAgent.rootImages + "/") || images.contains("..") {
            throw d.invalid("images")
        }
        var ships: [ShipSpec] = []
        for line in f.all("ship") {
            guard let s = ShipSpec(line: line), s.kind != .device else { throw d.invalid("ship", line) }
            ships.append(s)
        }
        var modes: [Mode] = []
        for m in f.all("termios") {
            let p = m.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
            guard p.count == 2, !p[0].isEmpty, p[1].utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }),
                  termiosFrom(hex: p[1]) != nil else { throw d.invalid("termios", m) }
            modes.append(Mode(resource: p[0], hex: p[1]))
        }
        var reports: [Report] = []
        for r in f.all("report") {
            let p = r.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
            guard p.count == 3, let pid = pid_t(p[0]), pid > 0, let node = UInt32(p[1]), !p[2].isEmpty else { throw d.invalid("report", r) }
            reports.append(Report(pid: pid, node: node, session: p[2]))
        }
        var deputy: UInt32?
        if f["deputy"] != nil {
            let n: UInt32 = try d.number("deputy")
            guard n > 0 else { throw d.invalid("deputy") }
            deputy = n
        }
        return RestoreRequest(id: id, pid: try d.pid("pid"), tasks: tasks, images: images, ships: ships, termios: modes, reports: reports,
                              deputy: deputy)
    }
}

/// What follows a `restore` on its connection (PROTOCOLS.md 3.9): carried
/// bytes and image files, each announced, then their `data` frames; `go`.
enum RestoreStep: Equatable, Sendable {
    /// `size` bytes already read from home for stand-in `resource`.
    case carry(resource: String, size: Int)
    /// An image file `name` (no "/", not hidden) of `size` bytes.
    case file(name: String, size: Int)
    case go

    func encode() -> Fields {
        switch self {
        case .carry(let resource, let size): Fields("carry", [("resource", resource), ("size", String(size))])
        case .file(let name, let size): Fields("file", [("name", name), ("size", String(size))])
        case .go: Fields("go")
        }
    }

    /// Sizes are checked here, before anything is reserved for them.
    static func decode(_ f: Fields) throws(ProcMessageError) -> RestoreStep {
        let d = FieldReader(f)
        switch f.op {
        case "carry":
            let size: Int = try d.number("size")
            guard (0...ProcAgent.maxCarryBytes).contains(size) else {
                throw .invalid(op: "carry", field: "size", why: "\(size) carried bytes: the limit is \(ProcAgent.maxCarryBytes)")
            }
            return .carry(resource: try d.text("resource"), size: size)
        case "file":
            let name = try d.text("name")
            guard !name.contains("/"), !name.hasPrefix("."), name.utf8.count <= 255 else { throw d.invalid("name") }
            let size: Int = try d.number("size")
            guard size >= 0 else { throw d.invalid("size") }
            return .file(name: name, size: size)
        case "go":
            return .go
        default:
            throw .unknownOp(f.op)
        }
    }
}

/// What follows a `precopy` on its connection (PROTOCOLS.md 3.10): each
/// round announced, its image files (`RestoreStep.file`, then their
/// `data` frames); then the move's `restore` request and its own steps.
enum PrecopyStep: Equatable, Sendable {
    /// Round `number` begins: 1, 2... in order, at most `maxRounds`.
    case round(number: Int)
    case file(name: String, size: Int)
    /// The move's restore (its id is the rounds' id).
    case restore(RestoreRequest)

    func encode() -> Fields {
        switch self {
        case .round(let number): Fields("round", [("n", String(number))])
        case .file(let name, let size): RestoreStep.file(name: name, size: size).encode()
        case .restore(let r): r.encode()
        }
    }

    /// `after`: the last round announced (0: none yet); a round out of
    /// order, past the bound, or a file before any round is refused.
    static func decode(_ f: Fields, after last: Int) throws(ProcMessageError) -> PrecopyStep {
        let d = FieldReader(f)
        switch f.op {
        case "round":
            let n: Int = try d.number("n")
            guard n == last + 1, n <= MigrationTransaction.maxRounds else {
                throw .invalid(op: "round", field: "n", why: "round \(n) after round \(last), at most \(MigrationTransaction.maxRounds)")
            }
            return .round(number: n)
        case "file":
            guard last > 0 else { throw .invalid(op: "file", field: "name", why: "an image file before any pre-copy round") }
            guard case .file(let name, let size) = try RestoreStep.decode(f) else { throw .unknownOp(f.op) }
            return .file(name: name, size: size)
        case "restore":
            return .restore(try RestoreRequest.decode(f))
        default:
            throw .unknownOp(f.op)
        }
    }
}

/// Why a message was not taken: an agent answers it as
/// `op=error message=DESCRIPTION`, naming the field.
public enum ProcMessageError: Error, CustomStringConvertible, Sendable {
    case tooLong(bytes: Int)
    /// No version line: an ssi before protocol v1, or not ssi's.
    case unversioned
    case unsupportedVersion(String)
    case unknownOp(String)
    case missing(op: String, field: String)
    case invalid(op: String, field: String, why: String)
    /// A check with its own words (a run request's identity).
    case refused(SSIError)

    /// A sender's version, not its message, is the problem.
    var isVersionMismatch: Bool {
        switch self {
        case .unversioned, .unsupportedVersion: true
        default: false
        }
    }

    public var description: String {
        switch self {
        case .tooLong(let n): "a message of \(n) bytes, over the limit of \(SecureChannel.maxPayload) bytes"
        case .unversioned: "a message without a protocol version (this ssi speaks v=\(Fields.version))"
        case .unsupportedVersion(let v): "a message of protocol version \(quotedString(v)) (this ssi speaks v=\(Fields.version))"
        case .unknownOp(let op): "unknown request \(printable(op.prefix(40)))"
        case .missing(let op, let field): op.isEmpty ? "a message without \(field)" : "the \(printable(op.prefix(40))) message has no \(field)"
        case .invalid(let op, let field, let why): "the \(printable(op.prefix(40))) message has a bad \(field) (\(why))"
        case .refused(let e): e.message
        }
    }

    var hint: String? {
        switch self {
        case .unversioned, .unsupportedVersion: "are both nodes running the same ssi? A cluster runs one ssi version"
        case .refused(let e): e.hint
        default: nil
        }
    }

    /// As the agents' and commands' errors are.
    var asSSIError: SSIError { SSIError("proc", description, hint: hint) }
}

/// Typed reads of a message's fields for the decoders: present and exact.
struct FieldReader {
    let f: Fields
    init(_ f: Fields) { self.f = f }

    func invalid(_ field: String, _ value: String? = nil) -> ProcMessageError {
        .invalid(op: f.op, field: field, why: quotedString(String((value ?? f[field] ?? "").prefix(40))))
    }

    /// A value that must be there (and, unless `empty`, not empty).
    func text(_ key: String, empty: Bool = false) throws(ProcMessageError) -> String {
        guard let v = f[key] else { throw .missing(op: f.op, field: key) }
        guard empty || !v.isEmpty else { throw invalid(key) }
        return v
    }

    /// A decimal number that fits `T` exactly.
    func number<T: FixedWidthInteger>(_ key: String, as: T.Type = T.self) throws(ProcMessageError) -> T {
        guard f[key] != nil else { throw .missing(op: f.op, field: key) }
        guard let n: T = f.number(key) else { throw invalid(key) }
        return n
    }

    func pid(_ key: String) throws(ProcMessageError) -> pid_t {
        let p: pid_t = try number(key)
        guard p > 0 else { throw invalid(key) }
        return p
    }

    /// "1" or "0".
    func flag(_ key: String) throws(ProcMessageError) -> Bool {
        switch try text(key) {
        case "1": return true
        case "0": return false
        default: throw invalid(key)
        }
    }
}

/// The one-message answers to a `PeerRequest` (and a restore's result)
/// that a requester reads back. `ps` answers `op=ps` parts then `end`;
/// `migrate` answers `MigrateReply`'s; `attach` starts a relay (3.8).
enum PeerReply: Equatable, Sendable {
    case ok
    case error(String)
    case end
    /// `where`: whether the pid runs there, and its command line (cut).
    case `where`(found: Bool, command: String)
    /// `run`: the command's pid on its node.
    case started(pid: pid_t)
    /// A restore's result: the process runs there; criu's restore took
    /// `ms` (the target's own clock).
    case restored(pid: pid_t, ms: Int)

    func encode() -> Fields {
        switch self {
        case .ok: Fields("ok")
        case .error(let message): Fields("error", [("message", message)])
        case .end: Fields("end")
        case .where(let found, let command): Fields("where", [("found", found ? "1" : "0"), ("command", command)])
        case .started(let pid): Fields("started", [("pid", String(pid))])
        case .restored(let pid, let ms): Fields("restored", [("pid", String(pid)), ("restore_ms", String(ms))])
        }
    }

    static func decode(_ f: Fields) throws(ProcMessageError) -> PeerReply {
        let d = FieldReader(f)
        switch f.op {
        case "ok": return .ok
        case "error": return .error(try d.text("message", empty: true))
        case "end": return .end
        case "where": return .where(found: try d.flag("found"), command: try d.text("command", empty: true))
        case "started": return .started(pid: try d.pid("pid"))
        case "restored": return .restored(pid: try d.pid("pid"), ms: try d.number("restore_ms"))
        default: throw .unknownOp(f.op)
        }
    }
}
