#if canImport(Glibc)
import Glibc
#endif
import Testing
import SSICore
import SSILinux
@testable import SSITools

/// A merged-/usr Debian in memory: the files (/bin and /sbin are /usr's),
/// dpkg's diversions, and a dpkg-divert that behaves as the real one for
/// what ssi asks of it (--add/--remove, --rename/--no-rename). Every change
/// (a dpkg-divert run, a symlink, an unlink) is one numbered step, logged;
/// `failAt` makes that step fail without effect.
final class FakeDpkgHost {
    enum Node: Equatable { case file(String), link(String) }

    enum Step: Equatable, CustomStringConvertible {
        case divert(add: Bool, rename: Bool, from: String, to: String)
        case symlink(String)
        case unlink(String)

        /// The step that undoes this one.
        var inverse: Step {
            switch self {
            case .divert(let add, let rename, let from, let to): return .divert(add: !add, rename: rename, from: from, to: to)
            case .symlink(let p): return .unlink(p)
            case .unlink(let p): return .symlink(p)
            }
        }

        var description: String {
            switch self {
            case .divert(let add, let rename, let from, _):
                return "dpkg-divert \(add ? "--add" : "--remove") \(rename ? "--rename" : "--no-rename") \(from)"
            case .symlink(let p): return "symlink \(p)"
            case .unlink(let p): return "unlink \(p)"
            }
        }
    }

    struct Snapshot: Equatable {
        var files: [String: Node]
        var diversions: [String]
    }

    var files: [String: Node] = [:]
    var diversions: [DpkgDiversions.Entry] = []
    var executables: Set<String> = [SSIDiversion.binary, "/usr/bin/dpkg-divert"]
    var mergedUsr = true
    var failAt: Int? = nil
    var steps: [Step] = []
    var output: [String] = []

    /// A fresh Debian 12: the distro's five commands, nothing diverted.
    init() {
        for p in SSIDiversion.paths { files[p] = .file("distro " + p) }
        files[SSIDiversion.binary] = .file("ssi")
        files["/usr/bin/dpkg-divert"] = .file("dpkg-divert")
    }

    var snapshot: Snapshot {
        Snapshot(files: files, diversions: diversions.map { "\($0.from) \($0.to) \($0.package ?? ":")" }.sorted())
    }

    /// /bin/x and /sbin/x are /usr/bin/x and /usr/sbin/x on a merged /usr.
    func canonical(_ path: String) -> String {
        guard mergedUsr, path.hasPrefix("/bin/") || path.hasPrefix("/sbin/") else { return path }
        return "/usr" + path
    }

    /// Counts a step; true when it is the one to fail.
    func step(_ s: Step) -> Bool {
        steps.append(s)
        return steps.count == failAt
    }

    func dpkgDivert(_ args: [String]) -> Process.Exit {
        var add = false, rename = false, package: String? = nil, to: String? = nil, from: String? = nil
        var i = 0
        while i < args.count {
            switch args[i] {
            case "--quiet": break
            case "--add": add = true
            case "--remove": add = false
            case "--rename": rename = true
            case "--no-rename": rename = false
            case "--package": i += 1; package = args[i]
            case "--divert": i += 1; to = args[i]
            default: from = args[i]
            }
            i += 1
        }
        guard let from, let to, let package else { return .exited(2) }
        if step(.divert(add: add, rename: rename, from: from, to: to)) { return .exited(2) }
        let (f, t) = (canonical(from), canonical(to))
        if add {
            if let e = diversions.first(where: { $0.from == from }) {
                return e.to == to && e.package == package ? .exited(0) : .exited(2)   // "clashes with"
            }
            if rename, files[f] != nil {
                if files[t] != nil { return .exited(2) }   // "rename involves overwriting"
                files[t] = files.removeValue(forKey: f)
            }
            diversions.append(.init(from: from, to: to, package: package))
        } else {
            guard let i = diversions.firstIndex(where: { $0.from == from }) else { return .exited(0) }   // "none removed"
            guard diversions[i].package == package, diversions[i].to == to else { return .exited(2) }   // "mismatch"
            if rename, files[t] != nil {
                if files[f] != nil { return .exited(2) }
                files[f] = files.removeValue(forKey: t)
            }
            diversions.remove(at: i)
        }
        return .exited(0)
    }

    var system: Diverter.System {
        Diverter.System(
            diversions: { [unowned self] in self.diversions },
            link: { [unowned self] p in
                if case .link(let t) = self.files[self.canonical(p)] { return t }
                return nil
            },
            exists: { [unowned self] p in self.files[self.canonical(p)] != nil },
            isExecutableFile: { [unowned self] p in self.executables.contains(p) },
            realPath: { [unowned self] p in self.mergedUsr && (p == "/bin" || p == "/sbin") ? "/usr" + p : p },
            symlink: { [unowned self] target, p throws(SystemCallError) in
                if self.step(.symlink(p)) { throw SystemCallError("symlink \(p)", errno: EROFS) }
                guard self.files[p] == nil else { throw SystemCallError("symlink \(p)", errno: EEXIST) }
                self.files[p] = .link(target)
            },
            unlink: { [unowned self] p throws(SystemCallError) in
                if self.step(.unlink(p)) { throw SystemCallError("unlink \(p)", errno: EROFS) }
                guard self.files.removeValue(forKey: p) != nil else { throw SystemCallError("unlink \(p)", errno: ENOENT) }
            },
            execute: { [unowned self] path, args throws(SystemCallError) in
                guard path == "/usr/bin/dpkg-divert" else { throw SystemCallError("spawn \(path)", errno: ENOENT) }
                return self.dpkgDivert(args)
            },
            print: { [unowned self] in self.output.append($0) })
    }

    var diverter: Diverter { Diverter(system: system) }
}

@Suite struct DiverterTests {
    typealias Step = FakeDpkgHost.Step

    /// What enable does to one path on a fresh system, in order.
    static func enableSteps(_ p: String) -> [Step] {
        [.divert(add: true, rename: true, from: p, to: p + ".distrib"),
         .divert(add: true, rename: false, from: SSIDiversion.alias(p), to: SSIDiversion.alias(p) + ".distrib"),
         .symlink(p)]
    }

    /// What disable does to one path that enable set up, in order.
    static func disableSteps(_ p: String) -> [Step] {
        [.unlink(p),
         .divert(add: false, rename: false, from: SSIDiversion.alias(p), to: SSIDiversion.alias(p) + ".distrib"),
         .divert(add: false, rename: true, from: p, to: p + ".distrib")]
    }

    static let allEnableSteps = SSIDiversion.paths.flatMap(enableSteps)
    static let allDisableSteps = SSIDiversion.paths.flatMap(disableSteps)

    /// The host after a successful enable.
    static func enabledHost() throws -> FakeDpkgHost {
        let host = FakeDpkgHost()
        try host.diverter.enable()
        host.steps = []
        host.output = []
        return host
    }

    @Test("enable on a fresh system diverts each path under both names, links it to ssi, and reports each")
    func enableOnAFreshSystem() throws {
        let host = FakeDpkgHost()
        try host.diverter.enable()
        #expect(host.steps == Self.allEnableSteps)
        for p in SSIDiversion.paths {
            #expect(host.files[p] == .link(SSIDiversion.binary))
            #expect(host.files[p + ".distrib"] == .file("distro " + p))
            #expect(host.diversions.contains(.init(from: p, to: p + ".distrib", package: "ssi")))
            #expect(host.diversions.contains(.init(from: SSIDiversion.alias(p), to: SSIDiversion.alias(p) + ".distrib", package: "ssi")))
        }
        #expect(host.diversions.count == 10)
        #expect(host.output == SSIDiversion.paths.map { "ssi divert: \($0) -> /usr/sbin/ssi (the distro's file: \($0).distrib)" })
        let states = try host.diverter.states()
        #expect(states.map(\.1) == Array(repeating: .ssi, count: 5))
        #expect(Diverter.statusCode(states) == 0)
    }

    @Test("a failure at step N of enable undoes exactly steps N-1...1, leaves the system as it was, and says what failed",
          arguments: 1...15)
    func enableRollsBackAtEachStep(n: Int) throws {
        let host = FakeDpkgHost()
        let before = host.snapshot
        host.failAt = n
        let error = #expect(throws: SSIError.self) { try host.diverter.enable() }
        let done = Array(Self.allEnableSteps.prefix(n - 1))
        let failed = Self.allEnableSteps[n - 1]
        #expect(host.steps == done + [failed] + done.reversed().map(\.inverse))
        #expect(host.snapshot == before)
        #expect(host.output == [])   // nothing reported as done
        let undone = n > 1 ? " (what this command had changed is undone)" : ""
        #expect(error?.step == "divert")
        switch failed {
        case .divert(_, _, let from, _):
            #expect(error?.message == "dpkg-divert --add \(from) failed (exit status 2); its messages are above" + undone)
            #expect(error?.hint == nil)
        case .symlink(let p):
            let why = SystemCallError("symlink \(p)", errno: EROFS).description
            #expect(error?.message == "linking \(p) to /usr/sbin/ssi: \(why)" + undone)
            #expect(error?.hint == "check that \(p.hasPrefix("/usr/bin/") ? "/usr/bin" : "/usr/sbin") is writable (not a read-only /usr)")
        case .unlink:
            Issue.record("enable never unlinks")
        }
    }

    @Test("disable after enable gives each command back and leaves the system as it was before enable")
    func disableIsTheInverse() throws {
        let fresh = FakeDpkgHost().snapshot
        let host = try Self.enabledHost()
        try host.diverter.disable()
        #expect(host.steps == Self.allDisableSteps)
        #expect(host.snapshot == fresh)
        #expect(host.output == SSIDiversion.paths.map { "ssi divert: \($0) is the distro's again" })
        let states = try host.diverter.states()
        #expect(states.map(\.1) == Array(repeating: .distro, count: 5))
        #expect(Diverter.statusCode(states) == 3)
    }

    @Test("a failure at step N of disable undoes exactly steps N-1...1 and leaves ssi in place",
          arguments: 1...15)
    func disableRollsBackAtEachStep(n: Int) throws {
        let host = try Self.enabledHost()
        let before = host.snapshot
        host.failAt = n
        let error = #expect(throws: SSIError.self) { try host.diverter.disable() }
        let done = Array(Self.allDisableSteps.prefix(n - 1))
        let failed = Self.allDisableSteps[n - 1]
        #expect(host.steps == done + [failed] + done.reversed().map(\.inverse))
        #expect(host.snapshot == before)
        #expect(host.output == [])
        #expect(try host.diverter.states().map(\.1) == Array(repeating: .ssi, count: 5))
        let undone = n > 1 ? " (what this command had changed is undone)" : ""
        #expect(error?.step == "divert")
        switch failed {
        case .divert(_, _, let from, _):
            #expect(error?.message == "dpkg-divert --remove \(from) failed (exit status 2); its messages are above" + undone)
        case .unlink(let p):
            let why = SystemCallError("unlink \(p)", errno: EROFS).description
            #expect(error?.message == "removing the link \(p): \(why)" + undone)
            #expect(error?.hint == "check that \(p.hasPrefix("/usr/bin/") ? "/usr/bin" : "/usr/sbin") is writable")
        case .symlink:
            Issue.record("disable never links")
        }
    }

    @Test("enable twice: the second changes nothing and says so; disable twice likewise")
    func idempotent() throws {
        let host = try Self.enabledHost()
        let enabled = host.snapshot
        try host.diverter.enable()
        #expect(host.steps == [])
        #expect(host.snapshot == enabled)
        #expect(host.output == ["ssi divert: already enabled"])

        let fresh = FakeDpkgHost()
        let before = fresh.snapshot
        try fresh.diverter.disable()
        #expect(fresh.steps == [])
        #expect(fresh.snapshot == before)
        #expect(fresh.output == ["ssi divert: not enabled; nothing to do"])
    }

    @Test("an interrupted enable (diverted, no link) is reported half done, and enable finishes only what is missing")
    func halfDoneIsFinished() throws {
        let host = FakeDpkgHost()
        let p = "/usr/sbin/swapon"
        // What a killed enable leaves: both diversions made, the link not.
        _ = host.dpkgDivert(["--package", "ssi", "--add", "--rename", "--divert", p + ".distrib", p])
        _ = host.dpkgDivert(["--package", "ssi", "--add", "--no-rename", "--divert", "/sbin/swapon.distrib", "/sbin/swapon"])
        host.steps = []
        let states = try host.diverter.states()
        let swapon = try #require(states.first { $0.0 == p }?.1)
        #expect(swapon == .partial("/usr/sbin/swapon is not a link to /usr/sbin/ssi"))
        #expect(Diverter.describe(p, swapon)
                == "half done: /usr/sbin/swapon is not a link to /usr/sbin/ssi (run `ssi divert enable` or `ssi divert disable`)")
        #expect(Diverter.statusCode(states) == 1)

        try host.diverter.enable()
        let expected = SSIDiversion.paths.flatMap { $0 == p ? [.symlink(p)] : Self.enableSteps($0) }
        #expect(host.steps == expected)
        #expect(try host.diverter.states().map(\.1) == Array(repeating: .ssi, count: 5))
    }

    @Test("status: each state in words, and the exit status scripts read")
    func statusReportsEachState() {
        let p = "/usr/bin/mount"
        #expect(Diverter.describe(p, .ssi) == "ssi (the distro's file is /usr/bin/mount.distrib)")
        #expect(Diverter.describe(p, .distro) == "the distro's (not diverted)")
        #expect(Diverter.describe(p, .otherPackage("busybox")) == "diverted by busybox: ssi leaves it alone")
        #expect(Diverter.describe(p, .partial("no /usr/bin/mount.distrib"))
                == "half done: no /usr/bin/mount.distrib (run `ssi divert enable` or `ssi divert disable`)")
        let paths = SSIDiversion.paths
        #expect(Diverter.statusCode(paths.map { ($0, .ssi) }) == 0)
        #expect(Diverter.statusCode(paths.map { ($0, .distro) }) == 3)
        #expect(Diverter.statusCode(paths.map { ($0, $0 == p ? .distro : .ssi) }) == 1)
        #expect(Diverter.statusCode(paths.map { ($0, $0 == p ? .otherPackage("x") : .distro) }) == 1)
    }

    @Test("refusals before any change: no ssi binary, unmerged /usr, another package's diversion, no dpkg-divert, two copies of a file")
    func refusals() throws {
        func refusal(_ change: (FakeDpkgHost) -> Void) -> SSIError? {
            let host = FakeDpkgHost()
            change(host)
            let before = host.snapshot
            let error = #expect(throws: SSIError.self) { try host.diverter.enable() }
            #expect(host.steps == [] && host.snapshot == before && host.output == [])
            return error
        }
        #expect(refusal { $0.executables.remove(SSIDiversion.binary) }?.description
                == "divert: /usr/sbin/ssi is not installed; install the ssi package first (the links point there)")
        #expect(refusal { $0.mergedUsr = false }?.description
                == "divert: /bin is not a link to /usr/bin: this system's /usr is not merged; apt-get install usrmerge, then run this again")
        #expect(refusal { $0.diversions = [.init(from: "/sbin/fsck", to: "/sbin/fsck.real", package: "busybox")] }?.description
                == "divert: /usr/sbin/fsck is diverted by busybox; ssi will not divert it too; "
                + "see dpkg-divert --list '/usr/sbin/fsck'; remove that diversion first (or leave this command as it is)")
        #expect(refusal { $0.executables.remove("/usr/bin/dpkg-divert") }?.description
                == "divert: dpkg-divert is not installed; apt-get install dpkg")
        // The first path meets its leftover .distrib: nothing was done yet.
        #expect(refusal { $0.files["/usr/bin/mount.distrib"] = .file("old") }?.description
                == "divert: /usr/bin/mount.distrib exists already, and /usr/bin/mount too; "
                + "compare them and remove the one that is not the distro's file, then run this again")
    }

    @Test("a refusal after some paths were done undoes them and says so")
    func laterRefusalUndoes() throws {
        let host = FakeDpkgHost()
        host.files["/usr/sbin/swapon.distrib"] = .file("old")
        let before = host.snapshot
        let error = #expect(throws: SSIError.self) { try host.diverter.enable() }
        let done = Array(Self.allEnableSteps.prefix(6))   // mount and umount
        #expect(host.steps == done + done.reversed().map(\.inverse))
        #expect(host.snapshot == before)
        #expect(error?.message == "/usr/sbin/swapon.distrib exists already, and /usr/sbin/swapon too (what this command had changed is undone)")
    }

    @Test("enable with the distro's file missing: the package to reinstall is named")
    func missingDistroFile() throws {
        let host = FakeDpkgHost()
        host.files["/usr/sbin/fsck"] = nil
        let error = #expect(throws: SSIError.self) { try host.diverter.enable() }
        #expect(error?.message == "/usr/sbin/fsck.distrib does not exist: the distro's /usr/sbin/fsck was not there to divert"
                + " (what this command had changed is undone)")
        #expect(error?.hint == "reinstall its package (apt-get install --reinstall util-linux), then run this again")
        var fresh = FakeDpkgHost().snapshot
        fresh.files["/usr/sbin/fsck"] = nil
        #expect(host.snapshot == fresh)
    }
}
