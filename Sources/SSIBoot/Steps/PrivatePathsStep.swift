#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
import SSIConfig
import SSIClusterFS

/// The private step, after a shared root (CFS client, GFS2).
extension Boot {
    /// This node's private paths on the shared root.
    func mountPrivatePaths(_ config: ClusterConfig, me: ClusterConfig.Node) throws(SSIError) {
        let privates = NodePrivatePaths(root: "/sysroot", directory: config.privatePaths.directory, nodeName: me.name,
                                        paths: config.privatePaths(for: me))
        let started = Process.now()
        let results = try privates.seed()
        // A CFS node's private directories: its own, so cached (a failed
        // mount falls back to the bind, coherent and slower).
        var cached: [String] = []
        try privates.bind(mountDirectory: { copy, target in
            guard let (source, options) = CFSFiles.privateMount(config, client: me, copy: copy) else { return false }
            do throws(SystemCallError) {
                try Mount.mountBounded(source: source, target: target, type: "nfs4", data: options, timeoutMs: 60_000)
                cached.append(String(target.dropFirst("/sysroot".count)))
                return true
            } catch {
                self.log.warning("private", "could not mount \(source) cached: \(error.description); binding it instead")
                return false
            }
        })
        let made = results.filter { $0.result != .kept }.map(\.path)
        let ms = Int((Process.now() - started) * 1000)
        // systemd takes a mounted /etc/machine-id for a transient one and
        // would try to "commit" it to the file underneath (the shared one);
        // ours is persistent already.
        if privates.paths.contains("/etc/machine-id") {
            maskForBoot(["systemd-machine-id-commit.service"])
        }
        waitLongerForDevices()
        log.info("private", "\(privates.paths.joined(separator: " ")) are \(me.name)'s own, from "
                 + "\(config.privatePaths.directory)/\(me.name)" + (made.isEmpty ? "" : " (seeded \(made.joined(separator: " ")))")
                 + (cached.isEmpty ? "" : "; \(cached.joined(separator: " ")) mounted cached")
                 + " in \(ms) ms")
    }
}
