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
