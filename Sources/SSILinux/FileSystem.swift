#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
public import SSICore

/// Thin, typed file-system calls. Everything the boot path and the image
/// builder touch goes through here, so that every failure names the call
/// and the path.
public enum FileSystem {
    public enum Kind: Sendable, Equatable {
        case regular, directory, symlink, characterDevice, blockDevice, fifo, socket
    }

    public struct Status: Sendable {
        public var kind: Kind
        public var mode: UInt32        // permission bits only
        public var size: Int
        public var device: UInt64      // st_dev: the file system it lives on
        public var rdevMajor: UInt32
        public var rdevMinor: UInt32
    }

    /// lstat(2): does not follow a final symlink.
    public static func status(_ path: String, followSymlinks: Bool = false) throws(SystemCallError) -> Status {
        var st = stat()
        if followSymlinks {
            try syscall("stat \(path)") { stat(path, &st) }
        } else {
            try syscall("lstat \(path)") { lstat(path, &st) }
        }
        return Status(st)
    }

    public static func fstatus(_ fd: Int32) throws(SystemCallError) -> Status {
        var st = stat()
        try syscall("fstat") { fstat(fd, &st) }
        return Status(st)
    }

    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    public static func isDirectory(_ path: String) -> Bool {
        (try? status(path, followSymlinks: true).kind) == .directory
    }

    public static func isExecutableFile(_ path: String) -> Bool {
        guard let st = try? status(path, followSymlinks: true), st.kind == .regular else { return false }
        return access(path, X_OK) == 0
    }

    public static func readLink(_ path: String) throws(SystemCallError) -> String {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = try syscall("readlink \(path)") { readlink(path, &buf, buf.count - 1) }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public static func realPath(_ path: String) throws(SystemCallError) -> String {
        guard let p = realpath(path, nil) else {
            let lastErrno = errno
            throw SystemCallError("realpath \(path)", errno: lastErrno)
        }
        defer { free(p) }
        return String(cString: p)
    }

    /// The names in a directory, without "." and "..", unsorted.
    public static func list(_ path: String) throws(SystemCallError) -> [String] {
        guard let dir = opendir(path) else {
            let lastErrno = errno
            throw SystemCallError("opendir \(path)", errno: lastErrno)
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// mkdir -p. Existing directories are fine.
    public static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws(SystemCallError) {
        if isDirectory(path) { return }
        let parent = dirname(of: path)
        if parent != path && !parent.isEmpty { try makeDirectories(parent, mode: mode) }
        if mkdir(path, mode) != 0 && errno != EEXIST {
            let lastErrno = errno
            throw SystemCallError("mkdir \(path)", errno: lastErrno)
        }
    }

    public static func readFile(_ path: String) throws(SystemCallError) -> [UInt8] {
        let file = try Descriptor(open: path, O_RDONLY)
        return try readAll(file.rawValue, name: path)
    }

    public static func readText(_ path: String) throws(SystemCallError) -> String {
        String(decoding: try readFile(path), as: UTF8.self)
    }

    /// Writes a small file in one go (sysfs, /run/ssi notes).
    public static func writeFile(_ path: String, _ text: String, mode: mode_t = 0o644) throws(SystemCallError) {
        let file = try Descriptor(open: path, O_WRONLY | O_CREAT | O_TRUNC, mode: mode)
        try writeAll(file.rawValue, text.utf8, name: path)
    }

    /// Copies a regular file's bytes to a new file with `mode`.
    public static func copyFile(_ source: String, to dest: String, mode: mode_t) throws(SystemCallError) {
        let input = try Descriptor(open: source, O_RDONLY)
        let output: Descriptor
        do { output = try Descriptor(open: dest, O_WRONLY | O_CREAT | O_TRUNC, mode: mode) } catch {
            throw SystemCallError("create \(dest)", errno: error.errno)
        }
        let size = 1 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let n = try syscall("read \(source)") { read(input.rawValue, buffer, size) }
            if n == 0 { break }
            try writeAll(output.rawValue, UnsafeRawBufferPointer(start: buffer, count: n), name: dest)
        }
        fchmod(output.rawValue, mode)
    }

    public static func unlink(_ path: String) throws(SystemCallError) {
        try syscall("unlink \(path)") { Glibc.unlink(path) }
    }

    public static func rename(_ from: String, _ to: String) throws(SystemCallError) {
        try syscall("rename \(from) to \(to)") { Glibc.rename(from, to) }
    }

    /// link(2): a second name for the same file (same file system only).
    public static func hardLink(_ existing: String, at path: String) throws(SystemCallError) {
        try syscall("link \(existing) to \(path)") { Glibc.link(existing, path) }
    }

    public static func symlink(target: String, at path: String) throws(SystemCallError) {
        try syscall("symlink \(path)") { Glibc.symlink(target, path) }
    }
}

extension FileSystem.Status {
    init(_ st: stat) {
        switch st.st_mode & S_IFMT {
        case S_IFDIR: kind = .directory
        case S_IFLNK: kind = .symlink
        case S_IFCHR: kind = .characterDevice
        case S_IFBLK: kind = .blockDevice
        case S_IFIFO: kind = .fifo
        case S_IFSOCK: kind = .socket
        default: kind = .regular
        }
        mode = UInt32(st.st_mode & 0o7777)
        size = Int(st.st_size)
        device = UInt64(st.st_dev)
        // major()/minor() are macros Swift does not import.
        let r = UInt64(st.st_rdev)
        rdevMajor = UInt32(truncatingIfNeeded: ((r >> 8) & 0xfff) | ((r >> 32) & ~0xfff))
        rdevMinor = UInt32(truncatingIfNeeded: (r & 0xff) | ((r >> 12) & ~0xff))
    }
}

