#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux

/// The exit root: where systemd-shutdown goes at power-off so that a GFS2
/// root can be unmounted, and the node leave its lockspace and the cluster
/// cleanly (no fence).
///
/// systemd-shutdown, when `/run/initramfs/shutdown` is executable as it
/// starts, pivots into /run/initramfs once it has done its own unmounting,
/// keeps the old root at /oldroot and execs /shutdown as PID 1 (dracut's
/// convention). A GFS2 root cannot be unmounted from inside itself, and
/// while it is mounted its lockspace stays: dlm fenced every node that
/// powered off, though its journal was clean. From the exit root, `ssi`
/// (ShutdownProgram) unmounts /oldroot, which leaves the lockspace, then
/// stops the agents, dlm_controld and corosync in that order.
///
/// It is made of hard links to the daemons' root (AgentsRoot: ssi, the
/// loader and the libraries, already in the /run tmpfs), so it costs no
/// memory, and holds nothing private: a file others cannot read (the
/// cluster key, a dlm.conf with fence secrets) is not linked.
enum ExitRoot {
    static let path = "/run/initramfs"
    /// What systemd-shutdown execs, relative to the exit root.
    static let program = "shutdown"
    /// ssi's mark: the shutdown hook leaves corosync to the exit root only
    /// when the exit root is ssi's (another tool's /run/initramfs would not
    /// stop it).
    static let marker = "ssi-exit-root"
    /// The directories systemd-shutdown binds the API file systems on,
    /// where it leaves the old root, and where ShutdownProgram moves the
    /// old /run (with the daemons' root in it) out of the old root.
    static let mountPoints = ["dev", "proc", "sys", "run", "oldroot", "oldrun"]

    /// Makes `root` from the daemons' root `source` and its file list (the
    /// image's agents.list): directories made, symlinks copied, regular
    /// files others may read linked. Returns how many files were linked.
    /// Whatever was at `root` is replaced only once the new tree is whole.
    static func make(from source: String, list: [String], at root: String) throws(SystemCallError) -> Int {
        let building = root + ".ssi-new"
        if FileSystem.exists(building) { try removeTree(building) }
        try FileSystem.makeDirectories(building)
        var linked = 0
        for entry in list {
            let from = source + "/" + entry, to = building + "/" + entry
            guard let st = try? FileSystem.status(from) else { continue }
            try FileSystem.makeDirectories(dirname(of: to))
            switch st.kind {
            case .directory:
                try FileSystem.makeDirectories(to)
            case .symlink:
                if !FileSystem.exists(to) { try FileSystem.symlink(target: try FileSystem.readLink(from), at: to) }
            case .regular where st.mode & 0o004 != 0:
                if !FileSystem.exists(to) { try FileSystem.hardLink(from, at: to); linked += 1 }
            default:
                continue  // private files and anything else stay out
            }
        }
        // The daemons' root's own top-level links (bin -> usr/bin, ...).
        for link in ["bin", "sbin", "lib", "lib64"] where !FileSystem.exists(building + "/" + link) {
            if let target = try? FileSystem.readLink(source + "/" + link) {
                try FileSystem.symlink(target: target, at: building + "/" + link)
            }
        }
        for dir in mountPoints { try FileSystem.makeDirectories(building + "/" + dir) }
        guard FileSystem.isExecutableFile(building + "/usr/bin/ssi") else {
            throw SystemCallError("\(source)/usr/bin/ssi is not in the daemons' root", errno: ENOENT)
        }
        try FileSystem.symlink(target: "usr/bin/ssi", at: building + "/" + program)
        try FileSystem.writeFile(building + "/" + marker,
                                 "Made by ssi-init: systemd-shutdown pivots here and runs ssi, which unmounts the GFS2 root.\n")
        if FileSystem.exists(root) { try removeTree(root) }
        try FileSystem.rename(building, root)
        return linked
    }

    /// Removes a tree of links and directories (never crossing into a
    /// mount: an exit root has none before systemd-shutdown binds them).
    static func removeTree(_ path: String) throws(SystemCallError) {
        let st = try FileSystem.status(path)
        if st.kind == .directory {
            for name in try FileSystem.list(path) { try removeTree(path + "/" + name) }
            try syscall("rmdir \(path)") { rmdir(path) }
        } else {
            try FileSystem.unlink(path)
        }
    }
}

extension Boot {
    /// Makes the exit root for a GFS2 root. A failure is a warning: the
    /// node boots, and at power-off it is fenced as before (its journal
    /// still clean: the shutdown hook remounts it read-only).
    func prepareExitRoot() {
        do {
            let linked = try ExitRoot.make(from: AgentsRoot.path, list: try AgentsRoot.list(), at: ExitRoot.path)
            log.info("root", "made the exit root \(ExitRoot.path) (\(linked) files linked from \(AgentsRoot.path)): at power-off "
                     + "this node unmounts its root and leaves the lockspace before corosync stops, so it is not fenced")
        } catch {
            log.warning("root", "cannot make the exit root \(ExitRoot.path): \(error.description); at power-off the others "
                        + "fence this node (its journal is still left clean)")
        }
    }
}
