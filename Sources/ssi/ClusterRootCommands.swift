import ArgumentParser
import SSICore
import SSIConfig
import SSIMembership
import SSIClusterFS

/// `ssi cluster root`: make and grow the shared GFS2 root. The checks, the
/// mkfs.gfs2 plan and the copy are SSIClusterFS' `RootCreation`, the
/// journal count `JournalAddition`.
struct ClusterRootCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "root",
        abstract: "Make the cluster's shared GFS2 root and add journals to it.",
        subcommands: [RootCreateCommand.self, RootAddJournalCommand.self])
}

struct RootCreateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Format a shared disk with GFS2 for the cluster and fill it with a distro tree.",
        discussion: """
            The file system is made for the configured cluster: lock_dlm, the lock table from \
            [root] lock_table, one journal per configured node plus --spare-journals (a node \
            added later takes a spare; `ssi cluster root add-journal` adds more). Journals are \
            --journal-size MiB each (GFS2's minimum is 8; mkfs.gfs2's default 128 suits busy \
            nodes; the rest of the disk holds the tree). The tree is copied from a folder (one \
            file system: mounts inside it become empty folders, so / of an installed system \
            works) or unpacked from a tarball with tar. The disk is mounted with lock_nolock for \
            the copy, so no cluster is needed, but no node may have it mounted: a disk that \
            holds any file system is refused without --force, and a disk mounted here is \
            refused always. A disk image file is attached to a loop device for the copy.
            """)

    @Option(name: .customLong("gfs2"), help: ArgumentHelp("The shared disk: /dev/NAME, UUID=..., LABEL=..., or a disk image file.", valueName: "device"))
    var device: String

    @Option(name: .customLong("from"), help: ArgumentHelp("The distro tree: a folder, or a tarball (.tar, .tar.gz, .tar.xz, .tar.zst).", valueName: "dir|tarball"))
    var source: String

    @Option(help: ArgumentHelp("The cluster configuration (its root must be gfs2).", valueName: "file"))
    var config: String = ClusterConfig.defaultPath

    @Option(name: .customLong("spare-journals"), help: ArgumentHelp("Journals beyond one per configured node.", valueName: "n"))
    var spareJournals: Int = 1

    @Option(name: .customLong("journal-size"), help: ArgumentHelp("Size of each journal, MiB (8-1024).", valueName: "mib"))
    var journalMiB: Int = 64

    @Flag(help: "Format a disk that already holds a file system.")
    var force = false

    func run() throws {
        do throws(SSIError) {
            try create()
        } catch {
            printError(tool: "ssi-cluster root create", error)
            throw ExitCode(1)
        }
    }

    func create() throws(SSIError) {
        let options = RootCreation.Options(device: device, source: source, config: config,
                                           spareJournals: spareJournals, journalMiB: journalMiB, force: force)
        try RootCreation(options, system: .ssiHost(tool: "ssi-cluster root create")).create()
    }
}

struct RootAddJournalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add-journal",
        abstract: "Add journals to the mounted GFS2 root (gfs2_jadd), so more nodes can mount it.",
        discussion: """
            Run it on a node that has the root mounted, after adding nodes to the configuration. \
            Without --count it adds as many as the configuration has nodes beyond the journals \
            the file system has.
            """)

    @Option(help: ArgumentHelp("The cluster configuration.", valueName: "file"))
    var config: String = ClusterConfig.defaultPath

    @Option(help: ArgumentHelp("Journals to add (default: what the configured nodes need).", valueName: "n"))
    var count: Int?

    @Option(name: .customLong("journal-size"), help: ArgumentHelp("Size of each new journal, MiB (8-1024).", valueName: "mib"))
    var journalMiB: Int = 64

    @Option(name: .customLong("mount-point"), help: ArgumentHelp("Where the GFS2 root is mounted.", valueName: "dir"))
    var mountPoint: String = "/"

    func run() throws {
        do throws(SSIError) {
            try add()
        } catch {
            printError(tool: "ssi-cluster root add-journal", error)
            throw ExitCode(1)
        }
    }

    func add() throws(SSIError) {
        let options = JournalAddition.Options(config: config, count: count, journalMiB: journalMiB, mountPoint: mountPoint)
        try JournalAddition(options, system: .ssiHost(tool: "ssi-cluster root add-journal")).add()
    }
}

extension RootDiskSystem {
    /// This machine, with the running cluster's view of which members have
    /// a GFS2 file system mounted (nil off the cluster), warnings on stderr.
    static func ssiHost(tool: String) -> RootDiskSystem {
        .host(membersMounting: { table in
            guard let view = try? ClusterView.load() else { return nil }
            return MountedBy(clusterName: view.clusterName,
                             members: view.members(mounting: table).map { ($0.name, $0.number) })
        }, warn: { printError(tool: tool, $0) })
    }
}
