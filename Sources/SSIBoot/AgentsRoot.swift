#if canImport(Glibc)
import Glibc
#endif
import CSSIShim
import SSICore
import SSILinux
import SSIConfig

/// Where the cluster daemons live so that they outlive the initramfs.
///
/// The initramfs is freed at the hand-off, and a process started from it
/// keeps the old rootfs as its "/" — an emptied tree with no /dev. So the
/// daemons (corosync, the agents) run chrooted in /run/ssi/root: a copy of
/// exactly their files (listed by ssi-mkinitrd in /etc/ssi/agents.list) in
/// the /run tmpfs, which moves into the new root at the hand-off. Their
/// /dev, /proc, /sys and /run are bind mounts of the real ones, so
/// clients outside the chroot share corosync's /dev/shm and the agent's
/// /run/ssi. Their files stay visible and accounted for in the booted
/// system's /run, and nothing of the initramfs is kept alive.
enum AgentsRoot {
    /// One definition with the tools that read a running node's opened
    /// key there (ssi cluster key seal, the key server).
    static let path = AuthKey.runningRoot
    static let listFile = "/etc/ssi/agents.list"

    /// The image's list of the daemons' files, relative to "/", one per
    /// line (what ssi-mkinitrd wrote).
    static func list() throws(SystemCallError) -> [String] {
        try FileSystem.readText(listFile).lines().map(String.init).filter { !$0.isEmpty }
    }

    /// Copies the listed files and links, creates the directories the
    /// daemons write to, and binds the API file systems in.
    static func prepare() throws(SSIError) {
        let list: [String]
        do {
            list = try Self.list()
        } catch {
            throw SSIError("membership", "\(listFile) is missing from the image: \(error.description)",
                           hint: "rebuild the image with ssi-mkinitrd --config")
        }
        do {
            for dir in ["dev", "proc", "sys", "run", "tmp", "var/lib/corosync", "var/log", "etc"] {
                try FileSystem.makeDirectories(path + "/" + dir)
            }
            // var/run: corosync's lock file (/var/run/corosync.pid) lands in
            // the real /run, where the distro's corosync.service sees it.
            for (link, target) in [("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"), ("lib64", "usr/lib64"),
                                   ("var/run", "../run")]
            where !FileSystem.exists(path + "/" + link) {
                try FileSystem.symlink(target: target, at: path + "/" + link)
            }
            for entry in list { try copy("/" + entry, to: path + "/" + entry) }
            // corosync's IPC (libqb) keeps its rings in /dev/shm.
            try FileSystem.makeDirectories("/dev/shm")
            if !Mount.isMountPoint("/dev/shm") {
                try Mount.mount(source: "shm", target: "/dev/shm", type: "tmpfs", flags: [.noSuid, .noDev], data: "mode=1777")
            }
            try Mount.mount(source: "/dev", target: path + "/dev", type: nil, flags: [.bind, .recursive])
            try Mount.mount(source: "/proc", target: path + "/proc", type: nil, flags: [.bind])
            // Recursive: configfs (dlm_controld's) is mounted inside /sys.
            try Mount.mount(source: "/sys", target: path + "/sys", type: nil, flags: [.bind, .recursive])
            try Mount.mount(source: "/run", target: path + "/run", type: nil, flags: [.bind])
        } catch {
            throw SSIError("membership", "preparing \(path): \(error.description)")
        }
    }

    private static func copy(_ source: String, to dest: String) throws(SystemCallError) {
        try FileSystem.makeDirectories(dirname(of: dest))
        let st = try FileSystem.status(source)
        switch st.kind {
        case .symlink:
            if !FileSystem.exists(dest) { try FileSystem.symlink(target: try FileSystem.readLink(source), at: dest) }
        case .directory:
            try FileSystem.makeDirectories(dest)
        default:
            try FileSystem.copyFile(source, to: dest, mode: mode_t(st.mode))
        }
    }

    /// Starts a daemon chrooted in the agents root. argv[0] starting with
    /// "@" is systemd's mark for a process that must survive its
    /// shutdown-time killing spree (a root storage daemon): these go last.
    static func spawn(_ program: String, _ args: [String], environment: [String]) throws(SSIError) -> pid_t {
        do throws(SystemCallError) { return try SpawnSpec.inRoot(path, .path(program), argv: args, environment: environment).spawn() } catch {
            throw SSIError("membership", "starting \(program): \(error.description)")
        }
    }
}
