public import SSICore

/// The distro's programs that ssi's admin commands run (dpkg-divert,
/// mkfs.gfs2, gfs2_jadd, tar, modprobe): found in the usual folders, run
/// with our stdout and stderr, an error unless they exit 0. The finding and
/// the exit check take the file system and the run as parameters, so the
/// commands that use them are tested without the programs.
public enum HostTools {
    public static let directories = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]

    /// A program from the PATH, or an error naming its package.
    public static func find(_ name: String, package: String,
                            isExecutableFile: (String) -> Bool = FileSystem.isExecutableFile) throws(SSIError) -> String {
        for dir in directories where isExecutableFile(dir + "/" + name) {
            return dir + "/" + name
        }
        throw SSIError("root", "\(name) is not installed", hint: "apt-get install \(package)")
    }

    /// Runs a program (`args` without argv[0]) with our stdout and stderr
    /// and waits for it.
    public static func execute(_ path: String, _ args: [String]) throws(SystemCallError) -> Process.Exit {
        let pid = try Process.spawn(path, [path] + args, environment: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"])
        return try Process.wait(for: pid)
    }

    /// Runs a program; an error unless it exits 0. `what` names it in the
    /// error ("mkfs.gfs2", "dpkg-divert --add /usr/bin/mount").
    public static func run(_ path: String, _ args: [String], what: String,
                           execute: (String, [String]) throws(SystemCallError) -> Process.Exit = execute) throws(SSIError) {
        let status: Process.Exit
        do { status = try execute(path, args) } catch {
            throw SSIError("root", "running \(what): \(error.description)")
        }
        guard status == .exited(0) else {
            throw SSIError("root", "\(what) failed (\(status)); its messages are above")
        }
    }
}
