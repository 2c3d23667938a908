#if canImport(Glibc)
import Glibc
#endif
internal import CCorosync
public import SSICore
import SSILinux

/// Thin Swift handles on corosync's client libraries. Each client is a
/// final class owning its handle; callbacks come back through the
/// library's context pointer to the object, and run inside `dispatch()`,
/// on the caller's thread (the agent is single-threaded: poll, dispatch).

func corosyncError(_ what: String, _ rc: cs_error_t) -> SSIError {
    let name: String
    switch rc {
    case CS_ERR_LIBRARY: name = "CS_ERR_LIBRARY"
    case CS_ERR_TRY_AGAIN: name = "CS_ERR_TRY_AGAIN"
    case CS_ERR_NOT_EXIST: name = "CS_ERR_NOT_EXIST"
    case CS_ERR_ACCESS: name = "CS_ERR_ACCESS"
    case CS_ERR_BAD_HANDLE: name = "CS_ERR_BAD_HANDLE"
    case CS_ERR_TIMEOUT: name = "CS_ERR_TIMEOUT"
    case CS_ERR_INVALID_PARAM: name = "CS_ERR_INVALID_PARAM"
    default: name = "cs_error \(rc.rawValue)"
    }
    if rc == CS_ERR_LIBRARY {
        return SSIError("membership", "\(what): cannot reach corosync (\(name))",
                        hint: "is corosync running on this node?")
    }
    return SSIError("membership", "\(what): \(name)")
}

@inline(__always)
func check(_ rc: cs_error_t, _ what: @autoclosure () -> String) throws(SSIError) {
    if rc != CS_OK { throw corosyncError(what(), rc) }
}

/// corosync's quorum service: is the partition quorate, and who is in it.
public final class QuorumClient {
    private var handle: quorum_handle_t = 0
    public private(set) var quorate = false
    public private(set) var members: [UInt32] = []
    /// Called after every change the library reports.
    public var onChange: ((QuorumClient) -> Void)?

    public init() throws(SSIError) {
        try LazyLibrary.quorum.load()
        var model = quorum_model_v1_data_t()
        model.model = QUORUM_MODEL_V1
        model.quorum_notify_fn = { handle, quorate, _, count, list in
            guard let me = QuorumClient.from(handle) else { return }
            me.quorate = quorate != 0
            me.members = (0..<Int(count)).map { list![$0] }
            me.onChange?(me)
        }
        var type: UInt32 = 0
        let rc = withUnsafeMutablePointer(to: &model) { p in
            p.withMemoryRebound(to: quorum_model_data_t.self, capacity: 1) {
                quorum_model_initialize(&handle, QUORUM_MODEL_V1, $0, &type, nil)
            }
        }
        try check(rc, "connect to the quorum service")
        _ = quorum_context_set(handle, Unmanaged.passUnretained(self).toOpaque())
        var q: Int32 = 0
        if quorum_getquorate(handle, &q) == CS_OK { quorate = q != 0 }
    }

    // An init that threw (corosync down, the library missing) left 0.
    deinit { if handle != 0 { quorum_finalize(handle) } }

    fileprivate static func from(_ h: quorum_handle_t) -> QuorumClient? {
        var ctx: UnsafeRawPointer?
        guard quorum_context_get(h, &ctx) == CS_OK, let ctx else { return nil }
        return Unmanaged<QuorumClient>.fromOpaque(ctx).takeUnretainedValue()
    }

    /// Start change notifications (the current state is delivered first).
    public func track() throws(SSIError) {
        try check(quorum_trackstart(handle, UInt32(CS_TRACK_CURRENT | CS_TRACK_CHANGES)), "track quorum")
    }

    public func fileDescriptor() throws(SSIError) -> Int32 {
        var fd: Int32 = -1
        try check(quorum_fd_get(handle, &fd), "quorum fd")
        return fd
    }

    public func dispatch() throws(SSIError) {
        try check(quorum_dispatch(handle, CS_DISPATCH_ALL), "quorum dispatch")
    }

    /// The current members: tracks once and waits (at most `timeoutMs`)
    /// for the library to deliver the current state.
    public func currentMembers(timeoutMs: Int32 = 5000) throws(SSIError) -> [UInt32] {
        try track()
        let fd = try fileDescriptor()
        let deadline = Process.now() + Double(timeoutMs) / 1000
        while members.isEmpty && Process.now() < deadline {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if pollRetrying(&p, timeoutMs: 200) > 0 { try dispatch() }
        }
        return members.sorted()
    }

    public func refreshQuorate() throws(SSIError) -> Bool {
        var q: Int32 = 0
        try check(quorum_getquorate(handle, &q), "read quorum")
        quorate = q != 0
        return quorate
    }
}

/// votequorum: votes and expected votes.
public final class VotequorumClient {
    private var handle: votequorum_handle_t = 0

    public struct Info: Sendable, Equatable {
        public var nodeID: UInt32
        public var state: UInt32       // 1 member, 2 dead, 3 leaving
        public var votes: UInt32
        public var expectedVotes: UInt32
        public var totalVotes: UInt32
        public var quorum: UInt32
        public var flags: UInt32
    }

    public init() throws(SSIError) {
        try LazyLibrary.votequorum.load()
        try check(votequorum_initialize(&handle, nil), "connect to votequorum")
    }

    deinit { if handle != 0 { votequorum_finalize(handle) } }

    /// Sets the expected votes (corosync-quorumtool -e): refused while
    /// they would be below the votes present.
    public func setExpectedVotes(_ votes: UInt32) throws(SSIError) {
        try check(votequorum_setexpected(handle, votes), "set the expected votes to \(votes)")
    }

    /// Node 0 means this node.
    public func info(node: UInt32 = 0) throws(SSIError) -> Info {
        var i = votequorum_info()
        try check(votequorum_getinfo(handle, node, &i), "votequorum info of node \(node)")
        return Info(nodeID: i.node_id, state: i.node_state, votes: i.node_votes,
                    expectedVotes: i.node_expected_votes, totalVotes: i.total_votes,
                    quorum: i.quorum, flags: i.flags)
    }
}

/// cmap: corosync's configuration and runtime key-value store.
public final class CmapClient {
    private var handle: cmap_handle_t = 0

    public init() throws(SSIError) {
        try LazyLibrary.cmap.load()
        try check(cmap_initialize(&handle), "connect to cmap")
    }

    deinit { if handle != 0 { cmap_finalize(handle) } }

    public func string(_ key: String) -> String? {
        var value: UnsafeMutablePointer<CChar>?
        guard cmap_get_string(handle, key, &value) == CS_OK, let value else { return nil }
        defer { free(value) }
        return String(cString: value)
    }

    public func uint32(_ key: String) -> UInt32? {
        var v: UInt32 = 0
        return cmap_get_uint32(handle, key, &v) == CS_OK ? v : nil
    }
}

/// A closed process group: ordered, reliable messages among the members
/// of one group, and notifications when members join or leave.
public final class CPGClient {
    private var handle: cpg_handle_t = 0
    private var group = cpg_name()
    public let groupName: String

    public struct Member: Sendable, Hashable {
        public var node: UInt32
        public var pid: UInt32
    }

    /// (from node, payload)
    public var onMessage: ((UInt32, [UInt8]) -> Void)?
    /// (members, left, joined)
    public var onMembership: (([Member], [Member], [Member]) -> Void)?

    public init(group name: String) throws(SSIError) {
        groupName = name
        let bytes = Array(name.utf8.prefix(Int(CPG_MAX_NAME_LENGTH) - 1))
        withUnsafeMutableBytes(of: &group.value) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        group.length = UInt32(bytes.count)
        try LazyLibrary.cpg.load()
        var model = cpg_model_v1_data_t()
        model.model = CPG_MODEL_V1
        model.cpg_deliver_fn = { h, _, nodeid, _, msg, len in
            guard let me = CPGClient.from(h), let msg else { return }
            let payload = Array(UnsafeRawBufferPointer(start: msg, count: len))
            me.onMessage?(nodeid, payload)
        }
        model.cpg_confchg_fn = { h, _, members, nm, left, nl, joined, nj in
            guard let me = CPGClient.from(h) else { return }
            func list(_ p: UnsafePointer<cpg_address>?, _ n: Int) -> [Member] {
                (0..<n).map { Member(node: p![$0].nodeid, pid: p![$0].pid) }
            }
            me.onMembership?(list(members, nm), list(left, nl), list(joined, nj))
        }
        let rc = withUnsafeMutablePointer(to: &model) { p in
            p.withMemoryRebound(to: cpg_model_data_t.self, capacity: 1) {
                cpg_model_initialize(&handle, CPG_MODEL_V1, $0, nil)
            }
        }
        try check(rc, "connect to CPG")
        _ = cpg_context_set(handle, Unmanaged.passUnretained(self).toOpaque())
    }

    deinit { if handle != 0 { cpg_finalize(handle) } }

    fileprivate static func from(_ h: cpg_handle_t) -> CPGClient? {
        var ctx: UnsafeMutableRawPointer?
        guard cpg_context_get(h, &ctx) == CS_OK, let ctx else { return nil }
        return Unmanaged<CPGClient>.fromOpaque(ctx).takeUnretainedValue()
    }

    public func join() throws(SSIError) {
        try retrying { cpg_join(handle, &group) }
    }

    public func leave() {
        _ = cpg_leave(handle, &group)
    }

    public func send(_ payload: [UInt8]) throws(SSIError) {
        var bytes = payload
        let rc = bytes.withUnsafeMutableBytes { raw -> cs_error_t in
            var iov = iovec(iov_base: raw.baseAddress, iov_len: raw.count)
            var rc = CS_ERR_TRY_AGAIN
            // TRY_AGAIN is flow control or a membership change in
            // progress: retry for a bounded time.
            for _ in 0..<100 {
                rc = cpg_mcast_joined(handle, CPG_TYPE_AGREED, &iov, 1)
                if rc != CS_ERR_TRY_AGAIN { break }
                usleep(20_000)
            }
            return rc
        }
        try check(rc, "send to CPG group \(groupName)")
    }

    public func localNode() throws(SSIError) -> UInt32 {
        var id: UInt32 = 0
        try check(cpg_local_get(handle, &id), "local node id")
        return id
    }

    public func fileDescriptor() throws(SSIError) -> Int32 {
        var fd: Int32 = -1
        try check(cpg_fd_get(handle, &fd), "CPG fd")
        return fd
    }

    public func dispatch() throws(SSIError) {
        try check(cpg_dispatch(handle, CS_DISPATCH_ALL), "CPG dispatch")
    }

    private func retrying(_ body: () -> cs_error_t) throws(SSIError) {
        var rc = CS_ERR_TRY_AGAIN
        for _ in 0..<100 {
            rc = body()
            if rc != CS_ERR_TRY_AGAIN { break }
            usleep(50_000)
        }
        try check(rc, "join CPG group \(groupName)")
    }
}
