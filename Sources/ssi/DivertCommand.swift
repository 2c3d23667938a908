#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import SSICore
import SSILinux

/// `ssi divert`: the opt-in that puts ssi in place of the distro's mount,
/// umount, swapon, swapoff and fsck, with dpkg's diversions, so that
/// package upgrades land beside ssi (PATH.distrib) instead of over it; and
/// the way back. The Debian package's prerm runs `disable`.
struct DivertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "divert",
        abstract: "Put ssi in place of mount, umount, swapon, swapoff and fsck (dpkg diversions), or give them back.",
        discussion: """
            enable diverts each of \(SSIDiversion.paths.joined(separator: ", ")) to PATH.distrib \
            (dpkg-divert --package ssi --rename; also under its /bin or /sbin name, the one \
            dpkg's database knows on a merged /usr) and puts a link to \(SSIDiversion.binary) in \
            its place. disable removes the links and the diversions and renames the distro's \
            files back. Both are idempotent; a failure undoes what the command did before it. \
            Removing or purging the ssi package runs disable.
            """,
        subcommands: [DivertEnableCommand.self, DivertDisableCommand.self, DivertStatusCommand.self])
}

struct DivertEnableCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enable",
        abstract: "Divert the distro's mount, umount, swapon, swapoff and fsck and link ssi in their place.")

    func run() throws {
        do throws(SSIError) {
            try Diverter().enable()
        } catch {
            printError(tool: "ssi", error)
            throw ExitCode(1)
        }
    }
}

struct DivertDisableCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "disable",
        abstract: "Remove ssi's links and diversions: the distro's commands are back in place.")

    func run() throws {
        do throws(SSIError) {
            try Diverter().disable()
        } catch {
            printError(tool: "ssi", error)
            throw ExitCode(1)
        }
    }
}

struct DivertStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show, for each command, whether it is ssi or the distro's.")

    func run() throws {
        let states: [(String, SSIDiversion.State)]
        do throws(SSIError) {
            states = try Diverter().states()
        } catch {
            printError(tool: "ssi", error)
            throw ExitCode(1)
        }
        for (path, state) in states {
            print("\(path): " + Diverter.describe(path, state))
        }
        // For scripts: 0 all ssi, 3 all the distro's, 1 mixed or half done.
        if states.allSatisfy({ $0.1 == .ssi }) { return }
        throw ExitCode(states.allSatisfy({ $0.1 == .distro }) ? 3 : 1)
    }
}

/// Runs the changes, keeping a list of how to undo each so that a failure
/// leaves things as they were before the command.
struct Diverter {
    typealias State = SSIDiversion.State

    static func describe(_ path: String, _ state: State) -> String {
        switch state {
        case .ssi: return "ssi (the distro's file is \(SSIDiversion.divertedPath(path)))"
        case .distro: return "the distro's (not diverted)"
        case .otherPackage(let p): return "diverted by \(p): ssi leaves it alone"
        case .partial(let what): return "half done: \(what) (run `ssi divert enable` or `ssi divert disable`)"
        }
    }

    func states() throws(SSIError) -> [(String, State)] {
        let diversions = try DpkgDiversions.read()
        return SSIDiversion.paths.map { path in
            let link = (try? FileSystem.status(path))?.kind == .symlink ? try? FileSystem.readLink(path) : nil
            return (path, SSIDiversion.state(of: path, diversions: diversions, link: link,
                                             distribExists: FileSystem.exists(SSIDiversion.divertedPath(path))))
        }
    }

    func enable() throws(SSIError) {
        guard FileSystem.isExecutableFile(SSIDiversion.binary) else {
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
            for line in done { print(line) }
        } catch {
            for u in undo.reversed() { u() }
            throw SSIError("divert", error.message + (undo.isEmpty ? "" : " (what this command had changed is undone)"),
                           hint: error.hint)
        }
        if states.allSatisfy({ $0.1 == .ssi }) { print("ssi divert: already enabled") }
    }

    func enable(_ path: String, dpkgDivert: String, undo: inout [() -> Void]) throws(SSIError) {
        let distrib = SSIDiversion.divertedPath(path)
        let diversions = try DpkgDiversions.read()
        if !diversions.contains(where: { $0.from == path }) {
            // dpkg-divert refuses to rename over an existing PATH.distrib.
            if FileSystem.exists(distrib) && FileSystem.exists(path) {
                throw SSIError("divert", "\(distrib) exists already, and \(path) too",
                               hint: "compare them and remove the one that is not the distro's file, then run this again")
            }
            try run(dpkgDivert, ["--package", SSIDiversion.package, "--add", "--rename", "--divert", distrib, path],
                    what: "dpkg-divert --add \(path)")
            undo.append {
                try? runTool(dpkgDivert, ["--quiet", "--package", SSIDiversion.package, "--remove", "--rename", "--divert", distrib, path],
                             what: "dpkg-divert --remove \(path)")
            }
        }
        let alias = SSIDiversion.alias(path)
        if alias != path && !diversions.contains(where: { $0.from == alias }) {
            // The same file under dpkg's name for it: no rename, the first
            // one moved it already.
            try run(dpkgDivert, ["--package", SSIDiversion.package, "--add", "--no-rename", "--divert", SSIDiversion.divertedPath(alias), alias],
                    what: "dpkg-divert --add \(alias)")
            undo.append {
                try? runTool(dpkgDivert, ["--quiet", "--package", SSIDiversion.package, "--remove", "--no-rename",
                                          "--divert", SSIDiversion.divertedPath(alias), alias],
                             what: "dpkg-divert --remove \(alias)")
            }
        }
        if (try? FileSystem.readLink(path)) == SSIDiversion.binary { return }
        if FileSystem.exists(path) {
            throw SSIError("divert", "\(path) is still there after dpkg-divert --rename moved it to \(distrib)",
                           hint: "look at what \(path) is (ls -l \(path)); move it away, then run this again")
        }
        guard FileSystem.exists(distrib) else {
            throw SSIError("divert", "\(distrib) does not exist: the distro's \(path) was not there to divert",
                           hint: "reinstall its package (apt-get install --reinstall \(Self.owner(path))), then run this again")
        }
        do {
            try FileSystem.symlink(target: SSIDiversion.binary, at: path)
        } catch {
            throw SSIError("divert", "linking \(path) to \(SSIDiversion.binary): \(error.description)",
                           hint: "check that \(dirname(path)) is writable (not a read-only /usr)")
        }
        undo.append { try? FileSystem.unlink(path) }
    }

    func disable() throws(SSIError) {
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
            for line in done { print(line) }
        } catch {
            for u in undo.reversed() { u() }
            throw SSIError("divert", error.message + (undo.isEmpty ? "" : " (what this command had changed is undone)"),
                           hint: error.hint)
        }
        if done.isEmpty { print("ssi divert: not enabled; nothing to do") }
    }

    func disable(_ path: String, dpkgDivert: String, undo: inout [() -> Void]) throws(SSIError) {
        let distrib = SSIDiversion.divertedPath(path)
        let diversions = try DpkgDiversions.read()
        let ours = diversions.first { $0.from == path && $0.package == SSIDiversion.package }
        let linked = (try? FileSystem.readLink(path)) == SSIDiversion.binary
        if linked {
            if ours == nil && !FileSystem.exists(distrib) {
                throw SSIError("divert", "\(path) links to ssi, but neither a diversion nor \(distrib) holds the distro's file",
                               hint: "apt-get install --reinstall \(Self.owner(path)) puts the distro's file back")
            }
            do { try FileSystem.unlink(path) } catch {
                throw SSIError("divert", "removing the link \(path): \(error.description)",
                               hint: "check that \(dirname(path)) is writable")
            }
            undo.append { try? FileSystem.symlink(target: SSIDiversion.binary, at: path) }
        }
        let alias = SSIDiversion.alias(path)
        if alias != path, let a = diversions.first(where: { $0.from == alias && $0.package == SSIDiversion.package }) {
            try run(dpkgDivert, ["--package", SSIDiversion.package, "--remove", "--no-rename", "--divert", a.to, alias],
                    what: "dpkg-divert --remove \(alias)")
            undo.append {
                try? runTool(dpkgDivert, ["--quiet", "--package", SSIDiversion.package, "--add", "--no-rename", "--divert", a.to, alias],
                             what: "dpkg-divert --add \(alias)")
            }
        }
        if let ours {
            if FileSystem.exists(path) {
                throw SSIError("divert", "\(path) exists and is not ssi's link; dpkg-divert would not rename \(ours.to) over it",
                               hint: "look at what \(path) is; remove it if \(ours.to) is the distro's file, then run this again")
            }
            try run(dpkgDivert, ["--package", SSIDiversion.package, "--remove", "--rename", "--divert", ours.to, path],
                    what: "dpkg-divert --remove \(path)")
            undo.append {
                try? runTool(dpkgDivert, ["--quiet", "--package", SSIDiversion.package, "--add", "--rename", "--divert", ours.to, path],
                             what: "dpkg-divert --add \(path)")
            }
        }
    }

    /// ssi's links are absolute, so /bin and /sbin must be the same
    /// folders as /usr/bin and /usr/sbin (Debian 12's default).
    func requireMergedUsr() throws(SSIError) {
        for dir in ["/bin", "/sbin"] {
            guard (try? FileSystem.realPath(dir)) == "/usr" + dir else {
                throw SSIError("divert", "\(dir) is not a link to /usr\(dir): this system's /usr is not merged",
                               hint: "apt-get install usrmerge, then run this again")
            }
        }
    }

    func divertTool() throws(SSIError) -> String {
        do { return try tool("dpkg-divert", package: "dpkg") } catch {
            throw SSIError("divert", error.message, hint: error.hint)
        }
    }

    func run(_ path: String, _ args: [String], what: String) throws(SSIError) {
        do { try runTool(path, ["--quiet"] + args, what: what) } catch {
            throw SSIError("divert", error.message, hint: error.hint)
        }
    }

    /// The package that ships the command on Debian 12, for hints.
    static func owner(_ path: String) -> String {
        path.hasSuffix("/fsck") ? "util-linux" : "mount"
    }

    func dirname(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }
}
