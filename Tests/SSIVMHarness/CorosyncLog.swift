// How a node's departure looks in another node's console, where corosync
// logs (ssi-init starts it with its log on the console).

public enum CorosyncLog {
    /// How an observer's corosync dropped `node`, read from its console
    /// lines since the departure began.
    public enum Departure: Equatable, Sendable {
        /// A membership without the node formed with no token timeout
        /// before it: the node's leave message was heard.
        case left
        /// The token timed out first ("A processor failed, forming new
        /// configuration"): the node went silent, or a stall elsewhere
        /// hid its leave; the line says which timeout.
        case timedOut(String)
        /// No membership without it yet.
        case notYet
    }

    /// The first "Members left: ..." line that names `node` decides; a
    /// "A processor failed" line before it means the token ran out first.
    /// Later stalls (another guest that stops for a while and makes the
    /// membership re-form) do not count against a leave already seen.
    public static func departure(of node: Int, in lines: some Sequence<String>) -> Departure {
        var failed: String?
        for line in lines {
            if failed == nil, line.contains("A processor failed, forming new configuration") { failed = line }
            guard let range = line.range(of: "Members left:") else { continue }
            let names = line[range.upperBound...].split(separator: " ").compactMap { Int($0) }
            guard names.contains(node) else { continue }
            return failed.map { .timedOut($0) } ?? .left
        }
        return .notYet
    }
}
