public import SSICore
import SSILinux

/// `ssi-mkinitrd -u` (the Debian package's kernel hooks): which kernels to
/// (re)build an image for, and where that image goes. The ssi image has a
/// name of its own, `/boot/ssi-initrd.img-VERSION`, so that it never
/// replaces initramfs-tools' `/boot/initrd.img-VERSION` (nor is replaced
/// by it): both can be installed, and the boot loader entry chooses.
public enum ImageUpdate {
    public static let imagePrefix = "ssi-initrd.img-"

    public static func imagePath(kernel: String, boot: String = "/boot") -> String {
        boot + "/" + imagePrefix + kernel
    }

    /// The installed kernels: folders under `moduleRoot` that hold a
    /// kernel's modules (`modules.order`, from its package). Leftovers of
    /// a removed kernel (only depmod's or DKMS's files) are not kernels.
    public static func installedKernels(moduleRoot: String = "/lib/modules") -> [String] {
        let names = (try? FileSystem.list(moduleRoot)) ?? []
        return names.filter { FileSystem.exists(moduleRoot + "/" + $0 + "/modules.order") }.sorted()
    }

    /// The kernels `-u` builds for: `-k all` is every installed kernel,
    /// `-k VERSION` that one, no `-k` the running kernel. Each must be an
    /// installed kernel; the error names the kernel and what is installed.
    public static func kernels(for kver: String?, running: String,
                               moduleRoot: String = "/lib/modules") throws(SSIError) -> [String] {
        let installed = installedKernels(moduleRoot: moduleRoot)
        let listing = installed.isEmpty ? "none" : installed.joined(separator: ", ")
        if kver == "all" {
            guard !installed.isEmpty else {
                throw SSIError("mkinitrd", "-u -k all: no kernel is installed (no \(moduleRoot)/*/modules.order)",
                               hint: "install one (apt-get install linux-image-amd64)")
            }
            return installed
        }
        let kernel = kver ?? running
        guard !kernel.isEmpty, !kernel.contains("/") else {
            throw SSIError("mkinitrd", "-u -k '\(kernel)': not a kernel version",
                           hint: "pass -k VERSION (installed: \(listing)) or -k all")
        }
        guard installed.contains(kernel) else {
            let how = kver == nil ? "the running kernel \(kernel)" : "kernel \(kernel)"
            throw SSIError("mkinitrd", "-u: \(how) is not installed (no \(moduleRoot)/\(kernel)/modules.order)",
                           hint: installed.isEmpty
                               ? "install its linux-image package first"
                               : "pass -k with one of: \(listing), or -k all")
        }
        return [kernel]
    }
}
