public import SSICore
public import SSILinux

/// `ssi divert enable|disable|status`: puts ssi in place of the distro's
/// mount, umount, swapon, swapoff and fsck with dpkg's diversions, and
/// gives them back. Each change is made with a way to undo it kept, so a
/// failure leaves things as they were before the command.
///
/// Everything it reads or changes goes through `system` (the host's by
/// default): the tests replay dpkg-divert and the file system in memory
/// and fail each step in turn.
public struct Diverter {
    public typealias State = SSIDiversion.State

    /// What the diverter reads and changes.
    public struct System {
        /// dpkg's diversions, read afresh at each call.
        public var diversions: () throws(SSIError) -> [DpkgDiversions.Entry]
        /// The target of the symlink at a path; nil when it is not one.
        public var link: (String) -> String?
        /// lstat: anything at the path, a dangling link included.
        public var exists: (String) -> Bool
        public var isExecutableFile: (String) -> Bool
        public var realPath: (String) -> String?
        public var symlink: (_ target: String, _ path: String) throws(SystemCallError) -> Void
        public var unlink: (String) throws(SystemCallError) -> Void
        /// Runs a program (dpkg-divert) to its end.
        public var execute: (_ path: String, _ args: [String]) throws(SystemCallError) -> Process.Exit
        /// A line of the command's report (stdout).
        public var print: (String) -> Void

        public init(diversions: @escaping () throws(SSIError) -> [DpkgDiversions.Entry],
                    link: @escaping (String) -> String?,
                    exists: @escaping (String) -> Bool,
                    isExecutableFile: @escaping (String) -> Bool,
                    realPath: @escaping (String) -> String?,
                    symlink: @escaping (_ target: String, _ path: String) throws(SystemCallError) -> Void,
                    unlink: @escaping (String) throws(SystemCallError) -> Void,
                    execute: @escaping (_ path: String, _ args: [String]) throws(SystemCallError) -> Process.Exit,
                    print: @escaping (String) -> Void) {
            self.diversions = diversions
            self.link = link
            self.exists = exists
            self.isExecutableFile = isExecutableFile
            self.realPath = realPath
            self.symlink = symlink
            self.unlink = unlink
            self.execute = execute
            self.print = print
        }

        /// This machine: dpkg's database, the real file system, the real
        /// dpkg-divert.
        public static var host: System {
            System(
                diversions: { () throws(SSIError) in try DpkgDiversions.read() },
                link: { path in
                    (try? FileSystem.status(path))?.kind == .symlink ? try? FileSystem.readLink(path) : nil
                },
                exists: { FileSystem.exists($0) },
                isExecutableFile: { FileSystem.isExecutableFile($0) },
                realPath: { try? FileSystem.realPath($0) },
                symlink: { target, path throws(SystemCallError) in try FileSystem.symlink(target: target, at: path) },
                unlink: { path throws(SystemCallError) in try FileSystem.unlink(path) },
                execute: { path, args throws(SystemCallError) in try HostTools.execute(path, args) },
                print: { Swift.print($0) })
        }
    }

    public var system: System

    public init(system: System = .host) {
        self.system = system
    }

    public static func describe(_ path: String, _ state: State) -> String {
        switch state {
        case .ssi: return "ssi (the distro's file is \(SSIDiversion.divertedPath(path)))"
        case .distro: return "the distro's (not diverted)"
        case .otherPackage(let p): return "diverted by \(p): ssi leaves it alone"
        case .partial(let what): return "half done: \(what) (run `ssi divert enable` or `ssi divert disable`)"
        }
    }

    /// `ssi divert status`'s exit status, for scripts: 0 all ssi, 3 all the
    /// distro's, 1 mixed or half done.
    public static func statusCode(_ states: [(String, State)]) -> Int32 {
        if states.allSatisfy({ $0.1 == .ssi }) { return 0 }
        return states.allSatisfy({ $0.1 == .distro }) ? 3 : 1
    }

    public func states() throws(SSIError) -> [(String, State)] {
        let diversions = try system.diversions()
        return SSIDiversion.paths.map { path in
            (path, SSIDiversion.state(of: path, diversions: diversions, link: system.link(path),
                                      distribExists: system.exists(SSIDiversion.divertedPath(path))))
        }
    }

    public func enable() throws(SSIError) {
        guard system.isExecutableFile(SSIDiversion.binary) else {
            throw SSIError("divert", "\(SSIDiversion.binary) is not installed",
                           hint: "install the ssi package first (the links point there)")
        }
        try requireMergedUsr()
        let states = try states()
        for case let (path, .otherPackage(p)) in states {
            throw SSIError("divert", "\(path) is diverted by \(p); ssi will not divert it too",
                           hint: "see dpkg-divert --list '\(path)'; remove that diversion first (or leave this command as it is)")
        }
        let dpkgDivert = try divertTool()
        var undo: [() -> Void] = []
        var done: [String] = []
        do throws(SSIError) {
            for (path, state) in states where state != .ssi {
                try enable(path, dpkgDivert: dpkgDivert, undo: &undo)
                done.append("ssi divert: \(path) -> \(SSIDiversion.binary) (the distro's file: \(SSIDiversion.divertedPath(path)))")
            }
            for line in done { system.print(line) }
        } catch {
            for u in undo.reversed() { u() }
            throw SSIError("divert", error.message + (undo.isEmpty ? "" : " (what this command had changed is undone)"),
                           hint: error.hint)
        }
        if states.allSatisfy({ $0.1 == .ssi }) { system.print("ssi divert: already enabled") }
    }

    func enable(_ path: String, dpkgDivert: String, undo: inout [() -> Void]) throws(SSIError) {
        let system = system
        let distrib = SSIDiversion.divertedPath(path)
        let diversions = try system.diversions()
        if !diversions.contains(where: { $0.from == path }) {
            // dpkg-divert refuses to rename over an existing PATH.distrib.
            if system.exists(distrib) && system.exists(path) {
                throw SSIError("divert", "\(distrib) exists already, and \(path) too",
                               hint: "compare them and remove the one that is not the distro's file, then run this again")
            }
            try run(dpkgDivert, ["--package", SSIDiversion.package, "--add", "--rename", "--divert", distrib, path],
                    what: "dpkg-divert --add \(path)")
            undo.append {
                try? HostTools.run(dpkgDivert, ["--quiet", "--package", SSIDiversion.package, "--remove", "--rename", "--divert", distrib, path],
                                   what: "dpkg-divert --remove \(path)", execute: system.execute)
            }
        }
        let alias = SSIDiversion.alias(path)
        if alias != path && !diversions.contains(where: { $0.from == alias }) {
            // The same file under dpkg's name for it: no rename, the first
            // one moved it already.
            try run(dpkgDivert, ["--package", SSIDiversion.package, "--add", "--no-rename", "--divert", SSIDiversion.divertedPath(alias), alias],
                    what: "dpkg-divert --add \(alias)")
            undo.append {
                try? HostTools.run(dpkgDivert, ["--quiet", "--package", SSIDiversion.package, "--remove", "--no-rename",
                                                "--divert", SSIDiversion.divertedPath(alias), alias],
                                   what: "dpkg-divert --remove \(alias)", execute: system.execute)
            }
        }
        if system.link(path) == SSIDiversion.binary { return }
        if system.exists(path) {
            throw SSIError("divert", "\(path) is still there after dpkg-divert --rename moved it to \(distrib)",
                           hint: "look at what \(path) is (ls -l \(path)); move it away, then run this again")
        }
        guard system.exists(distrib) else {
            throw SSIError("divert", "\(distrib) does not exist: the distro's \(path) was not there to divert",
                           hint: "reinstall its package (apt-get install --reinstall \(Self.owner(path))), then run this again")
        }
        do {
            try system.symlink(SSIDiversion.binary, path)
        } catch {
            throw SSIError("divert", "linking \(path) to \(SSIDiversion.binary): \(error.description)",
                           hint: "check that \(dirname(of: path)) is writable (not a read-only /usr)")
        }
        undo.append { try? system.unlink(path) }
    }

    public func disable() throws(SSIError) {
        let states = try states()
        let dpkgDivert = try divertTool()
        var undo: [() -> Void] = []
        var done: [String] = []
        do throws(SSIError) {
            for (path, state) in states {
                switch state {
                case .distro, .otherPackage: continue
                case .ssi, .partial: break
                }
                try disable(path, dpkgDivert: dpkgDivert, undo: &undo)
                done.append("ssi divert: \(path) is the distro's again")
            }
            for line in done { system.print(line) }
        } catch {
            for u in undo.reversed() { u() }
            throw SSIError("divert", error.message + (undo.isEmpty ? "" : " (what this command had changed is undone)"),
                           hint: error.hint)
        }
        if done.isEmpty { system.print("ssi divert: not enabled; nothing to do") }
    }

    func disable(_ path: String, dpkgDivert: String, undo: inout [() -> Void]) throws(SSIError) {
        let system = system
        let distrib = SSIDiversion.divertedPath(path)
        let diversions = try system.diversions()
        let ours = diversions.first { $0.from == path && $0.package == SSIDiversion.package }
        let linked = system.link(path) == SSIDiversion.binary
        if linked {
            if ours == nil && !system.exists(distrib) {
                throw SSIError("divert", "\(path) links to ssi, but neither a diversion nor \(distrib) holds the distro's file",
                               hint: "apt-get install --reinstall \(Self.owner(path)) puts the distro's file back")
            }
            do { try system.unlink(path) } catch {
                throw SSIError("divert", "removing the link \(path): \(error.description)",
                               hint: "check that \(dirname(of: path)) is writable")
            }
            undo.append { try? system.symlink(SSIDiversion.binary, path) }
        }
        let alias = SSIDiversion.alias(path)
        if alias != path, let a = diversions.first(where: { $0.from == alias && $0.package == SSIDiversion.package }) {
            try run(dpkgDivert, ["--package", SSIDiversion.package, "--remove", "--no-rename", "--divert", a.to, alias],
                    what: "dpkg-divert --remove \(alias)")
            undo.append {
                try? HostTools.run(dpkgDivert, ["--quiet", "--package", SSIDiversion.package, "--add", "--no-rename", "--divert", a.to, alias],
                                   what: "dpkg-divert --add \(alias)", execute: system.execute)
            }
        }
        if let ours {
            if system.exists(path) {
                throw SSIError("divert", "\(path) exists and is not ssi's link; dpkg-divert would not rename \(ours.to) over it",
                               hint: "look at what \(path) is; remove it if \(ours.to) is the distro's file, then run this again")
            }
            try run(dpkgDivert, ["--package", SSIDiversion.package, "--remove", "--rename", "--divert", ours.to, path],
                    what: "dpkg-divert --remove \(path)")
            undo.append {
                try? HostTools.run(dpkgDivert, ["--quiet", "--package", SSIDiversion.package, "--add", "--rename", "--divert", ours.to, path],
                                   what: "dpkg-divert --add \(path)", execute: system.execute)
            }
        }
    }

    /// ssi's links are absolute, so /bin and /sbin must be the same
    /// folders as /usr/bin and /usr/sbin (Debian 12's default).
    func requireMergedUsr() throws(SSIError) {
        for dir in ["/bin", "/sbin"] {
            guard system.realPath(dir) == "/usr" + dir else {
                throw SSIError("divert", "\(dir) is not a link to /usr\(dir): this system's /usr is not merged",
                               hint: "apt-get install usrmerge, then run this again")
            }
        }
    }

    func divertTool() throws(SSIError) -> String {
        do { return try HostTools.find("dpkg-divert", package: "dpkg", isExecutableFile: system.isExecutableFile) } catch {
            throw SSIError("divert", error.message, hint: error.hint)
        }
    }

    func run(_ path: String, _ args: [String], what: String) throws(SSIError) {
        do { try HostTools.run(path, ["--quiet"] + args, what: what, execute: system.execute) } catch {
            throw SSIError("divert", error.message, hint: error.hint)
        }
    }

    /// The package that ships the command on Debian 12, for hints.
    static func owner(_ path: String) -> String {
        path.hasSuffix("/fsck") ? "util-linux" : "mount"
    }
}
