#if canImport(Glibc)
import Glibc
#endif
public import SSICore

/// Leaving the initramfs. The initramfs is the kernel's rootfs, which can
/// be neither unmounted nor pivot_root'ed away, so we do what switch_root
/// does: move the API file systems into the new root, delete the
/// initramfs's files to give its memory back, move the new root over "/",
/// chroot into it and exec its init.
public enum SwitchRoot {
    public static func moveAPIFileSystems(into newRoot: String, mounts: [String] = ["/dev", "/proc", "/sys", "/run"]) throws(SystemCallError) {
        for m in mounts where Mount.isMountPoint(m) {
            let target = newRoot + m
            if !FileSystem.isDirectory(target) {
                // A root without /run (or /dev) still boots; the distro's
                // init mounts what it needs. Leave that mount behind.
                continue
            }
            try Mount.move(m, to: target)
        }
    }

    /// Deletes everything on the initramfs's file system, staying off any
    /// other file system (the new root, anything mounted).
    public static func freeInitramfs(keeping newRoot: String) {
        guard let rootDev = try? FileSystem.status("/").device else { return }
        guard let root = try? Descriptor(open: "/", O_RDONLY | O_DIRECTORY) else { return }
        removeContents(root, device: rootDev, skip: basename(of: newRoot))
    }

    private static func removeContents(_ directory: borrowing Descriptor, device: UInt64, skip: String?) {
        let dirfd = directory.rawValue
        let copy = dup(dirfd)
        guard copy >= 0 else { return }
        // Ours until fdopendir takes it: if it fails, the copy must still
        // be closed (dup is not close-on-exec: it would reach the real init).
        let owned = Descriptor(owning: copy)
        guard let dir = fdopendir(owned.rawValue) else { return }
        _ = owned.take()
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != "." && name != ".." && name != skip { names.append(name) }
        }
        for name in names {
            var st = stat()
            guard fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            if UInt64(st.st_dev) != device { continue }   // a mount point
            if st.st_mode & S_IFMT == S_IFDIR {
                let sub = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                if sub >= 0 { removeContents(Descriptor(owning: sub), device: device, skip: nil) }
                unlinkat(dirfd, name, AT_REMOVEDIR)
            } else {
                unlinkat(dirfd, name, 0)
            }
        }
    }

    /// Makes `newRoot` the root: the last step before exec.
    public static func enter(_ newRoot: String) throws(SystemCallError) {
        try syscall("chdir \(newRoot)") { chdir(newRoot) }
        try syscall("move \(newRoot) to /") { mount(".", "/", nil, UInt(MS_MOVE), nil) }
        try syscall("chroot") { chroot(".") }
        try syscall("chdir /") { chdir("/") }
    }
}

import CSSIShim

/// openat2(RESOLVE_IN_ROOT): `path` resolved as if `rootfd` were "/".
public func ssiOpenInRoot(_ rootfd: Int32, _ path: String, _ flags: Int32) -> Int32 {
    ssi_open_in_root(rootfd, path, flags)
}
