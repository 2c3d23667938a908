#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import SSICore

/// Runs a libc call that returns -1 and sets errno, retrying EINTR, and
/// throws an error that names the call (swift-system's and swift-nio's
/// policy: EINTR is never the caller's problem).
@inline(__always)
@discardableResult
public func syscall<T: FixedWidthInteger>(
    _ name: @autoclosure () -> String, _ body: () -> T
) throws(SystemCallError) -> T {
    while true {
        let rc = body()
        if rc == -1 {
            let e = errno
            if e == EINTR { continue }
            throw SystemCallError(name(), errno: e)
        }
        return rc
    }
}
