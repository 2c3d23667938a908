#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CSSIShim
public import SSICore

/// Everything about starting one program, executed by ONE C function
/// (`ssi_spawn` in CSSIShim): every child ssi starts, from PID 1's fsck to
/// the process agent's command run as a remote caller, goes through it.
/// The child, in this order: signals, chroot(root), the identity
/// (groups, gid, uid), chdir(cwd) AS that identity, the descriptor map,
/// a new session and its terminal, the exec. A failure in the child comes
/// back as a thrown error naming the step and its errno; the failed child
/// is reaped by then. No thread is started: PID 1 can use it.
public struct SpawnSpec: Sendable {
    /// What to execute.
    public enum Program: Sendable, Equatable {
        /// execve this path.
        case path(String)
        /// A name looked up in the PATH of the spec's environment (execvp).
        case search(String)
        /// fexecve an open descriptor (our own binary, opened in our root
        /// and run in another).
        case descriptor(Int32)
    }

    /// What the child's descriptors are.
    public enum Descriptors: Sendable, Equatable {
        /// As the spawner's (close-on-exec ones close), with `map` applied.
        case inherit(map: [Source])
        /// Exactly these on 0, 1, 2, ...; every other one closes.
        case exactly([Source])
    }

    /// Where descriptor i comes from.
    public enum Source: Sendable, Equatable {
        case fd(Int32)
        /// /dev/null, opened in the child (in its root).
        case null
        /// Left as it is (with `.inherit`).
        case unchanged
    }

    /// Who the child is. Set in the child before any of the caller's paths
    /// (cwd, the program) is touched.
    public struct Credentials: Sendable, Equatable {
        public var uid: uid_t
        public var gid: gid_t
        public var groups: [gid_t]
        public init(uid: uid_t, gid: gid_t, groups: [gid_t]) {
            self.uid = uid
            self.gid = gid
            self.groups = groups
        }
    }

    public enum Signals: Int32, Sendable {
        /// Mask and ignored signals as the spawner's (posix_spawn's default).
        case inherit = 0
        /// Nothing blocked.
        case unblock = 1
        /// Nothing blocked and every disposition the default.
        case reset = 2
    }

    /// A keeper between the session and the program (see `struct
    /// ssi_spawn` in the shim): criu restore's parent.
    public enum Keeper: Sendable, Equatable {
        case none
        /// Exits with the program's status.
        case exits(subreaper: Bool)
        /// Writes the status byte to the descriptor, stays after a 0.
        case reports(Int32, subreaper: Bool)
    }

    public var program: Program
    public var argv: [String]
    public var environment: [String]
    /// chroot into this (the spawner's path) first.
    public var root: String?
    /// chdir here (after `root` and `credentials`); nil: the spawner's.
    public var cwd: String?
    public var credentials: Credentials?
    public var descriptors: Descriptors = .inherit(map: [])
    public var signals: Signals = .inherit
    public var newSession = false
    /// Becomes the new session's controlling terminal (needs newSession).
    public var controllingTTY: Int32?
    public var keeper: Keeper = .none

    public init(_ program: Program, argv: [String], environment: [String]) {
        self.program = program
        self.argv = argv
        self.environment = environment
    }

    /// A program in another root (the agents root, the system's root
    /// from an agent's): chrooted (entered at its "/"), in a session of its
    /// own, nothing blocked, stdin /dev/null (opened in that root), stdout
    /// and stderr ours or `output`; other descriptors as ours.
    public static func inRoot(_ root: String, _ program: Program, argv: [String], environment: [String],
                              output: Int32? = nil) -> SpawnSpec {
        var spec = SpawnSpec(program, argv: argv, environment: environment)
        spec.root = root
        spec.signals = .unblock
        spec.newSession = true
        spec.descriptors = .inherit(map: output.map { [.null, .fd($0), .fd($0)] } ?? [.null])
        return spec
    }

    /// The path or name to execute; nil for a descriptor.
    var programPath: String? {
        switch program {
        case .path(let p), .search(let p): return p
        case .descriptor: return nil
        }
    }

    /// The program's name for messages.
    public var programName: String {
        switch program {
        case .path(let p), .search(let p): return p
        case .descriptor: return argv.first ?? "program"
        }
    }

    /// Starts the child; returns its pid once it runs the program.
    /// Errors name the step: "exec /bin/x", "chdir /home/u", "setuid 65534".
    public func spawn() throws(SystemCallError) -> pid_t {
        // The C side takes ids as int (-1: unchanged) and at most 64
        // descriptors: a value it would misread is refused here, never
        // run as the spawner's identity.
        if let c = credentials, c.uid > UInt32(Int32.max) || c.gid > UInt32(Int32.max) {
            throw SystemCallError("setuid \(c.uid) / setgid \(c.gid) (starting \(programName))", errno: EINVAL)
        }
        if case .exactly(let list) = descriptors, list.count > 64 { throw SystemCallError("dup (starting \(programName))", errno: EMFILE) }
        if case .inherit(let map) = descriptors, map.count > 64 { throw SystemCallError("dup (starting \(programName))", errno: EMFILE) }
        let argvC = try CStringArray(argv)
        let envC = try CStringArray(environment)
        let pathC = try CString(programPath ?? "")
        let rootC = try CString(root ?? ""), cwdC = try CString(cwd ?? "")
        let (sources, closeOthers): ([Source], Bool) = {
            switch descriptors {
            case .inherit(let map): return (map, false)
            case .exactly(let list): return (list, true)
            }
        }()
        let fds: [Int32] = sources.map {
            switch $0 {
            case .fd(let fd): return fd
            case .null: return SSI_SPAWN_DEVNULL
            case .unchanged: return -1
            }
        }
        let groups = credentials?.groups ?? []
        let (keeperMode, statusFD, subreaper): (Int32, Int32, Bool) = {
            switch keeper {
            case .none: return (0, -1, false)
            case .exits(let s): return (1, -1, s)
            case .reports(let fd, let s): return (2, fd, s)
            }
        }()
        var exeFD: Int32 = -1, search = false
        switch program {
        case .path: break
        case .search: search = true
        case .descriptor(let fd): exeFD = fd
        }
        var failed: UnsafePointer<CChar>? = nil
        let (pid, e): (pid_t, Int32) = fds.withUnsafeBufferPointer { f in
            groups.withUnsafeBufferPointer { g in
                var s = ssi_spawn(
                    path: pathC.pointer, exe_fd: exeFD, search_path: search ? 1 : 0,
                    argv: argvC.pointer, envp: envC.pointer,
                    root: root == nil ? nil : UnsafePointer(rootC.pointer),
                    cwd: cwd == nil ? nil : UnsafePointer(cwdC.pointer),
                    uid: credentials.map { Int32(bitPattern: $0.uid) } ?? -1,
                    gid: credentials.map { Int32(bitPattern: $0.gid) } ?? -1,
                    groups: g.baseAddress, ngroups: Int32(g.count),
                    fds: f.baseAddress, nfds: Int32(f.count), close_others: closeOthers ? 1 : 0,
                    signals: signals.rawValue, new_session: newSession ? 1 : 0,
                    ctty: controllingTTY ?? -1,
                    keeper: keeperMode, status_fd: statusFD, subreaper: subreaper ? 1 : 0)
                let pid = ssi_spawn(&s, &failed)
                // errno at the call, before anything else can change it.
                return (pid, errno)
            }
        }
        guard pid < 0 else { return pid }
        let step = failed.map { String(cString: $0) } ?? "fork"
        throw SystemCallError(describe(step: step), errno: e)
    }

    /// The failed step with the thing it was working on.
    func describe(step: String) -> String {
        switch step {
        case "exec": return "exec \(programName)"
        case "chdir": return "chdir \(cwd ?? "")"
        case "chroot": return "chroot \(root ?? "")"
        case "setuid": return "setuid \(credentials.map { String($0.uid) } ?? "")"
        case "setgid": return "setgid \(credentials.map { String($0.gid) } ?? "")"
        case "setgroups": return "setgroups \(credentials.map { $0.groups.map(String.init).joined(separator: ",") } ?? "")"
        default: return "\(step) (starting \(programName))"
        }
    }
}
