#if canImport(Glibc)
import Glibc
#endif
public import SSICore

extension FileSystem {
    /// Copies the tree at `source` to `dest` (which must not exist) as
    /// `cp -a` would for one file system: directories, regular files,
    /// symlinks, FIFOs and device nodes, with their modes, owners and
    /// modification times. Mount points below `source` are not entered
    /// (their folder is made, empty). Hard links become separate copies.
    /// Returns the number of entries copied.
    ///
    /// `intoExisting`: `dest` is an existing empty folder (a freshly made
    /// file system's root) that takes `source`'s contents, owner and mode.
    @discardableResult
    public static func copyTree(_ source: String, to dest: String, intoExisting: Bool = false) throws(SystemCallError) -> Int {
        let top = try status(source)
        var count = 0
        try copyEntry(source, to: dest, device: top.device, top: intoExisting, count: &count)
        return count
    }

    private static func copyEntry(_ source: String, to dest: String, device: UInt64, top: Bool = false,
                                  count: inout Int) throws(SystemCallError) {
        var st = stat()
        try syscall("lstat \(source)") { lstat(source, &st) }
        let mode = mode_t(st.st_mode & 0o7777)
        switch st.st_mode & S_IFMT {
        case S_IFDIR:
            if !(top && isDirectory(dest)) {
                try syscall("mkdir \(dest)") { mkdir(dest, 0o700) }
            }
            if UInt64(st.st_dev) == device {
                let base = source.hasSuffix("/") ? String(source.dropLast()) : source
                for name in try list(source).sorted() {
                    try copyEntry(base + "/" + name, to: dest + "/" + name, device: device, count: &count)
                }
            }
        case S_IFLNK:
            try symlink(target: try readLink(source), at: dest)
        case S_IFREG:
            try copyFile(source, to: dest, mode: 0o600)
        case S_IFIFO, S_IFCHR, S_IFBLK:
            try syscall("mknod \(dest)") { mknod(dest, (st.st_mode & S_IFMT) | 0o600, st.st_rdev) }
        default:
            return  // sockets belong to the process that made them
        }
        count += 1
        // Owner before mode: chown clears set-id bits.
        try syscall("lchown \(dest)") { lchown(dest, st.st_uid, st.st_gid) }
        if st.st_mode & S_IFMT != S_IFLNK {
            try syscall("chmod \(dest)") { chmod(dest, mode) }
        }
        var times = [st.st_atim, st.st_mtim]
        try syscall("utimensat \(dest)") { utimensat(AT_FDCWD, dest, &times, AT_SYMLINK_NOFOLLOW) }
    }

    /// Removes a tree (rm -rf), not crossing into other file systems.
    public static func removeTree(_ path: String) throws(SystemCallError) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        if st.st_mode & S_IFMT == S_IFDIR {
            for name in try list(path) {
                try removeTree(path + "/" + name)
            }
            try syscall("rmdir \(path)") { rmdir(path) }
        } else {
            try unlink(path)
        }
    }
}
