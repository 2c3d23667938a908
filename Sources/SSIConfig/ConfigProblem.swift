public import SSICore

/// One thing wrong with a config file, printed as one line:
/// `FILE:LINE: FIELD: what is wrong; fix`.
public struct ConfigProblem: Sendable, Equatable, CustomStringConvertible {
    public var file: String
    /// 1-based; 0 when the problem is about the file as a whole (a
    /// missing section).
    public var line: Int
    /// The TOML path of the field: "cluster.name", "node.mac"; empty for
    /// syntax errors.
    public var field: String
    public var message: String
    public var hint: String?

    public init(file: String, line: Int, field: String, _ message: String, hint: String? = nil) {
        self.file = file
        self.line = line
        self.field = field
        self.message = message
        self.hint = hint
    }

    /// Control characters are escaped here, where every problem is
    /// printed: keys, values and names come from the file (a quoted TOML key
    /// may hold "\u001B"), and must neither drive the terminal nor break
    /// the one-problem-per-line output.
    public var description: String {
        var s = line > 0 ? "\(printable(file)):\(line): " : "\(printable(file)): "
        if !field.isEmpty { s += "\(printable(field)): " }
        s += printable(message)
        if let hint { s += "; \(printable(hint))" }
        return s
    }
}

extension SSIError {
    /// The error `ClusterConfig.load`/`parse` throw: step "config", one
    /// problem per line of the message, in file order.
    public static func config(_ problems: [ConfigProblem]) -> SSIError {
        SSIError("config", problems.map(\.description).joined(separator: "\n"))
    }

    /// The lines of a multi-problem message, for printing one per line
    /// (e.g. with a prefix on each).
    public var messageLines: [String] {
        message.lines().map(String.init)
    }
}

extension AddressParseError {
    /// The hint a config problem adds to a bad IPv4 address or network:
    /// the parser's reason counts dots, where the text is most likely IPv6.
    var ipv6Hint: String? {
        kind.hasPrefix("IPv4") && input.contains(":") ? "IPv6 is not supported" : nil
    }
}
