import SSICore
import SSILinux
import SSITools

/// `ssi divert`: the opt-in that puts ssi in place of the distro's mount,
/// umount, swapon, swapoff and fsck, with dpkg's diversions, so that
/// package upgrades land beside ssi (PATH.distrib) instead of over it; and
/// the way back. The Debian package's prerm runs `disable`. The logic and
/// its undo list are SSITools' `Diverter`.
enum DivertCommand {
    static let command = CLICommand(
        "divert",
        abstract: "Put ssi in place of mount, umount, swapon, swapoff and fsck (dpkg diversions), or give them back.",
        discussion: """
            enable diverts each of \(SSIDiversion.paths.joined(separator: ", ")) to PATH.distrib \
            (dpkg-divert --package ssi --rename; also under its /bin or /sbin name, the one \
            dpkg's database knows on a merged /usr) and puts a link to \(SSIDiversion.binary) in \
            its place. disable removes the links and the diversions and renames the distro's \
            files back. Both are idempotent; a failure undoes what the command did before it. \
            Removing or purging the ssi package runs disable.
            """,
        subcommands: [DivertEnableCommand.command, DivertDisableCommand.command, DivertStatusCommand.command])
}

struct DivertEnableCommand {
    static let command = CLICommand(
        "enable",
        abstract: "Divert the distro's mount, umount, swapon, swapoff and fsck and link ssi in their place.") { _ in try DivertEnableCommand().run() }

    func run() throws {
        do throws(SSIError) {
            try Diverter().enable()
        } catch {
            printError(tool: "ssi", error)
            throw ExitCode(1)
        }
    }
}

struct DivertDisableCommand {
    static let command = CLICommand(
        "disable",
        abstract: "Remove ssi's links and diversions: the distro's commands are back in place.") { _ in try DivertDisableCommand().run() }

    func run() throws {
        do throws(SSIError) {
            try Diverter().disable()
        } catch {
            printError(tool: "ssi", error)
            throw ExitCode(1)
        }
    }
}

struct DivertStatusCommand {
    static let command = CLICommand(
        "status",
        abstract: "Show, for each command, whether it is ssi or the distro's.") { _ in try DivertStatusCommand().run() }

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
        let code = Diverter.statusCode(states)
        if code != 0 { throw ExitCode(code) }
    }
}
