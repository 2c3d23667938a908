#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
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
            the file system has. The members that have the root mounted read its journal index \
            when they mounted it: until each has mounted it again, a node that uses a new journal \
            and fails cannot be recovered by them. --reboot does that remount: the other members \
            that have it mounted reboot one at a time (ssi cluster reboot), each back before the \
            next goes, and then this node, driven from one of them.
            """,
        options: [
            .value("config", "file", help: "The cluster configuration.", default: ClusterConfig.defaultPath),
            .integer("count", "n", as: Int.self, help: "Journals to add (default: what the configured nodes need)."),
            .integer("journal-size", "mib", as: Int.self, help: "Size of each new journal, MiB (8-1024).", default: RootCreateCommand.Defaults.journalMiB),
            .value("mount-point", "dir", help: "Where the GFS2 root is mounted.", default: "/"),
            .flag("reboot", help: "Then reboot every member that has it mounted, one at a time, this node last."),
        ]) { try RootAddJournalCommand($0).run() }

    var config: String
    var count: Int?
    var journalMiB: Int
    var mountPoint: String
    var reboot: Bool

    init(_ v: CLIValues) {
        reboot = v.flag("reboot")
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
        if reboot {
            // Checked before the journals change: a refusal leaves the
            // file system as it was.
            guard geteuid() == 0 else { throw SSIError("reboot", "rebooting nodes needs root", hint: "run it as root") }
            _ = try refreshPlan()
        }
        try JournalAddition(options, system: .ssiHost(tool: "ssi-cluster root add-journal")).add()
        if reboot { try rebootHolders() }
    }

    /// Which members mount the root again, from the configuration's lock
    /// table and the agent's view.
    func refreshPlan() throws(SSIError) -> (driver: MemberDriver, view: ClusterView, plan: RebootPlan, thisNode: Bool) {
        let cfg: ClusterConfig
        do { cfg = try ClusterConfig.load(path: config) } catch {
            throw SSIError("reboot", "\(config): \(error.description)")
        }
        guard case .gfs2(let g) = cfg.root else {
            throw SSIError("reboot", "\(config) has no GFS2 root: --reboot is for a GFS2 root's journals")
        }
        let driver = MemberDriver(step: "reboot", stateDirectory: ClusterView.defaultDirectory)
        let view = try driver.view()
        let (plan, thisNode) = try RebootPlan.journalRefresh(view: view, lockTable: g.lockTable)
        return (driver, view, plan, thisNode)
    }

    /// The rolling reboot: the others from here; then this node, asked of
    /// a member that has rebooted (it knows every journal now) as a
    /// transient systemd unit there, so that it outlives this node.
    func rebootHolders() throws(SSIError) {
        let (driver, view, plan, thisNode) = try refreshPlan()
        driver.say("the members that have the root mounted mount it again: " + plan.summary + (thisNode ? ", then this node" : ""))
        let done = try ClusterRebootCommand.roll(plan, driver: driver, seconds: 900)
        guard thisNode else { return driver.say("done: \(done.count) nodes rebooted") }
        guard let helper = plan.nodes.first ?? view.nodes.first(where: { $0.state == .up && $0.number != view.localNode }) else {
            throw SSIError("reboot", "no other member is up to reboot this node from", hint: "reboot this node with systemctl reboot")
        }
        var fromThere = view
        fromThere.localNode = helper.number
        _ = try RebootPlan.make(view: fromThere, words: [String(view.localNode)], cfsServer: nil)
        let exe = (try? FileSystem.readLink("/proc/self/exe")) ?? "/usr/sbin/ssi"
        let unit = "ssi-reboot-node\(view.localNode)"
        let status = try driver.onnode(helper.number, ["systemd-run", "--unit", unit, "--collect", exe, "cluster", "reboot", String(view.localNode)])
        guard status == 0 else {
            throw SSIError("reboot", "node \(helper.number) did not start the reboot of this node (systemd-run exit \(status))",
                           hint: "run ssi cluster reboot \(view.localNode) on node \(helper.number)")
        }
        driver.say("this node reboots now, driven from node \(helper.number) (\(printable(helper.name))): journalctl -u \(unit) there")
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
