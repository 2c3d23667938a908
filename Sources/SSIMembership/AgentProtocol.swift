import SSICore

/// What a command asks the membership agent on its local socket
/// (docs/PROTOCOLS.md 2.): one LF-terminated line,
///
///     v2 mount MOUNTLINE        (ClusterMount.line; its ID is replaced)
///     v2 umount ESCAPED-TARGET  (ClusterMount.escape)
///     v2 lock NAME
///
/// The version word comes first so that an agent of another version
/// answers with a clear error rather than a misparse: this agent refuses
/// any other version (`AgentRequestError`), and an agent before v2 answers
/// `unknown request: v2 ...`, which `AgentClient.exchange` turns into "the
/// agent is older than this command".
public enum AgentRequest: Equatable, Sendable {
    case mount(ClusterMount)
    case umount(target: String)
    case lock(name: String)

    public static let version = 2

    /// The line, without its LF.
    public func encode() -> String {
        switch self {
        case .mount(let entry): "v\(Self.version) mount \(entry.line)"
        case .umount(let target): "v\(Self.version) umount \(ClusterMount.escape(target))"
        case .lock(let name): "v\(Self.version) lock \(name)"
        }
    }

    public static func decode(_ line: String) throws(AgentRequestError) -> AgentRequest {
        // The socket cuts longer lines already; a decoder states its own bound.
        guard line.utf8.count <= AgentSocket.maxLineBytes else { throw .tooLong(bytes: line.utf8.count) }
        let words = line.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        let v = words[0]
        guard v.count >= 2, v.first == "v", v.dropFirst().allSatisfy({ $0.isASCII && $0.isNumber }) else {
            throw .unversioned(line)
        }
        guard Int(v.dropFirst()) == version else { throw .unsupportedVersion(String(v.prefix(24))) }
        let kind = words.count > 1 ? words[1] : ""
        let rest = words.count > 2 ? String(words[2]) : ""
        switch kind {
        case "mount":
            do { return .mount(try ClusterMount(line: rest)) } catch { throw .malformed(error.description) }
        case "umount":
            return .umount(target: ClusterMount.unescape(rest))
        case "lock":
            // The name is checked by ClusterLocks.request, which says why.
            return .lock(name: rest)
        default:
            throw .unknownKind(line)
        }
    }
}

/// Why the agent did not take a request: its description is the answer
/// line sent before `end 1`.
public enum AgentRequestError: Error, Equatable, CustomStringConvertible {
    case tooLong(bytes: Int)
    /// No version word: a command of an ssi before v2, or not ssi's.
    case unversioned(String)
    case unsupportedVersion(String)
    case unknownKind(String)
    case malformed(String)

    public var description: String {
        switch self {
        case .tooLong(let n): "request too long: \(n) bytes, at most \(AgentSocket.maxLineBytes)"
        case .unversioned(let line):
            "unknown request (no protocol version; this agent speaks v\(AgentRequest.version): run one ssi version): \(MembershipAgent.printable(line.prefix(200)))"
        case .unsupportedVersion(let v):
            "this membership agent speaks protocol v\(AgentRequest.version), the command \(MembershipAgent.printable(Substring(v))): "
                + "run one ssi version (restart the agent after an upgrade)"
        case .unknownKind(let line): "unknown request: \(MembershipAgent.printable(line.prefix(200)))"
        case .malformed(let why): why
        }
    }
}

/// The agent's answer lines: zero or more `line`s, then one `end CODE`
/// (CODE the command's exit status).
public enum AgentReply: Equatable, Sendable {
    case line(String)
    case end(Int32)

    /// The line, without its LF (a line break inside a line would end it:
    /// it is sent as a space).
    public func encode() -> String {
        switch self {
        case .line(let text):
            String(String.UnicodeScalarView(text.unicodeScalars.map { $0 == "\n" || $0 == "\r" ? " " : $0 }))
        case .end(let code): "end \(code)"
        }
    }

    /// Any line not starting with "end " is a line; an "end" whose code
    /// is not a number is status 1.
    public static func decode(_ line: String) -> AgentReply {
        guard line.hasPrefix("end ") else { return .line(line) }
        return .end(Int32(line.dropFirst(4)) ?? 1)
    }
}
