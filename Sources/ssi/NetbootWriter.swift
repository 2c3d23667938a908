#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
import SSIConfig
import SSIClusterFS

/// `ssi-mkinitrd --netboot DIR`: what the CFS init node's dnsmasq serves.
/// The image is built by the caller into `imagePath` (a temporary file
/// renamed into place); `finish` adds the kernel, iPXE's script, the DHCP
/// hosts and iPXE's own loaders for non-iPXE PXE ROMs, each written to a
/// temporary name and renamed, and tells a running dnsmasq to re-read
/// its hosts.
struct NetbootWriter {
    let directory: String
    let config: ClusterConfig
    let kernelImage: String

    init(directory: String, config: ClusterConfig, kernelImage: String) throws(SSIError) {
        guard FileSystem.exists(kernelImage) else {
            throw SSIError("mkinitrd", "--netboot: kernel \(kernelImage) not found",
                           hint: "install the kernel package for this version, or pass --kernel-image")
        }
        // Copied with a plain read loop: a FIFO or a device would never end.
        guard (try? FileSystem.status(kernelImage, followSymlinks: true).kind) == .regular else {
            throw SSIError("mkinitrd", "--netboot: kernel \(kernelImage) is not a regular file",
                           hint: "pass the kernel image file with --kernel-image")
        }
        do { try FileSystem.makeDirectories(directory) } catch {
            throw SSIError("mkinitrd", "--netboot \(directory): \(error.description)")
        }
        self.directory = directory
        self.config = config
        self.kernelImage = kernelImage
    }

    var imagePath: String { directory + "/" + CFSFiles.imageName }

    /// iPXE for BIOS and UEFI PXE ROMs that are not iPXE (Debian's ipxe package).
    static let loaders = ["/usr/lib/ipxe/undionly.kpxe", "/usr/lib/ipxe/ipxe.efi"]

    func finish(holdsSecrets: Bool) throws(SSIError) -> [String] {
        var notes: [String] = []
        do {
            try install(kernelImage, as: CFSFiles.kernelName)
            try write(CFSFiles.bootScriptName, CFSFiles.bootScript(config))
            try write(CFSFiles.dhcpHostsName, CFSFiles.dhcpHosts(config))
            for loader in Self.loaders where FileSystem.exists(loader) {
                try install(loader, as: basename(of: loader))
            }
        } catch {
            throw SSIError("mkinitrd", "--netboot \(directory): \(error.description)")
        }
        let diskless = config.nodes.filter { $0.role == .diskless && !$0.macs.isEmpty }.map(\.name)
        notes.append("netboot: \(directory) serves \(diskless.isEmpty ? "no diskless node (none has a MAC)" : diskless.joined(separator: ", "))")
        // A served image holds no secret (the payload was built without
        // the key or fence credentials); anything else is not served.
        if holdsSecrets {
            try? FileSystem.unlink(imagePath)
            throw SSIError("mkinitrd", "--netboot: the image would hold a secret, and anyone on the cluster network can fetch it; removed it")
        }
        notes.append("netboot: \(CFSFiles.imageName) holds no secret (mode 0644): nodes receive the cluster key from \(config.cfsServer?.name ?? "the init node")'s key server after proving their identity")
        if let text = try? FileSystem.readText(CFSFiles.runDirectory + "/dnsmasq.pid"),
           let pid = pid_t(text.lines().first ?? ""), pid > 1, kill(pid, SIGHUP) == 0 {
            notes.append("netboot: told the running dnsmasq (pid \(pid)) to re-read \(CFSFiles.dhcpHostsName)")
        }
        return notes
    }

    private func write(_ name: String, _ text: String) throws(SystemCallError) {
        let temp = directory + "/." + name + ".new"
        try FileSystem.writeFile(temp, text)
        try FileSystem.rename(temp, directory + "/" + name)
    }

    private func install(_ source: String, as name: String) throws(SystemCallError) {
        let temp = directory + "/." + name + ".new"
        try FileSystem.copyFile(source, to: temp, mode: 0o644)
        try FileSystem.rename(temp, directory + "/" + name)
    }
}
