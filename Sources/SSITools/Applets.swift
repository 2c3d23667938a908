/// Every name the one ssi binary answers to, in one table: main()
/// dispatches on it, the command tree's subcommands (hence the man pages
/// and shell completions generated from it) follow it, and a test holds
/// the Debian package's links and man page links to it.
public struct Applet: Sendable, Equatable {
    /// What runs. main() switches on it exhaustively, so a new case cannot
    /// be left without a command.
    public enum Command: String, Sendable, CaseIterable {
        case initProgram = "init"
        case mkinitrd
        case cluster
        case mount, umount, swapon, swapoff, fsck
        case divert
        case migrate, onnode
        case wherePID = "where_pid"
        case kill
        case deputy = "ssi-deputy"
        case loadlevel, ll, loads, onall
        case clusterNodeNum = "clusternode_num"
        case clusterList = "cluster-list"
        case fence = "fence_ssi"
    }

    public var command: Command
    /// Names argv[0]'s last component may have to run it directly.
    public var names: [String]
    /// `ssi NAME` and the command tree's subcommand (nil: none).
    public var subcommand: String?
    /// util-linux's or OpenSSI's own command line: main() runs it for
    /// `ssi NAME ...` before the command tree parses the words.
    public var ownCommandLine: Bool
    /// The Debian package's links to /usr/sbin/ssi (debian/ssi.links).
    public var packageLinks: [String]
    /// The tool's name in its messages when run as `ssi NAME`.
    public var program: String
    /// The distro's command `ssi divert enable` puts a link in place of.
    public var replaces: String?

    init(_ command: Command, names: [String], subcommand: String?, own: Bool = false, links: [String], program: String? = nil,
         replaces: String? = nil) {
        self.command = command
        self.replaces = replaces
        self.names = names
        self.subcommand = subcommand
        self.ownCommandLine = own
        self.packageLinks = links
        self.program = program ?? names.first ?? command.rawValue
    }

    /// In `ssi --help` order. Bare util-linux names ("mount") are the links
    /// `ssi divert enable` puts in place of the distro's commands; "init" is
    /// /init in the image.
    public static let all: [Applet] = [
        Applet(.mkinitrd, names: ["ssi-mkinitrd", "mkinitrd"], subcommand: "mkinitrd", links: ["usr/sbin/ssi-mkinitrd"]),
        Applet(.initProgram, names: ["ssi-init", "init"], subcommand: "init", links: ["usr/sbin/ssi-init"]),
        Applet(.cluster, names: ["ssi-cluster"], subcommand: "cluster", links: ["usr/sbin/ssi-cluster"]),
        Applet(.mount, names: ["ssi-mount", "mount"], subcommand: "mount", own: true, links: ["usr/sbin/ssi-mount"],
               replaces: "/usr/bin/mount"),
        Applet(.umount, names: ["ssi-umount", "umount"], subcommand: "umount", own: true, links: ["usr/sbin/ssi-umount"],
               replaces: "/usr/bin/umount"),
        Applet(.swapon, names: ["ssi-swapon", "swapon"], subcommand: "swapon", own: true, links: ["usr/sbin/ssi-swapon"],
               replaces: "/usr/sbin/swapon"),
        Applet(.swapoff, names: ["ssi-swapoff", "swapoff"], subcommand: "swapoff", own: true, links: ["usr/sbin/ssi-swapoff"],
               replaces: "/usr/sbin/swapoff"),
        Applet(.fsck, names: ["ssi-fsck", "fsck"], subcommand: "fsck", own: true, links: ["usr/sbin/ssi-fsck"],
               replaces: "/usr/sbin/fsck"),
        Applet(.divert, names: [], subcommand: "divert", links: [], program: "ssi divert"),
        Applet(.migrate, names: ["ssi-migrate", "migrate"], subcommand: "migrate", own: true,
               links: ["usr/sbin/ssi-migrate", "usr/bin/migrate"]),
        Applet(.onnode, names: ["onnode"], subcommand: "onnode", own: true, links: ["usr/bin/onnode"]),
        Applet(.wherePID, names: ["where_pid"], subcommand: "where_pid", own: true, links: ["usr/bin/where_pid"]),
        Applet(.kill, names: ["ssi-kill"], subcommand: "kill", own: true, links: ["usr/bin/ssi-kill"]),
        Applet(.loadlevel, names: ["loadlevel"], subcommand: "loadlevel", own: true, links: ["usr/bin/loadlevel"]),
        Applet(.ll, names: ["ssi-ll"], subcommand: "ll", own: true, links: ["usr/bin/ssi-ll"]),
        Applet(.loads, names: ["loads"], subcommand: "loads", own: true, links: ["usr/bin/loads"]),
        Applet(.onall, names: ["onall"], subcommand: "onall", own: true, links: ["usr/bin/onall"]),
        Applet(.clusterNodeNum, names: ["clusternode_num"], subcommand: "clusternode_num", own: true, links: ["usr/bin/clusternode_num"]),
        // OpenSSI's `cluster` (its scripts' node list); ssi's own cluster
        // commands are `ssi cluster ...`, reached by subcommand only.
        Applet(.clusterList, names: ["cluster"], subcommand: nil, own: true, links: ["usr/bin/cluster"]),
        // Exec'd by the process agent into a process that moved away
        // (its deputy); never run by hand, so no link and no subcommand.
        Applet(.deputy, names: ["ssi-deputy"], subcommand: nil, links: []),
        Applet(.fence, names: ["fence_ssi"], subcommand: nil, links: ["usr/sbin/fence_ssi"]),
    ]

    /// The applet argv[0] names (its last component), if any.
    public static func named(_ name: String) -> Applet? {
        all.first { $0.names.contains(name) }
    }

    /// The applet of `ssi SUBCOMMAND`, if any.
    public static func subcommand(_ name: String) -> Applet? {
        all.first { $0.subcommand == name }
    }

    public static func applet(_ command: Command) -> Applet {
        // Every case has a row: the table test checks it.
        all.first { $0.command == command } ?? Applet(command, names: [], subcommand: nil, links: [])
    }
}
