#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
public import SSICore

/// The cluster's shared secret: corosync's authkey, raw random bytes (the
/// format corosync-keygen writes). knet derives its cipher and HMAC keys
/// from it; a node with another key cannot join.
public enum AuthKey {
    /// corosync-keygen's default size.
    public static let defaultSize = 256
    /// corosync-keygen's allowed range (knet's key length limits).
    public static let sizes = 128...4096

    /// `size` bytes from the kernel's random pool: getentropy(3), that is
    /// getrandom(2), which blocks until the pool is initialized (a key must
    /// wait for that; /dev/urandom would not).
    public static func generate(size: Int = defaultSize) throws(SSIError) -> [UInt8] {
        guard sizes.contains(size) else {
            throw SSIError("keygen", "a key of \(size) bytes: corosync takes \(sizes.lowerBound) to \(sizes.upperBound)")
        }
        var key = [UInt8](repeating: 0, count: size)
        // getentropy gives at most 256 bytes per call.
        var filled = 0
        while filled < size {
            let n = min(256, size - filled)
            do throws(SystemCallError) {
                try syscall("getentropy") { key.withUnsafeMutableBytes { buf in getentropy(buf.baseAddress! + filled, n) } }
            } catch {
                throw SSIError("keygen", error.description)
            }
            filled += n
        }
        return key
    }

    /// Generates a key and writes it to `path`, mode 0400, atomically;
    /// refuses to replace an existing file unless `force`.
    public static func write(to path: String, size: Int = defaultSize, force: Bool) throws(SSIError) {
        let key = try generate(size: size)
        try ConfigFiles.writeAtomically(path, key, mode: 0o400, replace: force, step: "keygen")
    }

    /// Where a running node keeps the key it received or unsealed at
    /// boot: the daemons' root in /run's tmpfs (RAM), mode 0400.
    public static let runningCopy = runningRoot + "/etc/corosync/authkey"
    /// The daemons' root (SSIBoot's AgentsRoot), where a running node's
    /// opened secrets are.
    public static let runningRoot = "/run/ssi/root"

    /// The cluster key on this machine: the configured file when it
    /// exists, else the running node's copy in RAM (a node whose disk
    /// holds the key only sealed, DESIGN-NOTES.md "Keys at rest").
    public static func readConfiguredOrRunning(_ configured: String) throws(SSIError) -> (key: [UInt8], path: String) {
        if access(configured, F_OK) != 0 && errno == ENOENT && access(runningCopy, F_OK) == 0 {
            return (try read(path: runningCopy), runningCopy)
        }
        return (try read(path: configured), configured)
    }

    /// Reads a key for an image and checks it: a regular file of a size
    /// corosync accepts, readable by its owner only.
    public static func read(path: String) throws(SSIError) -> [UInt8] {
        var st = stat()
        guard stat(path, &st) == 0 else {
            let e = errno
            throw SSIError("config", "authkey \(path): \(errnoDescription(e))",
                           hint: e == ENOENT ? "make one with `ssi cluster keygen -o \(path)` and copy it to every node" : nil)
        }
        guard st.st_mode & S_IFMT == S_IFREG else {
            throw SSIError("config", "authkey \(path) is not a regular file")
        }
        if st.st_mode & 0o077 != 0 {
            let mode = String(st.st_mode & 0o777, radix: 8)
            throw SSIError("config", "authkey \(path) is mode \(mode): others can read the cluster's secret",
                           hint: "chmod 0400 \(path)")
        }
        let bytes = try ConfigFiles.readBytes(path, what: "authkey")
        guard sizes.contains(bytes.count) else {
            throw SSIError("config", "authkey \(path) is \(bytes.count) bytes; corosync takes \(sizes.lowerBound) to \(sizes.upperBound)",
                           hint: "make a new one with `ssi cluster keygen -o \(path) --force`")
        }
        return bytes
    }
}
