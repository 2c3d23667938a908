import SSICore
import SSIConfig
import SSIMembership
import SSIClusterFS
import SSITools

/// `ssi cluster root`: make and grow the shared GFS2 root. The checks, the
/// mkfs.gfs2 plan and the copy are SSIClusterFS' `RootCreation`, the
/// journal count `JournalAddition`.
enum ClusterRootCommand {
    static let command = CLICommand(
        "root",
        abstract: "Make the cluster's shared GFS2 root and add journals to it.",
        subcommands: [RootCreateCommand.command, RootAddJournalCommand.command])
}

struct RootCreateCommand {
    static let command = CLICommand(
        "create",
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
            """,
        options: [
            .value("gfs2", "device", help: "The shared disk: /dev/NAME, UUID=..., LABEL=..., or a disk image file.", required: true),
            .value("from", "dir|tarball", help: "The distro tree: a folder, or a tarball (.tar, .tar.gz, .tar.xz, .tar.zst).", required: true),
            .value("config", "file", help: "The cluster configuration (its root must be gfs2).", default: ClusterConfig.defaultPath),
            .integer("spare-journals", "n", as: Int.self, help: "Journals beyond one per configured node.", default: Defaults.spareJournals),
            .integer("journal-size", "mib", as: Int.self, help: "Size of each journal, MiB (8-1024).", default: Defaults.journalMiB),
            .flag("force", help: "Format a disk that already holds a file system."),
        ]) { try RootCreateCommand($0).run() }

    enum Defaults {
        static let spareJournals = 1
        static let journalMiB = 64
    }

    var device: String
    var source: String
    var config: String
    var spareJournals: Int
    var journalMiB: Int
    var force: Bool

    init(_ v: CLIValues) {
        // --gfs2 and --from are required: the parser refused the command line without them.
        device = v.string("gfs2") ?? ""
        source = v.string("from") ?? ""
        config = v.string("config") ?? ClusterConfig.defaultPath
        spareJournals = v.integer("spare-journals") ?? Defaults.spareJournals
        journalMiB = v.integer("journal-size") ?? Defaults.journalMiB
        force = v.flag("force")
    }

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

struct RootAddJournalCommand {
    static let command = CLICommand(
        "add-journal",
        abstract: "Add journals to the mounted GFS2 root (gfs2_jadd), so more nodes can mount it.",
        discussion: """
            Run it on a node that has the root mounted, after adding nodes to the configuration. \
            Without --count it adds as many as the configuration has nodes beyond the journals \
            the file system has.
            """,
        options: [
            .value("config", "file", help: "The cluster configuration.", default: ClusterConfig.defaultPath),
            .integer("count", "n", as: Int.self, help: "Journals to add (default: what the configured nodes need)."),
            .integer("journal-size", "mib", as: Int.self, help: "Size of each new journal, MiB (8-1024).", default: RootCreateCommand.Defaults.journalMiB),
            .value("mount-point", "dir", help: "Where the GFS2 root is mounted.", default: "/"),
        ]) { try RootAddJournalCommand($0).run() }

    var config: String
    var count: Int?
    var journalMiB: Int
    var mountPoint: String

    init(_ v: CLIValues) {
        config = v.string("config") ?? ClusterConfig.defaultPath
        count = v.integer("count")
        journalMiB = v.integer("journal-size") ?? RootCreateCommand.Defaults.journalMiB
        mountPoint = v.string("mount-point") ?? "/"
    }

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
