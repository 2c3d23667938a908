#if canImport(Glibc)
import Glibc
#endif
import CSSIShim
public import SSICore
import SSILinux

/// Who asks on a local socket, as the kernel says and nothing else: the
/// pid, uid and gid of SO_PEERCRED, and the supplementary groups of
/// SO_PEERGROUPS (Linux 4.13), or on an older kernel the groups in
/// /proc/PID/status of the pid the kernel reported. A request is the
/// caller's to write: an identity in it (a uid, a "client" pid whose
/// groups to take) would be whatever the caller wanted it to be.
public struct Caller: Sendable, Equatable, CustomStringConvertible {
    public var pid: pid_t
    public var uid: uid_t
    public var gid: gid_t
    public var groups: [gid_t]

    /// NGROUPS_MAX: no process holds more, so no more is allocated for
    /// anybody's list.
    static let maxGroups = 65536

    public init(pid: pid_t, uid: uid_t, gid: gid_t, groups: [gid_t]) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.groups = groups
    }

    /// The peer of the connected unix socket `socket`. Throws when the
    /// kernel does not say (not a unix socket, no credentials): the
    /// request is then refused, never served as someone by default.
    public init(peerOf socket: Int32) throws(SSIError) {
        var pid: pid_t = 0, uid = uid_t.max, gid = gid_t.max
        guard ssi_peer_cred(socket, &pid, &uid, &gid) == 0 else {
            let e = errno
            throw Self.refusal("SO_PEERCRED: \(errnoDescription(e))")
        }
        // (uid_t)-1 is what a socket without credentials reports, and no
        // process can hold it (setuid(-1) is "unchanged").
        guard uid != uid_t.max, gid != gid_t.max else {
            throw Self.refusal("SO_PEERCRED gave no uid or gid")
        }
        self.init(pid: pid, uid: uid, gid: gid, groups: try Self.peerGroups(socket, pid: pid, uid: uid, gid: gid))
    }

    public var description: String {
        "pid \(pid) uid \(uid) gid \(gid) groups \(groups.map(String.init).joined(separator: ","))"
    }

    static func refusal(_ why: String) -> SSIError {
        SSIError("proc", "cannot tell who is asking on the local socket (\(why)): request refused",
                 hint: "commands reach the agent through its unix socket \(ProcAgent.socketName), as themselves")
    }

    /// SO_PEERGROUPS: the groups the kernel recorded at connect(), so a
    /// peer that exits or execs after connecting changes nothing. Only a
    /// kernel without it (ENOPROTOOPT) falls back to /proc, and then the
    /// process there must still be the one that connected (same uid and
    /// gid), not another one that got its pid since.
    static func peerGroups(_ socket: Int32, pid: pid_t, uid: uid_t, gid: gid_t) throws(SSIError) -> [gid_t] {
        var buffer = [gid_t](repeating: 0, count: 64)
        for _ in 0..<2 {
            var n: Int32 = 0
            let rc = ssi_peer_groups(socket, &buffer, Int32(buffer.count), &n)
            let e = errno
            if rc == 0 { return Array(buffer.prefix(Int(min(max(n, 0), Int32(buffer.count))))) }
            if e == ERANGE, n > 0, Int(n) <= maxGroups, Int(n) > buffer.count {
                buffer = [gid_t](repeating: 0, count: Int(n))
                continue
            }
            guard e == ENOPROTOOPT else { throw refusal("SO_PEERGROUPS: \(errnoDescription(e))") }
            return try groupsFromProc(pid: pid, uid: uid, gid: gid)
        }
        throw refusal("SO_PEERGROUPS: the peer's group list kept changing size")
    }

    /// The groups in /proc/PID/status of the pid the kernel reported, if
    /// that process still has the effective uid and gid the kernel
    /// reported (else its pid may be another process's by now).
    static func groupsFromProc(pid: pid_t, uid: uid_t, gid: gid_t) throws(SSIError) -> [gid_t] {
        guard let status = ProcessStatus.of(pid) else {
            throw refusal("no SO_PEERGROUPS on this kernel, and no /proc/\(pid)/status to read the groups from")
        }
        guard status.uids[1] == uid, status.gids[1] == gid else {
            throw refusal("process \(pid) is no longer uid \(uid) gid \(gid)")
        }
        return status.groups
    }
}

/// The identity lines of /proc/PID/status: "Uid:" and "Gid:" (real,
/// effective, saved, file system) and "Groups:".
struct ProcessStatus: Sendable, Equatable {
    var uids: [uid_t]
    var gids: [gid_t]
    var groups: [gid_t]

    /// nil unless Uid and Gid each have their four numbers: a status that
    /// does not say who owns the process owns nothing.
    init?(parsing text: String) {
        var uids: [uid_t]?, gids: [gid_t]?, groups: [gid_t] = []
        for line in text.lines() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon]
            guard key == "Uid" || key == "Gid" || key == "Groups" else { continue }
            let words = line[line.index(after: colon)...].split(whereSeparator: { $0 == " " || $0 == "\t" })
            // Bounded before anything is kept (NGROUPS_MAX, or four ids).
            guard words.count <= (key == "Groups" ? Caller.maxGroups : 4) else { return nil }
            var numbers: [UInt32] = []
            for w in words {
                guard let n = UInt32(w) else { return nil }
                numbers.append(n)
            }
            switch key {
            case "Uid": uids = numbers
            case "Gid": gids = numbers
            default: groups = numbers
            }
        }
        guard let uids, let gids, uids.count == 4, gids.count == 4 else { return nil }
        self.uids = uids
        self.gids = gids
        self.groups = groups
    }

    /// Read now; nil when the process is gone (or was never there).
    static func of(_ pid: pid_t) -> ProcessStatus? {
        guard pid > 0, let text = try? FileSystem.readText("/proc/\(pid)/status") else { return nil }
        return ProcessStatus(parsing: text)
    }

    /// Whether `uid` may move this process to another node: every one of
    /// its uids must be the caller's, unless the caller is root. CRIU
    /// restores with all the credentials the process had, so moving a
    /// setuid program someone started (effective or saved uid 0) would
    /// hand them what the process held, not what they hold.
    func movable(by uid: uid_t) -> Bool { uid == 0 || uids.allSatisfy { $0 == uid } }

    /// Whether `uid` may signal it: kill(2)'s own rule for a sender whose
    /// real and effective uid are both `uid` (the target's real or saved
    /// uid is the sender's), so onnode gives exactly what kill(1) would on
    /// that node, including a setuid program the caller started.
    func signallable(by uid: uid_t) -> Bool { uid == 0 || uids[0] == uid || uids[2] == uid }

    var ownerDescription: String {
        Set(uids).count == 1 ? "uid \(uids[0])" : "uid \(uids[0]) (effective \(uids[1]), saved \(uids[2]), file system \(uids[3]))"
    }
}

extension ProcAgent {
    /// The refusals for `uid` moving the processes `tree` (its root
    /// first): one per process the caller does not own, naming it and its
    /// owner. `status` reads a process's status; nil for a child means it
    /// ended since the tree was read (CRIU dumps the tree as it is frozen),
    /// for the root that there is no such process.
    static func ownershipRefusals(tree: [pid_t], uid: uid_t, status: (pid_t) -> ProcessStatus?) -> [String] {
        var refusals: [String] = []
        for (i, p) in tree.enumerated() {
            guard let s = status(p) else {
                if i == 0 { refusals.append("process \(p): no such process") }
                continue
            }
            if !s.movable(by: uid) {
                refusals.append("process \(p) belongs to \(s.ownerDescription), not to uid \(uid): only its owner or root can move it")
            }
        }
        return refusals
    }
}
