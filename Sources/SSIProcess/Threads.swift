#if canImport(Glibc)
import Glibc
#endif

/// A value shared between threads behind a mutex.
public final class Locked<Value>: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var value: Value
    public init(_ value: Value) {
        self.value = value
        pthread_mutex_init(mutex, nil)
    }
    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }
    public func withLock<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
    public var current: Value { withLock { $0 } }
}

/// A bound on connections that hold a thread before they are
/// authenticated. When `limit` are pending, the oldest is evicted (shut
/// down, so its thread's read fails at once) to let the newcomer in: a
/// flood of idle connections then costs each of them its place, and a
/// legitimate peer arriving during the flood still gets through. A thread
/// must `leave` before it closes its descriptor (so that an evicted
/// number is never one reused by a later connection).
public final class ConnectionGate: Sendable {
    public let limit: Int
    private let state = Locked((pending: [Int32](), dropped: 0, lastReport: 0.0))
    public init(limit: Int) { self.limit = max(1, limit) }

    /// Registers `fd`; returns how many were evicted for it (0 or 1).
    @discardableResult
    public func enter(_ fd: Int32) -> Int {
        state.withLock { s in
            var evicted = 0
            while s.pending.count >= limit {
                let oldest = s.pending.removeFirst()
                shutdown(oldest, Int32(SHUT_RDWR))
                evicted += 1
            }
            s.pending.append(fd)
            s.dropped += evicted
            return evicted
        }
    }

    /// `fd` is authenticated, or about to be closed.
    public func leave(_ fd: Int32) { state.withLock { s in s.pending.removeAll { $0 == fd } } }

    public var pending: Int { state.withLock { $0.pending.count } }

    /// Evictions since the last report, at most every 10 s (a flood does
    /// not flood the log too).
    public func evictionReport() -> Int? {
        state.withLock { s in
            let now = Double(time(nil))
            guard s.dropped > 0, now - s.lastReport >= 10 else { return nil }
            s.lastReport = now
            defer { s.dropped = 0 }
            return s.dropped
        }
    }
}
