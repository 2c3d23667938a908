public import SSICore

/// What fence_ssi is asked to do: dlm_controld's `key=value` words turned
/// into one line for the fence switch (see the ssi executable's
/// FenceAgent for the protocol).
public struct FenceRequest: Sendable, Equatable {
    /// `off N`, `on N` or `monitor`: what is logged.
    public var line: String
    /// `password=` (or `passwd=`): the switch's, sent after the line,
    /// never logged.
    public var password: String?
    public var address: IPv4Address
    public var port: UInt16
    public var timeoutSeconds: Int

    public static let defaultPort: UInt16 = 7070

    /// The request `words` (key=value) describe, or what is wrong with them.
    public static func parse(_ words: [String]) -> Result<FenceRequest, ParseFailure> {
        var values: [String: String] = [:]
        for w in words {
            let t = w.hasPrefix("--") ? String(w.dropFirst(2)) : w
            guard let eq = t.firstIndex(of: "=") else {
                if t.hasPrefix("#") || t.isEmpty { continue }
                return .failure(ParseFailure("\"\(w)\" is not key=value"))
            }
            values[String(t[..<eq])] = String(t[t.index(after: eq)...])
        }
        guard let host = values["ipaddr"] ?? values["ip"] else {
            return .failure(ParseFailure("no ipaddr= (the fence switch's address); set it in [fence] args"))
        }
        guard let address = try? IPv4Address(parsing: host) else {
            return .failure(ParseFailure("ipaddr=\(host) is not an IPv4 address"))
        }
        var port = FenceRequest.defaultPort
        if let p = values["ipport"] {
            guard let v = UInt16(p), v > 0 else { return .failure(ParseFailure("ipport=\(p) is not a port number")) }
            port = v
        }
        var timeout = 60
        if let t = values["timeout"] {
            guard let v = Int(t), v > 0, v <= 3600 else { return .failure(ParseFailure("timeout=\(t) is not 1...3600 seconds")) }
            timeout = v
        }
        let action = values["action"] ?? values["option"] ?? "off"
        let line: String
        switch action {
        case "monitor", "status", "list":
            line = "monitor"
        case "off", "reboot", "on":
            guard let node = values["node"] ?? values["plug"] ?? values["port"] else {
                return .failure(ParseFailure("no node= (the node id to \(action == "on" ? "power on" : "fence"))"))
            }
            guard let id = Int(node), id > 0 else { return .failure(ParseFailure("node=\(node) is not a node id")) }
            line = "\(action == "on" ? "on" : "off") \(id)"
        default:
            return .failure(ParseFailure("action=\(action) is not off, reboot, on or monitor"))
        }
        return .success(FenceRequest(line: line, password: values["password"] ?? values["passwd"],
                                     address: address, port: port, timeoutSeconds: timeout))
    }

    /// What goes to the switch: the line, then the password if there is one.
    public var wireLine: String { line + (password.map { " " + $0 } ?? "") }

    public struct ParseFailure: Error, Equatable, CustomStringConvertible {
        public var description: String
        init(_ d: String) { description = d }
    }
}
