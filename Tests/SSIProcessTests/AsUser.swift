import Foundation
import SSICore
@testable import SSIProcess

/// Acting as another user (nobody) in a test: a forked child that takes
/// that user's credentials, or a program run under setpriv(1). Gated on
/// the capabilities to change ids (CapEff), not on uid 0.
enum AsUser {
    static let nobody: uid_t = 65534
    static let nogroup: gid_t = 65534
    /// A supplementary group besides nogroup ("users"), so that a test sees
    /// the caller's groups carried over, not merely no groups.
    static let extraGroup: gid_t = 100
    static var groups: [gid_t] { [nogroup, extraGroup] }

    static let canChangeIDs: Bool = {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }),
              let caps = UInt64(String(line.dropFirst(7).filter { $0 != " " && $0 != "\t" }), radix: 16) else { return false }
        // CAP_SETGID is 6, CAP_SETUID 7.
        return caps & (1 << 6) != 0 && caps & (1 << 7) != 0
    }()
    static let skip: String? = canChangeIDs ? nil : "needs CAP_SETUID and CAP_SETGID (CapEff) to act as nobody"

    /// Forks a child that becomes nobody (groups nogroup and users, or
    /// `groups`) and
    /// exits with what `body` returns. The test process has other threads:
    /// the child makes only async-signal-safe C calls, on memory prepared
    /// before the fork (no allocation, no lock), and closes every inherited
    /// descriptor but `keep` (other tests' pipes must not stay open in it).
    static func fork(keep: [Int32] = [], groups: [gid_t] = AsUser.groups, _ body: () -> Int32) -> pid_t {
        let g = UnsafeMutablePointer<gid_t>.allocate(capacity: groups.count)
        g.initialize(from: groups, count: groups.count)
        let k = UnsafeMutablePointer<Int32>.allocate(capacity: keep.count + 1)
        k.initialize(from: keep, count: keep.count)
        let nkeep = keep.count, ngroups = groups.count
        defer { g.deallocate(); k.deallocate() }
        let pid = Glibc.fork()
        if pid != 0 { return pid }
        for fd in Int32(3)..<4096 {
            var kept = false
            for i in 0..<nkeep where k[i] == fd { kept = true }
            if !kept { close(fd) }
        }
        guard setgroups(ngroups, g) == 0, setgid(nogroup) == 0, setuid(nobody) == 0 else { _exit(120) }
        _exit(body())
    }

    /// The child's exit status, or 128+N for a signal.
    static func wait(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    /// setpriv's arguments for nobody with the test's groups, before a command.
    static var setpriv: [String] {
        ["/usr/bin/setpriv", "--reuid=\(nobody)", "--regid=\(nogroup)", "--groups=" + groups.map(String.init).joined(separator: ",")]
    }

    /// The Uid/Gid/Groups lines of /proc/self/status, as a command run
    /// there prints them: what that command runs as.
    static let printIdentity = "grep -E '^(Uid|Gid|Groups):' /proc/self/status"

    /// A directory only root may enter (0700) with a world-readable
    /// directory and file under it: `inner` is readable to anyone already
    /// in it, which nobody must never be.
    final class RootOnlyDirectory {
        let path: String
        var inner: String { path + "/inner" }
        static let secret = "root-only secret\n"
        init() throws {
            path = NSTemporaryDirectory() + "ssi-auth-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            try FileManager.default.createDirectory(atPath: path + "/inner", withIntermediateDirectories: true)
            try Self.secret.write(toFile: path + "/inner/secret", atomically: false, encoding: .utf8)
            chmod(path, 0o700)
            chmod(path + "/inner", 0o755)
            chmod(path + "/inner/secret", 0o644)
        }
        deinit { try? FileManager.default.removeItem(atPath: path) }
    }
}

extension AgentPairTests.Pair {
    /// `ssi ARGS` on node `n` as nobody (setpriv), from `cwd`.
    func runAsNobody(_ args: [String], node n: Int = 1, cwd: String = "/tmp") throws -> (status: Int32, out: String, err: String) {
        try execute(AsUser.setpriv + ["--", AgentPairTests.ssi!] + args, node: n, input: nil, cwd: cwd)
    }
}
