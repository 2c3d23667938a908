/// ssi's command tree: what each command is called, what it takes and
/// what it runs. One description serves the parser (over glibc's
/// getopt_long, `GetOpt`), the help, the man pages and the shell
/// completions, so they cannot disagree. It replaces swift-argument-parser,
/// which alone pulled FoundationEssentials (7 MB) into the static binary.
public struct CLICommand: Sendable {
    public var name: String
    /// One line: the help's OVERVIEW, the man page's NAME, the completions.
    public var abstract: String
    /// Paragraphs separated by a blank line; wrapped when shown.
    public var discussion: String
    public var arguments: [CLIArgument]
    public var options: [CLIOption]
    public var subcommands: [CLICommand]
    /// Left out of the help's and the completions' lists (still parsed,
    /// and still given a man page: the agent's helpers are documented).
    public var hidden: Bool
    /// Also left out of the man pages: the package's build tools.
    public var internalOnly: Bool
    /// The command parses its own command line (util-linux's): every word
    /// after its name reaches `run` untouched, as the one argument.
    public var passThrough: Bool
    /// nil for a command that only groups subcommands (it shows its help).
    public var run: (@Sendable (CLIValues) throws -> Void)?

    public init(_ name: String, abstract: String, discussion: String = "", arguments: [CLIArgument] = [],
                options: [CLIOption] = [], subcommands: [CLICommand] = [], hidden: Bool = false,
                internalOnly: Bool = false, passThrough: Bool = false,
                run: (@Sendable (CLIValues) throws -> Void)? = nil) {
        self.name = name
        self.abstract = abstract
        self.discussion = discussion
        self.arguments = arguments
        self.options = options
        self.subcommands = subcommands
        self.hidden = hidden
        self.internalOnly = internalOnly
        self.passThrough = passThrough
        self.run = run
    }

    public func subcommand(_ name: String) -> CLICommand? {
        subcommands.first { $0.name == name }
    }

    /// Every command under this one, depth first, with its path of names.
    public func walk(_ path: [String] = []) -> [(path: [String], command: CLICommand)] {
        let here = path + [name]
        return [(here, self)] + subcommands.flatMap { $0.walk(here) }
    }
}

/// An option: a flag, or one that takes a value.
public struct CLIOption: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case flag
        /// One value; given again, the last one counts.
        case value
        /// Every occurrence's value, in order.
        case repeated
        /// Repeated, and the words after it up to the next option are its
        /// values too (`--install a b c`).
        case upToNextOption
    }

    /// What `CLIValues` is asked with: the long name, else the short one.
    public var key: String
    public var short: Character?
    public var long: String?
    public var kind: Kind
    /// `<file>` in the help, `Ar file` in the man page.
    public var valueName: String
    public var help: String
    /// Shown in the help as "(default: X)"; the run body applies it.
    public var defaultValue: String?
    public var isRequired: Bool
    /// The value must be a whole number in this range (checked when the
    /// command line is parsed: a usage error names the option, no trap).
    public var integerRange: ClosedRange<Int64>?

    public init(_ long: String?, short: Character? = nil, kind: Kind, valueName: String = "", help: String,
                defaultValue: String? = nil, isRequired: Bool = false, integerRange: ClosedRange<Int64>? = nil) {
        self.key = long ?? short.map { String($0) } ?? ""
        self.long = long
        self.short = short
        self.kind = kind
        self.valueName = valueName.isEmpty && kind != .flag ? (long ?? key) : valueName
        self.help = help
        self.defaultValue = defaultValue
        self.isRequired = isRequired
        self.integerRange = integerRange
    }

    public static func flag(_ long: String, short: Character? = nil, help: String) -> CLIOption {
        CLIOption(long, short: short, kind: .flag, help: help)
    }

    public static func value(_ long: String, short: Character? = nil, _ valueName: String = "", help: String,
                             default defaultValue: String? = nil, required: Bool = false) -> CLIOption {
        CLIOption(long, short: short, kind: .value, valueName: valueName, help: help, defaultValue: defaultValue,
                  isRequired: required)
    }

    /// A whole number of type T: the range is T's unless narrowed.
    public static func integer<T: FixedWidthInteger>(_ long: String, short: Character? = nil, _ valueName: String = "",
                                                     as type: T.Type, help: String, default defaultValue: T? = nil) -> CLIOption {
        CLIOption(long, short: short, kind: .value, valueName: valueName, help: help,
                  defaultValue: defaultValue.map { String($0) }, integerRange: integerRange(of: type))
    }

    public static func repeated(_ long: String, short: Character? = nil, _ valueName: String = "", help: String,
                                upToNextOption: Bool = false) -> CLIOption {
        CLIOption(long, short: short, kind: upToNextOption ? .upToNextOption : .repeated, valueName: valueName, help: help)
    }

    /// T's range as Int64s, clamped: UInt64's top half is out of reach, which no option needs.
    static func integerRange<T: FixedWidthInteger>(of type: T.Type) -> ClosedRange<Int64> {
        let low = Int64(clamping: T.min)
        let high = Int64(clamping: T.max)
        return low...high
    }

    public var takesValue: Bool { kind != .flag }
    public var isRepeatable: Bool { kind == .repeated || kind == .upToNextOption }

    /// "--output <file>" (the long name when there is one).
    var usageName: String {
        let name = long.map { "--" + $0 } ?? short.map { "-" + String($0) } ?? ""
        return takesValue ? name + " <\(valueName)>" : name
    }

    /// "-o, --output <file>".
    var helpLabel: String {
        var names: [String] = []
        if let short { names.append("-" + String(short)) }
        if let long { names.append("--" + long) }
        return names.joined(separator: ", ") + (takesValue ? " <\(valueName)>" : "")
    }

    /// What every command takes: help and version.
    static let help = CLIOption.flag("help", short: "h", help: "Show help information.")
    static let version = CLIOption.flag("version", help: "Show the version.")
}

/// A positional argument.
public struct CLIArgument: Sendable, Equatable {
    public var name: String
    public var help: String
    public var isOptional: Bool
    /// Takes every remaining operand.
    public var isRepeated: Bool
    /// Shown in the help as "(default: X)".
    public var defaultValue: String?

    public init(_ name: String, help: String, optional: Bool = false, repeated: Bool = false, default defaultValue: String? = nil) {
        self.name = name
        self.help = help
        self.isOptional = optional || defaultValue != nil
        self.isRepeated = repeated
        self.defaultValue = defaultValue
    }

    var usageName: String {
        let text = "<\(name)>" + (isRepeated ? " ..." : "")
        return isOptional ? "[\(text)]" : text
    }
}

/// A command's parsed values, asked for by option key or argument name.
public struct CLIValues: Sendable, Equatable {
    /// Each option given, by key, its values in command-line order (a flag: one "" per use).
    public var options: [String: [String]] = [:]
    public var arguments: [String: [String]] = [:]

    public init(options: [String: [String]] = [:], arguments: [String: [String]] = [:]) {
        self.options = options
        self.arguments = arguments
    }

    public func flag(_ key: String) -> Bool { options[key] != nil }
    /// The last value given.
    public func string(_ key: String) -> String? { options[key]?.last }
    public func strings(_ key: String) -> [String] { options[key] ?? [] }
    /// The last value as T: the parser checked it against the option's
    /// range, so nil only when absent (or the spec's range is wider than T).
    public func integer<T: FixedWidthInteger>(_ key: String, as type: T.Type = T.self) -> T? {
        string(key).flatMap { Int64($0) }.flatMap { T(exactly: $0) }
    }
    public func argument(_ name: String) -> String? { arguments[name]?.first }
    public func argumentList(_ name: String) -> [String] { arguments[name] ?? [] }
}

/// Thrown by a run body: the process exits with this code (having said
/// why, or not: 0 is a clean exit).
public struct ExitCode: Error, Sendable, Equatable {
    public var code: Int32
    public init(_ code: Int32) { self.code = code }
}
