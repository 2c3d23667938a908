#if canImport(Glibc)
import Glibc
#endif
import CSSIShim
public import SSICore
import SSILinux

/// How a shipped descriptor's data flows, seen from the process.
public enum ShipKind: String, Sendable {
    /// The process reads (a pipe's read end, a FIFO opened for reading).
    case pipeIn = "pipe-in"
    /// The process writes.
    case pipeOut = "pipe-out"
    /// A connected stream socket (unix or TCP): both ways.
    case socket
    /// A terminal: both ways, plus its window size and modes.
    case tty
    /// A TCP connection: both ways, like a socket; the restored process
    /// gets its stand-in (a unix socket) by injection, not from CRIU.
    case tcp
    /// A device (not a terminal): before the dump its descriptor becomes,
    /// by injection, a unix socket to the home agent, shipped as `socket`.
    case device

    /// Stream sockets: end of file is a shutdown(SHUT_WR).
    var isSocket: Bool { self == .socket || self == .tcp }

    var directions: [String] {
        switch self {
        case .pipeIn: return ["in"]
        case .pipeOut: return ["out"]
        case .socket, .tty, .tcp, .device: return ["in", "out"]
        }
    }
}

/// One open descriptor of a process about to move, and what happens to it.
public struct OpenDescriptor: Sendable {
    public enum Disposition: Sendable, Equatable {
        /// CRIU reopens it on the target (a shared file, /dev/null, an
        /// eventfd ...).
        case reopen
        /// Stays home; the process gets a stand-in. `resource` is CRIU's
        /// name of the object for --inherit-fd.
        case ship(ShipKind, resource: String)
        /// Cannot move: why.
        case refuse(String)
    }
    public var pid: pid_t
    public var fd: Int32
    public var target: String
    public var disposition: Disposition
}

/// Reads a process tree's descriptors and mappings and decides, for each,
/// whether it moves with the process, is shipped, or blocks the move.
public struct ProcessInspector: Sendable {
    /// Mount points of the system's root that this node exports over NFS
    /// (its etab): the CFS root on the init node, node=N cluster mounts
    /// on their owner. Files there are the same files on every node.
    public var exported: Set<String>
    /// The system's root as this process sees it ("/proc/1/root" from the
    /// agents root, "" in tests).
    public var systemRoot: String

    public init(systemRoot: String) {
        self.systemRoot = systemRoot
        let etab = (try? FileSystem.readText(systemRoot + "/var/lib/nfs/etab")) ?? ""
        exported = Set(etab.lines().compactMap { $0.split(separator: "\t").first.map(String.init) })
    }

    /// Devices that exist, the same, on every node.
    static let everywhereDevices: Set<String> = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"]

    struct MountInfo { var point: String; var root: String; var type: String; var source: String = "" }

    static func mounts(pid: pid_t) -> [Int: MountInfo] {
        var out: [Int: MountInfo] = [:]
        let text = (try? FileSystem.readText("/proc/\(pid)/mountinfo")) ?? ""
        for line in text.lines() {
            let f = line.split(separator: " ").map(String.init)
            guard f.count >= 7, let id = Int(f[0]), let dash = f.firstIndex(of: "-"), dash + 1 < f.count else { continue }
            out[id] = MountInfo(point: unescapeMountField(f[4]), root: unescapeMountField(f[3]), type: f[dash + 1],
                                source: dash + 2 < f.count ? unescapeMountField(f[dash + 2]) : "")
        }
        return out
    }

    /// Whether a file on this mount is the same file on every node.
    func shared(_ m: MountInfo) -> Bool {
        // The cluster root and node=N views are exports mounted at their
        // own path (10.77.0.1:/ on /, 10.77.0.1:/mnt/data on /mnt/data);
        // a node's private paths are other exports (/cluster/nodes/NAME/tmp
        // on /tmp), private to it.
        if m.type.hasPrefix("nfs") {
            guard m.root == "/", let colon = m.source.firstIndex(of: ":") else { return false }
            return String(m.source[m.source.index(after: colon)...]) == m.point
        }
        if m.type == "gfs2" { return m.root == "/" }
        return m.root == "/" && exported.contains(m.point)
    }

    /// The descriptors of `pid` (not its children).
    public func descriptors(pid: pid_t) throws(SSIError) -> [OpenDescriptor] {
        let dir = "/proc/\(pid)/fd"
        let names: [String]
        do { names = try FileSystem.list(dir) } catch {
            throw SSIError("migrate", "process \(pid): \(error.description)")
        }
        let mounts = Self.mounts(pid: pid)
        var out: [OpenDescriptor] = []
        for name in names.sorted(by: { (Int($0) ?? 0) < (Int($1) ?? 0) }) {
            guard let fd = Int32(name), let target = try? FileSystem.readLink("\(dir)/\(name)") else { continue }
            let info = (try? FileSystem.readText("/proc/\(pid)/fdinfo/\(name)")) ?? ""
            var flags = 0, mnt = -1
            for l in info.lines() {
                let kv = l.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: " \t") }
                if kv.count == 2, kv[0] == "flags" { flags = Int(kv[1], radix: 8) ?? 0 }
                if kv.count == 2, kv[0] == "mnt_id" { mnt = Int(kv[1]) ?? -1 }
            }
            out.append(OpenDescriptor(pid: pid, fd: fd, target: target,
                                      disposition: classify(pid: pid, fd: fd, target: target, flags: flags, mount: mounts[mnt])))
        }
        return out
    }

    func classify(pid: pid_t, fd: Int32, target: String, flags: Int, mount: MountInfo?) -> OpenDescriptor.Disposition {
        let access = flags & Int(O_ACCMODE)
        if target.hasPrefix("pipe:[") {
            if access == Int(O_RDWR) { return .refuse("fd \(fd) is a pipe opened for reading and writing") }
            return .ship(access == Int(O_RDONLY) ? .pipeIn : .pipeOut, resource: target)
        }
        if target.hasPrefix("socket:[") {
            let copy = takeCopy(pid: pid, fd: fd)
            defer { if copy >= 0 { close(copy) } }
            guard copy >= 0 else { let lastErrno = errno; return .refuse("fd \(fd) (\(target)): pidfd_getfd: \(errnoDescription(lastErrno))") }
            var type: Int32 = 0, listening: Int32 = 0, domain: Int32 = 0
            var len = socklen_t(4)
            getsockopt(copy, SOL_SOCKET, SO_TYPE, &type, &len)
            len = 4; getsockopt(copy, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len)
            len = 4; getsockopt(copy, SOL_SOCKET, SO_DOMAIN, &domain, &len)
            if listening != 0 { return .refuse("fd \(fd) is a listening socket: it cannot leave its node") }
            guard type == Int32(SOCK_STREAM.rawValue) else {
                return .refuse("fd \(fd) is a datagram or raw socket: only connected stream sockets can be shipped")
            }
            var addr = sockaddr_storage()
            var alen = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let connected = withUnsafeMutablePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(copy, $0, &alen) }
            } == 0
            // A unix socketpair has no peer name but is connected.
            if !connected && !(domain == AF_UNIX && errno != ENOTCONN) {
                return .refuse("fd \(fd) is an unconnected socket: it cannot leave its node")
            }
            // CRIU 3.17 rebuilds TCP sockets itself and ignores
            // --inherit-fd for them: a TCP connection is restored closed
            // (--tcp-close) and replaced by its stand-in afterwards.
            return .ship(domain == AF_UNIX ? .socket : .tcp, resource: target)
        }
        var st = stat()
        // What the descriptor is (0: unknown, it went meanwhile).
        let type = stat("/proc/\(pid)/fd/\(fd)", &st) == 0 ? st.st_mode & S_IFMT : 0
        let isDevice = type == S_IFCHR || type == S_IFBLK
        if isDevice {
            if Self.everywhereDevices.contains(target) { return .reopen }
            if st.st_mode & S_IFMT == S_IFCHR {
                let copy = takeCopy(pid: pid, fd: fd)
                defer { if copy >= 0 { close(copy) } }
                if copy >= 0, isatty(copy) != 0 {
                    return .ship(.tty, resource: "tty[\(String(st.st_rdev, radix: 16)):\(String(st.st_dev, radix: 16))]")
                }
            }
            if st.st_mode & S_IFMT == S_IFBLK {
                return .refuse("fd \(fd) is the block device \(target): shipped devices are streams, without seeking")
            }
            // The resource names this descriptor: each gets its own stand-in.
            return .ship(.device, resource: "\(target)#\(pid).\(fd)")
        }
        if target.hasPrefix("anon_inode:") { return .reopen }     // eventfd, epoll, timerfd ...: CRIU's
        // A FIFO is a pipe with a name: shipped like one. CRIU names it by
        // its path from the root, which --inherit-fd takes.
        if type == S_IFIFO, target.hasPrefix("/") {
            if access == Int(O_RDWR) { return .refuse("fd \(fd) is the FIFO \(target) opened for reading and writing") }
            return .ship(access == Int(O_RDONLY) ? .pipeIn : .pipeOut, resource: String(target.dropFirst()))
        }
        if target.hasPrefix("/") {
            if target.hasSuffix(" (deleted)") { return .refuse("fd \(fd) is a deleted file (\(target))") }
            guard let m = mount else { return .refuse("fd \(fd) (\(target)): its mount is unknown") }
            if shared(m) { return .reopen }
            // A node-local file stays home and is shipped as a stream: the
            // home agent reads it (from the process's offset to its end,
            // then end of file) or writes it (at its offset, or appending
            // with O_APPEND). A stream has no offset to seek, so a file
            // opened for both cannot be shipped; a directory cannot either.
            let local = "fd \(fd) is \(target) on a node-local file system (\(m.type) at \(m.point))"
            guard type == S_IFREG else {
                return .refuse(local + ", and not a regular file: only files on the cluster root or a node=N cluster mount can move")
            }
            if access == Int(O_RDWR) {
                return .refuse(local + ", open for reading and writing: shipped files are streams, read or written, without seeking")
            }
            return .ship(access == Int(O_RDONLY) ? .pipeIn : .pipeOut, resource: String(target.dropFirst()))
        }
        return .refuse("fd \(fd) is \(target), which cannot move")
    }

    /// Mappings CRIU cannot restore elsewhere: devices and node-local files.
    public func mappingProblems(pid: pid_t) -> [String] {
        let text = (try? FileSystem.readText("/proc/\(pid)/maps")) ?? ""
        let mounts = Self.mounts(pid: pid)
        var problems: [String] = []
        var seen = Set<String>()
        for line in text.lines() {
            let f = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard f.count == 6, case let path = f[5].trimmingCharacters(in: " "), path.hasPrefix("/"), !seen.contains(path) else { continue }
            seen.insert(path)
            if path.hasPrefix("/dev/") && !path.hasPrefix("/dev/shm/") && !path.hasPrefix("/dev/zero") {
                problems.append("it maps the device \(path), which CRIU cannot restore on another node")
                continue
            }
            if path.hasSuffix(" (deleted)") { continue }   // CRIU dumps deleted mappings' contents
            // The mount of a mapped file: by the longest mount point prefix.
            let m = mounts.values.filter { path == $0.point || path.hasPrefix($0.point == "/" ? "/" : $0.point + "/") }
                .max { $0.point.count < $1.point.count }
            if let m, !shared(m) {
                problems.append("it maps \(path) from a node-local file system (\(m.type) at \(m.point))")
            }
        }
        return problems
    }

    func takeCopy(pid: pid_t, fd: Int32) -> Int32 {
        let pidfd = ssi_pidfd_open(pid)
        guard pidfd >= 0 else { return -1 }
        defer { close(pidfd) }
        return ssi_pidfd_getfd(pidfd, fd)
    }

    /// The process and its descendants, parents first.
    public static func tree(root: pid_t) -> [pid_t] {
        var children: [pid_t: [pid_t]] = [:]
        for name in (try? FileSystem.list("/proc")) ?? [] {
            guard let pid = pid_t(name), let stat = try? FileSystem.readText("/proc/\(name)/stat"),
                  let close = stat.lastIndex(of: ")") else { continue }
            let rest = stat[stat.index(after: close)...].split(separator: " ")
            if rest.count > 2, let ppid = pid_t(rest[1]) { children[ppid, default: []].append(pid) }
        }
        var out: [pid_t] = [], queue = [root]
        while !queue.isEmpty {
            let p = queue.removeFirst()
            out.append(p)
            queue += (children[p] ?? []).sorted()
        }
        return out
    }

    /// For each resource (a `pipe:[INO]` as /proc/PID/fd shows it), one
    /// process outside `except` that holds it, and the descriptor.
    public static func holders(of resources: Set<String>, except: Set<pid_t>) -> [String: (pid_t, Int32)] {
        var found: [String: (pid_t, Int32)] = [:]
        for name in (try? FileSystem.list("/proc")) ?? [] {
            guard let p = pid_t(name), !except.contains(p) else { continue }
            for f in (try? FileSystem.list("/proc/\(name)/fd")) ?? [] {
                guard let fd = Int32(f), let link = try? FileSystem.readLink("/proc/\(name)/fd/\(f)"),
                      resources.contains(link), found[link] == nil else { continue }
                found[link] = (p, fd)
            }
        }
        return found
    }

    /// Whether the process catches or ignores `signal` (SigCgt, SigIgn in
    /// /proc/PID/status): false when its default action applies.
    public static func handles(_ pid: pid_t, signal: Int32) -> Bool {
        guard let text = try? FileSystem.readText("/proc/\(pid)/status"), (1...64).contains(signal) else { return false }
        let bit = UInt64(1) << UInt64(signal - 1)
        for line in text.lines() where line.hasPrefix("SigCgt:") || line.hasPrefix("SigIgn:") {
            let hex = line.drop { $0 != ":" }.dropFirst().trimmingCharacters(in: " \t")
            if let mask = UInt64(hex, radix: 16), mask & bit != 0 { return true }
        }
        return false
    }

    /// Whether `pid` may read terminal `tty` now, as the kernel would let
    /// it at home: yes unless the terminal is its controlling terminal and
    /// its process group is not the terminal's foreground group (a
    /// stopped or background job: at home, its read would stop it). A
    /// process that is gone may (its relay ends on its own).
    public static func mayRead(terminal tty: Int32, pid: pid_t) -> Bool {
        guard let text = try? FileSystem.readText("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")") else { return true }
        // After the command: state ppid pgrp session tty_nr tpgid ...
        let f = text[text.index(after: close)...].split(separator: " ")
        guard f.count > 5, let pgrp = Int32(f[2]), let ttyNr = UInt64(f[4]), let tpgid = Int32(f[5]) else { return true }
        var st = stat()
        guard fstat(tty, &st) == 0 else { return true }
        let rdev = UInt64(st.st_rdev)
        let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & ~UInt64(0xfff))
        let minor = (rdev & 0xff) | ((rdev >> 12) & ~UInt64(0xff))
        // /proc's encoding of the device (the kernel's new_encode_dev).
        let encoded = (minor & 0xff) | (major << 8) | ((minor & ~UInt64(0xff)) << 12)
        guard ttyNr == encoded else { return true }
        return tpgid == pgrp
    }

    /// Whether one of `pids` (the first 64) sleeps in a read of the
    /// terminal `slave` (its /dev/pts path) now: its main thread's
    /// syscall is read or readv on a descriptor that is that terminal,
    /// and it is asleep (a stopped process still shows the read it was
    /// stopped in, and is not reading).
    public static func sleepsInRead(of slave: String, among pids: [pid_t]) -> Bool {
        for pid in pids.prefix(64) {
            guard let text = try? FileSystem.readText("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")"),
                  text[text.index(after: close)...].split(separator: " ").first == "S",
                  let call = try? FileSystem.readText("/proc/\(pid)/syscall") else { continue }
            // "NR ARG0 ARG1 ...": the number in decimal, the arguments in hex.
            let f = call.split(separator: " ")
            guard f.count > 1, f[0] == "0" || f[0] == "19", f[1].hasPrefix("0x"),
                  let fd = Int32(f[1].dropFirst(2), radix: 16) else { continue }
            if (try? FileSystem.readLink("/proc/\(pid)/fd/\(fd)")) == slave { return true }
        }
        return false
    }

    /// A background job read its terminal (`pid`, at home, is its
    /// deputy): SIGTTIN to its group, as the kernel sends it, unless the
    /// group is orphaned (the kernel fails such a read with EIO and sends
    /// nothing) or `pid` is stopped already. Returns whether it was sent.
    @discardableResult
    public static func stopForTerminalInput(_ pid: pid_t) -> Bool {
        guard let text = try? FileSystem.readText("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")") else { return false }
        let f = text[text.index(after: close)...].split(separator: " ")
        guard f.count > 2, f[0] != "T", f[0] != "t", let pgrp = pid_t(f[2]), pgrp > 0, !isOrphaned(group: pgrp) else { return false }
        return kill(-pgrp, SIGTTIN) == 0
    }

    /// Whether `pid`'s group is the foreground group of its controlling
    /// terminal (stat's tpgid is its pgrp); false without a terminal or
    /// when it is gone.
    public static func isForeground(_ pid: pid_t) -> Bool {
        guard let text = try? FileSystem.readText("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")") else { return false }
        // After the command: state ppid pgrp session tty_nr tpgid ...
        let f = text[text.index(after: close)...].split(separator: " ")
        guard f.count > 5, let pgrp = Int32(f[2]), let ttyNr = Int64(f[4]), let tpgid = Int32(f[5]) else { return false }
        return ttyNr != 0 && tpgid == pgrp
    }

    /// Whether process group `pgrp` is orphaned, as the kernel decides
    /// (POSIX): no member has a parent in the same session but another
    /// group. The kernel discards SIGTSTP, SIGTTIN and SIGTTOU to such a
    /// group's members unless they catch them.
    public static func isOrphaned(group pgrp: pid_t) -> Bool {
        var info: [pid_t: (ppid: pid_t, pgrp: pid_t, session: pid_t)] = [:]
        for name in (try? FileSystem.list("/proc")) ?? [] {
            guard let pid = pid_t(name), let text = try? FileSystem.readText("/proc/\(pid)/stat"),
                  let close = text.lastIndex(of: ")") else { continue }
            let f = text[text.index(after: close)...].split(separator: " ")
            guard f.count > 3, let ppid = pid_t(f[1]), let g = pid_t(f[2]), let s = pid_t(f[3]) else { continue }
            info[pid] = (ppid, g, s)
        }
        for (_, m) in info where m.pgrp == pgrp {
            guard let parent = info[m.ppid] else { continue }
            if parent.session == m.session && parent.pgrp != pgrp { return false }
        }
        return true
    }

    /// A process's group, from /proc/PID/stat.
    public static func group(of pid: pid_t) -> pid_t? {
        guard let text = try? FileSystem.readText("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")") else { return nil }
        let f = text[text.index(after: close)...].split(separator: " ")
        return f.count > 2 ? pid_t(f[2]) : nil
    }

    /// A process's argv, as /proc has it (empty for a kernel thread).
    public static func arguments(_ pid: pid_t) -> [String] {
        let raw = (try? FileSystem.readFile("/proc/\(pid)/cmdline")) ?? []
        return raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The threads' count and the command name of a process.
    public static func command(_ pid: pid_t) -> String {
        let raw = (try? FileSystem.readFile("/proc/\(pid)/cmdline")) ?? []
        let args = raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        if !args.isEmpty { return args.joined(separator: " ") }
        let comm = (try? FileSystem.readText("/proc/\(pid)/comm")) ?? "?"
        return "[" + comm.trimmingCharacters(in: "\n") + "]"
    }
}

extension StringProtocol {
    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s.removeFirst() }
        while let l = s.last, set.contains(l) { s.removeLast() }
        return String(s)
    }
}
