#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// The one read-to-end and write-everything loop. A write to a pipe or a
// socket may take fewer bytes than asked (a signal, a full pipe buffer):
// every caller needs the loop, so it lives here, through `syscall` (which
// retries EINTR).

/// The loop: `transfer` moves some bytes from the pointer (write, send)
/// and returns how many, or -1 with errno.
@inline(__always)
func transferAll(_ bytes: UnsafeRawBufferPointer, _ call: @autoclosure () -> String,
                 _ transfer: (UnsafeRawPointer, Int) -> Int) throws(SystemCallError) {
    var off = 0
    while off < bytes.count {
        let n = try syscall(call()) { transfer(bytes.baseAddress! + off, bytes.count - off) }
        // 0 for a non-empty buffer would loop forever: no progress is EIO.
        guard n > 0 else { throw SystemCallError(call(), errno: EIO) }
        off += n
    }
}

/// Writes every byte, resuming after short writes. `name` names the
/// descriptor in the error ("write /run/ssi/x: ENOSPC ...").
public func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, name: String) throws(SystemCallError) {
    try transferAll(bytes, "write \(name)") { write(fd, $0, $1) }
}

/// Writes every byte of an array or a slice of one.
public func writeAll(_ fd: Int32, _ bytes: some Collection<UInt8>, name: String) throws(SystemCallError) {
    // An array or a slice of one is written in place; anything else is
    // copied once.
    let inPlace: SystemCallError?? = bytes.withContiguousStorageIfAvailable { b in
        do throws(SystemCallError) { try writeAll(fd, UnsafeRawBufferPointer(b), name: name); return nil } catch { return error }
    }
    if let inPlace {
        if let failure = inPlace { throw failure }
        return
    }
    let array = Array(bytes)
    let failure: SystemCallError? = array.withUnsafeBytes { b in
        do throws(SystemCallError) { try writeAll(fd, b, name: name); return nil } catch { return error }
    }
    if let failure { throw failure }
}

/// Sends every byte on a socket with MSG_NOSIGNAL: a peer that went away
/// is an EPIPE error here, not a SIGPIPE that ends the process.
public func sendAll(_ fd: Int32, _ bytes: some Collection<UInt8>, name: String) throws(SystemCallError) {
    let array = Array(bytes)
    let failure: SystemCallError? = array.withUnsafeBytes { b in
        do throws(SystemCallError) {
            try transferAll(b, "send \(name)") { send(fd, $0, $1, Int32(MSG_NOSIGNAL)) }
            return nil
        } catch { return error }
    }
    if let failure { throw failure }
}

/// Reads exactly `count` bytes (a header, a framed message), resuming
/// after short reads. Fewer only at end of file: none when the stream
/// ended before the first byte, so the caller tells a clean end from a
/// cut message.
public func readExactly(_ fd: Int32, _ count: Int, name: String) throws(SystemCallError) -> [UInt8] {
    var buf = [UInt8](repeating: 0, count: count)
    var done = 0
    while done < count {
        let n = try syscall("read \(name)") {
            buf.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, count - done) }
        }
        if n == 0 { return Array(buf[0..<done]) }
        done += n
    }
    return buf
}

/// Reads to end of file; files in /proc report size 0, so st_size is
/// never trusted. More than `limit` bytes is EFBIG, checked as the bytes
/// come (a character device like /dev/zero never ends).
public func readAll(_ fd: Int32, name: String, limit: Int = Int.max) throws(SystemCallError) -> [UInt8] {
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = try syscall("read \(name)") {
            chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        }
        if n == 0 { break }
        out.append(contentsOf: chunk[0..<n])
        if out.count > limit { throw SystemCallError("read \(name)", errno: EFBIG) }
    }
    return out
}

/// A file written in full before it appears at `path`: a temporary file
/// in the same directory (mkstemp: 0600 from the start, never readable by
/// others), given `mode` by fchmod whatever umask or a leftover says.
/// `commit` fsyncs it, renames it over `path` (with `replace`) or links it
/// there (without: EEXIST if `path` exists, so nothing is overwritten by
/// a race) and fsyncs the directory. Not committed, it is removed: on a
/// failure `path` is as it was.
public struct AtomicFile: ~Copyable {
    public let fd: Int32
    /// Where the bytes go until `commit`, for messages.
    public let temporaryPath: String
    let path: String
    let replace: Bool
    var committed = false

    public init(_ path: String, mode: mode_t, replace: Bool) throws(SystemCallError) {
        let dir = dirname(of: path)
        var template = Array((dir == "/" ? "/" : dir + "/").utf8CString.dropLast()) + Array(".\(basename(of: path)).XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { buf in mkstemp(buf.baseAddress!) }
        guard fd >= 0 else { throw SystemCallError("create a file in \(dir)", errno: errno) }
        let tmp = String(decoding: template.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard fchmod(fd, mode) == 0 else {
            let e = errno
            unlink(tmp)
            close(fd)
            throw SystemCallError("chmod \(tmp)", errno: e)
        }
        (self.fd, self.temporaryPath, self.path, self.replace) = (fd, tmp, path, replace)
    }

    public consuming func commit() throws(SystemCallError) {
        try syscall("fsync \(temporaryPath)") { fsync(fd) }
        if replace {
            try syscall("rename \(temporaryPath) to \(path)") { rename(temporaryPath, path) }
        } else {
            try syscall(path) { link(temporaryPath, path) }
            unlink(temporaryPath)
        }
        committed = true
        let dfd = open(dirname(of: path), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            _ = fsync(dfd)
            close(dfd)
        }
    }

    deinit {
        if !committed { unlink(temporaryPath) }
        close(fd)
    }
}

/// Writes `bytes` to `path` atomically (see `AtomicFile`).
public func writeFileAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t, replace: Bool) throws(SystemCallError) {
    let file = try AtomicFile(path, mode: mode, replace: replace)
    try writeAll(file.fd, bytes, name: file.temporaryPath)
    try file.commit()
}
