#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A NULL-terminated array of C strings (an argv or an envp), copied once
/// and freed once. For the C calls that take `char *const[]`: execve, the
/// spawn helper. `~Copyable`, so no copy of it can free the strings a
/// second time or outlive them.
public struct CStringArray: ~Copyable {
    /// The strings, then nil.
    private let pointers: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
    public let count: Int

    public init(_ strings: [String]) {
        count = strings.count
        pointers = .allocate(capacity: strings.count + 1)
        for (i, s) in strings.enumerated() {
            // A nil here would end the argv early, silently: a shorter
            // command line is worse than the trap Swift's own allocations
            // make when memory runs out.
            guard let copy = strdup(s) else { fatalError("out of memory copying an argument") }
            (pointers + i).initialize(to: copy)
        }
        (pointers + strings.count).initialize(to: nil)
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

    public init(_ string: String) {
        guard let copy = strdup(string) else { fatalError("out of memory copying a string") }
        pointer = copy
    }

    deinit { free(pointer) }
}
