#if canImport(Glibc)
import Glibc
#endif

/// A detached POSIX thread running `body`. The process service blocks in
/// reads on pipes, sockets and ttys it relays, one thread per direction:
/// simple to reason about, and a stuck relay never stalls another.
public func startThread(_ body: @escaping @Sendable () -> Void) {
    final class Box { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { arg in
        let b = Unmanaged<AnyObject>.fromOpaque(arg!).takeRetainedValue() as! Box
        b.body()
        return nil
    }, box)
    if rc != 0 {
        // No thread: run it here rather than lose it.
        Unmanaged<AnyObject>.fromOpaque(box).release()
        body()
        return
    }
    pthread_detach(thread)
}

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
/// authenticated: `enter` fails when `limit` are already in.
public final class ConnectionGate: Sendable {
    public let limit: Int
    private let state = Locked((inside: 0, dropped: 0, lastReport: 0.0))
    public init(limit: Int) { self.limit = limit }

    public func enter() -> Bool {
        state.withLock { s in
            guard s.inside < limit else { return false }
            s.inside += 1
            return true
        }
    }

    public func leave() { state.withLock { s in s.inside = max(0, s.inside - 1) } }

    public var inside: Int { state.withLock { $0.inside } }

    /// Counts a dropped connection; `report` gets the count at most every
    /// 10 s, so a flood does not flood the log too.
    public func noteDropped(_ report: (Int) -> Void) {
        let due: Int? = state.withLock { s in
            s.dropped += 1
            let now = Double(time(nil))
            guard now - s.lastReport >= 10 else { return nil }
            s.lastReport = now
            defer { s.dropped = 0 }
            return s.dropped
        }
        if let due { report(due) }
    }
}
