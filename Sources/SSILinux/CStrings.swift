#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
public import SSICore

/// A NULL-terminated array of C strings (an argv or an envp), copied once
/// and freed once. For the C calls that take `char *const[]`: execve, the
/// spawn helper. `~Copyable`, so no copy of it can free the strings a
/// second time or outlive them.
public struct CStringArray: ~Copyable {
    /// The strings, then nil.
    private let pointers: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
    public let count: Int

    /// Throws ENOMEM when a copy fails: a nil there would end the argv
    /// early, silently, and a shorter command line is worse than an error.
    public init(_ strings: [String]) throws(SystemCallError) {
        let list = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: strings.count + 1)
        for (i, s) in strings.enumerated() {
            guard let copy = strdup(s) else {
                for j in 0..<i { free(list[j]) }
                list.deallocate()
                throw SystemCallError("copying argument \(i) (\(s.utf8.count) bytes)", errno: ENOMEM)
            }
            (list + i).initialize(to: copy)
        }
        (list + strings.count).initialize(to: nil)
        count = strings.count
        pointers = list
    }

    /// The array for C. Valid while this value lives.
    public var pointer: UnsafePointer<UnsafeMutablePointer<CChar>?> { UnsafePointer(pointers) }

    /// The i-th string for C.
    public subscript(i: Int) -> UnsafeMutablePointer<CChar>? { i < count ? pointers[i] : nil }

    deinit {
        for i in 0..<count { free(pointers[i]) }
        pointers.deinitialize(count: count + 1)
        pointers.deallocate()
    }
}

/// One C string, copied once and freed once (a path for C).
public struct CString: ~Copyable {
    public let pointer: UnsafeMutablePointer<CChar>

    public init(_ string: String) throws(SystemCallError) {
        guard let copy = strdup(string) else { throw SystemCallError("copying a string of \(string.utf8.count) bytes", errno: ENOMEM) }
        pointer = copy
    }

    deinit { free(pointer) }
}
