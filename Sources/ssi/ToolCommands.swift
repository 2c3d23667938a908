import SSITools

// The util-linux drop-ins parse their own command lines (util-linux's, word
// for word: see SSITools); main.swift runs them before the command tree
// ever sees "ssi mount ...". These commands are here for the help, the man
// pages and the shell completions the package builds from the tree, and
// to run the tool if they are reached anyway.

/// The tree's command for an applet with its own command line: its help
/// and man page, and the tool itself (Tools.run, as main.swift runs it)
/// should the tree be reached with its name.
func ownCommandLine(_ command: Applet.Command, usage: String, abstract: String, discussion: String) -> CLICommand {
    let applet = Applet.applet(command)
    // A command that takes no arguments (loads, clusternode_num) lists none.
    let arguments = usage.isEmpty ? [] : [CLIArgument(CLIProgram.passThroughName, help: usage, optional: true, repeated: true)]
    return CLICommand(applet.subcommand ?? command.rawValue, abstract: abstract, discussion: discussion,
                      arguments: arguments,
                      passThrough: true) { v in
        Tools.run(applet, program: applet.program, invokedAs: applet.program, v.argumentList(CLIProgram.passThroughName))
    }
}

enum ToolDocCommands {
    static let mount = ownCommandLine(.mount, usage: "util-linux mount's arguments.",
        abstract: "Mount a file system on this node or, with a cluster running, on every node (ssi-mount).",
        discussion: """
            util-linux mount's command line, messages and exit codes (0, 1 usage, 2 system, 32 failure, 64 some \
            of -a failed), with libmount doing the work: mount [-lhV]; mount -a [-fFnrsvw] [-t TYPES] [-O OPTS]; \
            mount [-fnrsvw] [-o OPTS] DEVICE|DIR; mount [-fnrsvw] [-t TYPE] [-o OPTS] DEVICE DIR; --bind, --rbind, \
            --move, --make-*, -o remount, -T FSTAB, -L LABEL, -U UUID, -N NS, --target-prefix DIR, \
            --options-mode, --options-source, --options-source-force (a plain local mount, never a cluster one).

            With a cluster running on the node (a membership agent on /run/ssi/agent.sock), OpenSSI's node= option \
            says who mounts: node=N (node N mounts the device and exports it over NFSv4; every other member \
            mounts that at the same path), node=* (every node mounts it itself), node=N:M (N mounts it, M is \
            recorded as its takeover node). A local block device without node= means node=<this node>. A cluster \
            mount is all or nothing: if a member fails, every member unmounts it again and each node's error is \
            printed (exit 32). Nodes that join later mount the cluster mount table before their hand-off. \
            Without a cluster, node= is dropped and this is util-linux's mount.

            Differences from util-linux 2.38 besides node=: --version says "from ssi"; called as ssi mount, \
            messages start with ssi-mount:; the --help text is ssi's own.
            """)

    static let umount = ownCommandLine(.umount, usage: "util-linux umount's arguments.",
        abstract: "Unmount a file system; a cluster mount on every node (ssi-umount).",
        discussion: """
            util-linux umount's command line and exit codes (-a, -A, -c, -d, -f, -i, -l, -n, -q, -r, -R, -t, -O, \
            -v, -N; -N with -R or -A is refused). A target in \
            the cluster mount table (/run/ssi/cluster-mounts) is unmounted on every member: the others first, \
            then the owner, which also stops exporting it. Anything else is unmounted here by libmount.
            """)

    static let swapon = ownCommandLine(.swapon, usage: "util-linux swapon's arguments.",
        abstract: "Enable this node's swap areas (ssi-swapon).",
        discussion: """
            util-linux swapon's command line (-a, -d[POLICY], -e, -p PRIO, -s, --show[=COLUMNS], --raw, --bytes, --noheadings, -T FSTAB, -L LABEL, -U UUID, -v) and \
            exit codes (0, 1 usage, 255 failure). The swap signature is checked with libblkid. A swap area \
            belongs to the node whose cluster.conf [[node]] swap or fstab node=N names it; with a cluster \
            running, an area that belongs to another node, or that another member has active, is refused with \
            that node named. -a turns on this node's areas and fstab swap lines without node= (with no cluster \
            running, every fstab swap line: node= is dropped, as by mount -a); a missing one is an error unless \
            its line says nofail or -e is given; -v says why a line is passed over (noauto, already active). \
            Differences from util-linux 2.38: -T/--fstab is 2.39's; --version says "from ssi".
            """)

    static let swapoff = ownCommandLine(.swapoff, usage: "util-linux swapoff's arguments.",
        abstract: "Disable swap areas (ssi-swapoff).",
        discussion: """
            util-linux swapoff's command line (-a, -v, -L, -U) and exit codes (4 failed, 16 usage, \
            32/64 with -a). -a turns off every active area of this node (/proc/swaps), then tries, quietly, \
            fstab's lines that were not active. Differences from util-linux 2.38: --version says "from ssi".
            """)

    static let fsck = ownCommandLine(.fsck, usage: "util-linux fsck's arguments.",
        abstract: "Check a file system, never one another node has mounted (ssi-fsck).",
        discussion: """
            util-linux fsck's command line (-A, -R, -M, -N, -T, -V, -s, -t TYPES with opts=/noopts=, -C [FD], \
            -r [FD]; other options and everything after -- go to the checker) and exit codes (the OR of the \
            checkers'; 8 operational error, 16 usage). A device or mount point named is looked up in fstab. \
            Runs fsck.TYPE, the type from fstab, else libblkid, else a plain -t, else ext2 (for a device that \
            is not there, the checker says so); a missing checker is an error only for the types that need \
            one. With no file system named it checks fstab's, one at a time, \
            as -A -s; -A passes over a nofail line whose device is missing. With a cluster running, a file \
            system that any other member has mounted (by UUID, or a GFS2 lock table) is refused with the nodes \
            named, and the check holds the cluster lock fsck:UUID: a second node checking the same device \
            waits until the first is done. Differences from util-linux 2.38: the title and --version say \
            "from ssi".
            """)
}
