#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
public import SSICore

/// The little file I/O the config needs, on Glibc alone (this module is
/// linked into PID 1: no Foundation).
public enum ConfigFiles {
    /// Reads a whole file. `what` names it in the error ("cluster config").
    public static func readBytes(_ path: String, what: String) throws(SSIError) -> [UInt8] {
        // O_NONBLOCK: opening a FIFO with no writer would otherwise wait
        // forever, before there is anything to check.
        let fd: Int32
        do throws(SystemCallError) {
            fd = try syscall("open") { open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK) }
        } catch {
            let e = error.errno
            throw SSIError("config", "\(what) \(printable(path)): \(errnoDescription(e))",
                           hint: e == ENOENT && what == "cluster config"
                               ? "write one (examples in configs/), or pass the file to use" : nil)
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            throw SSIError("config", "\(what) \(printable(path)): fstat: \(errnoDescription(e))")
        }
        switch st.st_mode & S_IFMT {
        case S_IFREG:
            break
        case S_IFCHR:
            // A terminal or /dev/zero: blocking reads, bounded below by size.
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        case S_IFDIR:
            throw SSIError("config", "\(what) \(printable(path)) is a directory", hint: "pass the file in it")
        default:
            // A pipe or socket can keep a reader waiting with no end.
            throw SSIError("config", "\(what) \(printable(path)) is a pipe or socket, not a file", hint: "save it to a file and pass that")
        }
        // /dev/zero never ends: the bound is checked as the bytes come.
        let limit = 16 << 20
        do throws(SystemCallError) {
            return try readAll(fd, name: "", limit: limit)
        } catch {
            if error.errno == EFBIG {
                throw SSIError("config", "\(what) \(printable(path)): larger than 16 MiB; is it the right file?")
            }
            throw SSIError("config", "\(what) \(printable(path)): read: \(errnoDescription(error.errno))")
        }
    }

    /// A file's permission bits (following links); nil if it cannot be
    /// stat()ed.
    public static func mode(_ path: String) -> mode_t? {
        var st = stat()
        return stat(path, &st) == 0 ? st.st_mode & 0o7777 : nil
    }

    /// Reads a UTF-8 text file; invalid UTF-8 is an error, not replaced.
    public static func readText(_ path: String, what: String) throws(SSIError) -> String {
        let bytes = try readBytes(path, what: what)
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw SSIError("config", "\(what) \(printable(path)): line \(firstInvalidLine(bytes) ?? 1) is not UTF-8 text")
        }
        if text.hasPrefix("\u{FEFF}") { return String(text.dropFirst()) }
        return text
    }

    static func firstInvalidLine(_ bytes: [UInt8]) -> Int? {
        var line = 1
        var start = 0
        for (k, b) in bytes.enumerated() where b == 10 {
            if String(validating: bytes[start..<k], as: UTF8.self) == nil { return line }
            line += 1
            start = k + 1
        }
        return String(validating: bytes[start...], as: UTF8.self) == nil ? line : nil
    }

    /// Writes `bytes` to `path` atomically (`writeFileAtomically`), with
    /// `step` naming the command in errors and the fix in the hint.
    public static func writeAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t, replace: Bool, step: String) throws(SSIError) {
        if !replace && access(path, F_OK) == 0 {
            throw SSIError(step, "\(path) exists", hint: "pass --force to replace it")
        }
        do throws(SystemCallError) {
            try writeFileAtomically(path, bytes, mode: mode, replace: replace)
        } catch {
            let hint: String? = switch error.errno {
            case EEXIST where !replace: "pass --force to replace it"
            case ENOENT where error.call.hasPrefix("create a file in"): "make the directory first (mkdir -p \(dirname(of: path)))"
            default: nil
            }
            throw SSIError(step, error.description, hint: hint)
        }
    }
}
