// The test root disk: a small ext4 image with a static busybox and a marker
// /sbin/init, made by initramfs/testroot/mkroot.sh (mkfs.ext4 -d, nothing is
// mounted).

import Foundation

public struct RootDisk: Sendable {
    /// The raw image.
    public let path: String
    public let uuid: String
    public let label: String

    /// `root=UUID=...`
    public var rootByUUID: String { "root=UUID=\(uuid)" }
    /// `root=LABEL=...`
    public var rootByLabel: String { "root=LABEL=\(label)" }

    /// The markers the default /sbin/init (initramfs/testroot/init.sh) prints.
    public enum Marker {
        public static let realInit = "SSI-TEST real-init pid="
        public static let realInitPID1 = "SSI-TEST real-init pid=1"
        public static let procYes = "SSI-TEST proc=yes"
        public static let devConsoleYes = "SSI-TEST devconsole=yes"
        public static let rootMount = "SSI-TEST rootmount="
        public static let uptime = "SSI-TEST uptime="
        public static let cmdline = "SSI-TEST cmdline="
        /// Printed before the shell that `ssi.test.shell` asks for.
        public static let shell = "SSI-TEST shell"
        public static let poweroff = "SSI-TEST poweroff"
        /// Kernel argument: the test init runs a shell instead of powering off.
        public static let shellArgument = "ssi.test.shell"
    }

    /// What /sbin/init is.
    public enum Init: Sendable {
        /// initramfs/testroot/init.sh
        case markers
        /// A script (or any content) written to the image as /sbin/init.
        case script(String)
        /// An existing file copied to /sbin/init.
        case file(String)
    }

    /// Builds the image at `path` with mkroot.sh.
    /// - Parameters:
    ///   - initExecutable: false installs /sbin/init with mode 0644, for
    ///     tests of the "init is not executable" error.
    ///   - extraFiles: (host source, absolute destination in the image).
    public static func make(at path: String,
                            uuid: String = UUID().uuidString.lowercased(),
                            label: String = "ssi-testroot",
                            initProgram: Init = .markers,
                            initExecutable: Bool = true,
                            size: String = "64M",
                            extraFiles: [(source: String, destination: String)] = []) throws -> RootDisk {
        var args = [VMHost.testrootDirectory + "/mkroot.sh", path, "--uuid", uuid, "--label", label, "--size", size]
        switch initProgram {
        case .markers:
            break
        case .file(let file):
            args += ["--init", file]
        case .script(let text):
            let file = path + ".init"
            try text.write(toFile: file, atomically: true, encoding: .utf8)
            args += ["--init", file]
        }
        if !initExecutable { args.append("--init-not-executable") }
        for (source, destination) in extraFiles { args += ["--add", "\(source):\(destination)"] }
        try Command.run(args, timeout: .seconds(60))
        return RootDisk(path: path, uuid: uuid, label: label)
    }

    /// A whole disk that boots through GRUB from its MBR, made by
    /// initramfs/testroot/mkgrubdisk.sh: partition 1 is the test root with
    /// the kernel, the ssi image and the grub.cfg that Debian's 00_header
    /// and the package's 09_ssi (debian/grub.d-ssi) write. The root is
    /// /dev/vda1 in the guest.
    public static func makeGrubDisk(at path: String, kernel: String, version: String, image: String,
                                    uuid: String = UUID().uuidString.lowercased(), label: String = "ssi-grubroot",
                                    cmdline: [String] = GuestConfig.baseKernelArguments) throws -> RootDisk {
        if let grubDiskSkipReason { throw HarnessError(grubDiskSkipReason) }
        try Command.run([VMHost.testrootDirectory + "/mkgrubdisk.sh", path, "--kernel", kernel, "--image", image,
                         "--version", version, "--uuid", uuid, "--label", label, "--cmdline", cmdline.joined(separator: " ")],
                        timeout: .seconds(120))
        return RootDisk(path: path, uuid: uuid, label: label)
    }

    /// Why a GRUB disk cannot be made on this host, or nil.
    public static let grubDiskSkipReason: String? = {
        let needs = ["/usr/lib/grub/i386-pc/boot.img": "grub-pc-bin", "/etc/grub.d/00_header": "grub-common"]
        for (file, package) in needs.sorted(by: { $0.key < $1.key }) where !FileManager.default.fileExists(atPath: file) {
            return "a GRUB disk needs \(file) (\(package); scripts/setup installs it)"
        }
        for tool in ["grub-mkimage", "sfdisk", "unshare"] where Command.find(tool) == nil {
            return "a GRUB disk needs \(tool) (scripts/setup installs grub-pc-bin, fdisk and util-linux)"
        }
        return nil
    }()
}
