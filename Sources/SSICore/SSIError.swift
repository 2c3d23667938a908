// The one error type that crosses module boundaries. Every failure a user can
// hit says which step failed, what it was working on, why, and (when we know
// it) what to do about it, so that the one-line message is enough on a serial
// console with nothing else to go on.
public struct SSIError: Error, CustomStringConvertible, Sendable {
    /// The stage or command that failed: "root", "modules", "mkinitrd" ...
    public var step: String
    /// What failed, naming the thing: "UUID=... not found after 30 s".
    public var message: String
    /// What the user can do, if we know.
    public var hint: String?

    public init(_ step: String, _ message: String, hint: String? = nil) {
        self.step = step
        self.message = message
        self.hint = hint
    }

    public var description: String {
        if let hint { return "\(step): \(message); \(hint)" }
        return "\(step): \(message)"
    }
}

/// An errno value with the name of the call that produced it, for messages
/// like "mount /dev/vda on /sysroot: No such device (ENODEV)".
public struct SystemCallError: Error, CustomStringConvertible, Sendable, Equatable {
    public var call: String
    public var errno: Int32

    public init(_ call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    public var description: String { "\(call): \(errnoDescription(errno))" }
}
