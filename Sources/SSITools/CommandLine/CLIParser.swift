import SSICore

/// What a command line asks for. Parsing runs nothing: the runner acts on
/// this (and the fuzz test parses the whole tree without side effects).
public enum CLIInvocation: Sendable {
    /// `path` runs from the root to the command.
    case run(path: [CLICommand], values: CLIValues)
    /// A command that parses its own words (`CLICommand.passThrough`).
    case passThrough(path: [CLICommand], words: [String])
    /// -h, --help, `ssi help ...`, or a group command given no subcommand.
    case help(path: [CLICommand])
    case version
    case completionScript(shell: String)
    /// Exit 64 with the message, the usage and where to find help.
    case usageError(path: [CLICommand], message: String)
}

/// The parser: subcommand words pick the command, then glibc's getopt_long
/// (`GetOpt`, util-linux's rules: permutation, bundles, `--opt=VALUE`,
/// unique long prefixes, `--`) reads its options; operands fill the
/// positional arguments.
public struct CLIParser: Sendable {
    public var root: CLICommand

    public init(root: CLICommand) { self.root = root }

    /// The shells `--generate-completion-script` writes for.
    public static let shells = ["bash", "zsh", "fish"]
    static let completionOption = CLIOption.value("generate-completion-script", "shell", help: "Print a shell completion script (bash, zsh or fish).")

    /// `args` without argv[0].
    public func parse(_ args: [String]) -> CLIInvocation {
        var path = [root]
        var rest = args
        // Group commands: their own options (help, version), then a subcommand.
        while let command = path.last, !command.subcommands.isEmpty {
            let isRoot = path.count == 1
            let table = [CLIOption.help, CLIOption.version] + (isRoot ? [Self.completionOption] : [])
            let parsed: GetOpt.Parsed
            do {
                parsed = try getopt(table, ordering: .requireOrder).parse(rest, program: programName(path))
            } catch {
                return failure(path, error, words: rest)
            }
            if parsed.has("help") { return .help(path: path) }
            if parsed.has("version") { return .version }
            if let shell = parsed.last(Self.completionOption.key) {
                guard Self.shells.contains(shell) else {
                    return .usageError(path: path, message: "The value '\(printable(shell))' is invalid for '--generate-completion-script <shell>': bash, zsh or fish")
                }
                return .completionScript(shell: shell)
            }
            guard let word = parsed.operands.first else { return .help(path: path) }
            if isRoot && word == "help" {
                // `ssi help cluster keygen`: the deepest command the words name.
                for name in parsed.operands.dropFirst() {
                    guard let sub = path.last?.subcommand(name) else { break }
                    path.append(sub)
                }
                return .help(path: path)
            }
            guard let sub = command.subcommand(word) else {
                return .usageError(path: path, message: "Unexpected argument '\(printable(word))'")
            }
            path.append(sub)
            rest = Array(parsed.operands.dropFirst())
        }
        guard let command = path.last else { return .help(path: [root]) }
        if command.passThrough { return .passThrough(path: path, words: rest) }
        return parseLeaf(command, path: path, rest)
    }

    func parseLeaf(_ command: CLICommand, path: [CLICommand], _ args: [String]) -> CLIInvocation {
        let table = command.options + [CLIOption.version, CLIOption.help]
        var pairs: [GetOpt.Pair] = []
        var operands: [String] = []
        do {
            if let gathering = command.options.first(where: { $0.kind == .upToNextOption }) {
                try parseGathering(table, gathering: gathering, args, path: path, pairs: &pairs, operands: &operands)
            } else {
                let p = try getopt(table, ordering: .permute).parse(args, program: programName(path))
                pairs = p.options
                operands = p.operands
            }
        } catch {
            return failure(path, error, words: args)
        }
        if pairs.contains(where: { $0.key == "help" }) { return .help(path: path) }
        if pairs.contains(where: { $0.key == "version" }) { return .version }

        var values = CLIValues()
        for pair in pairs {
            guard let option = command.options.first(where: { $0.key == pair.key }) else { continue }
            let value = pair.value ?? ""
            if let range = option.integerRange {
                guard let n = Int64(value), range.contains(n) else {
                    // Int's whole range is no help to read: "a whole number (64-bit)".
                    let bounds = range == Int64.min...Int64.max ? " (64-bit)" : " from \(range.lowerBound) to \(range.upperBound)"
                    return .usageError(path: path, message: "The value '\(printable(value))' is invalid for '\(option.usageName)': "
                        + "a whole number" + bounds)
                }
            }
            values.options[option.key, default: []].append(value)
        }
        for option in command.options where option.isRequired && values.options[option.key] == nil {
            return .usageError(path: path, message: "Missing expected argument '\(option.usageName)'")
        }
        var remaining = operands[...]
        for argument in command.arguments {
            if argument.isRepeated {
                values.arguments[argument.name] = Array(remaining)
                remaining = []
            } else if let word = remaining.popFirst() {
                values.arguments[argument.name] = [word]
            } else if !argument.isOptional {
                return .usageError(path: path, message: "Missing expected argument '<\(argument.name)>'")
            }
        }
        if let extra = remaining.first {
            return .usageError(path: path, message: "Unexpected argument '\(printable(extra))'")
        }
        return .run(path: path, values: values)
    }

    /// A command with an `upToNextOption` option: getopt in order ("+"),
    /// one stretch at a time, so that the operands right after that option
    /// can be told from the others. A stretch ends at the first operand;
    /// the operands up to the next word that looks like an option are the
    /// option's values when it came last, else positional operands.
    func parseGathering(_ table: [CLIOption], gathering: CLIOption, _ args: [String], path: [CLICommand],
                        pairs: inout [GetOpt.Pair], operands: inout [String]) throws(GetOpt.Failure) {
        let parser = getopt(table, ordering: .requireOrder)
        var rest = args
        while !rest.isEmpty {
            let p = try parser.parse(rest, program: programName(path))
            pairs += p.options
            let consumed = rest.count - p.operands.count
            // "--" ended the options: everything after it is an operand
            // (unless that "--" was the last option's value).
            if consumed > 0, rest[consumed - 1] == "--", !(p.options.last?.value == "--" && consumed >= 2) {
                operands += p.operands
                return
            }
            let stretch = p.operands.prefix { !Self.looksLikeOption($0) }
            if p.options.last?.key == gathering.key {
                pairs += stretch.map { GetOpt.Pair(gathering.key, $0) }
            } else {
                operands += stretch
            }
            // No progress (nothing consumed, nothing taken): stop rather than loop.
            if consumed == 0 && stretch.isEmpty {
                operands += p.operands
                return
            }
            rest = Array(p.operands.dropFirst(stretch.count))
        }
    }

    /// A word getopt would read as an option.
    static func looksLikeOption(_ word: String) -> Bool {
        word.hasPrefix("-") && word != "-"
    }

    func getopt(_ options: [CLIOption], ordering: GetOpt.Ordering) -> GetOpt {
        GetOpt(options.map { o in
            GetOpt.Option(o.short, o.long, o.takesValue ? .required : .none)
        }, ordering: ordering)
    }

    /// getopt's message without its "PROGRAM: " (the runner says "Error:").
    /// `-h` anywhere before a usage error still shows the help, as
    /// swift-argument-parser did.
    func failure(_ path: [CLICommand], _ error: GetOpt.Failure, words: [String]) -> CLIInvocation {
        let helpWords = words.prefix { $0 != "--" }
        if helpWords.contains("-h") || helpWords.contains("--help") { return .help(path: path) }
        let prefix = printable(programName(path)) + ": "
        let text = error.message.hasPrefix(prefix) ? String(error.message.dropFirst(prefix.count)) : error.message
        return .usageError(path: path, message: text.prefix(1).uppercased() + text.dropFirst())
    }

    func programName(_ path: [CLICommand]) -> String {
        path.map(\.name).joined(separator: " ")
    }
}
