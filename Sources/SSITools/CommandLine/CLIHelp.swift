/// The help text of a command and the usage line of its errors, laid out
/// as swift-argument-parser laid them out (people and scripts have read
/// them that way): OVERVIEW, the discussion, USAGE, ARGUMENTS, OPTIONS,
/// SUBCOMMANDS, wrapped at 80 columns.
enum CLIHelp {
    /// Lines end before column 80 (a terminal 80 wide does not wrap them).
    static let width = 79
    /// Where the descriptions start (2 spaces, a 22-column label, 2 spaces).
    static let column = 26

    /// The synopsis, or "NAME <options>" when it would fill more than two
    /// lines (mkinitrd's: a block nobody reads; the help lists them).
    static func usage(_ path: [CLICommand]) -> String {
        let line = synopsis(path)
        return line.count > 2 * width ? path.map(\.name).joined(separator: " ") + " <options>" : line
    }

    static func synopsis(_ path: [CLICommand]) -> String {
        let name = path.map(\.name).joined(separator: " ")
        guard let command = path.last else { return name }
        if !command.subcommands.isEmpty { return name + " <subcommand>" }
        var parts = [name]
        parts += command.arguments.map(\.usageName)
        for o in command.options {
            let text = o.usageName + (o.isRepeatable ? " ..." : "")
            parts.append(o.isRequired ? text : "[\(text)]")
        }
        return parts.joined(separator: " ")
    }

    static func text(_ path: [CLICommand]) -> String {
        guard let command = path.last else { return "" }
        let name = path.map(\.name).joined(separator: " ")
        var out = "OVERVIEW: " + command.abstract + "\n"
        if !command.discussion.isEmpty {
            out += "\n" + paragraphs(command.discussion).map { wrap($0, indent: 0) }.joined(separator: "\n\n") + "\n"
        }
        out += "\nUSAGE: " + usage(path) + "\n"
        if !command.arguments.isEmpty {
            out += "\nARGUMENTS:\n"
            for a in command.arguments {
                out += entry("<\(a.name)>" + (a.isRepeated ? " ..." : ""), describe(a.help, default: a.defaultValue))
            }
        }
        out += "\nOPTIONS:\n"
        for o in command.options + [CLIOption.version, CLIOption.help] {
            out += entry(o.helpLabel, describe(o.help, default: o.defaultValue))
        }
        let shown = command.subcommands.filter { !$0.hidden }
        if !shown.isEmpty {
            out += "\nSUBCOMMANDS:\n"
            for s in shown { out += entry(s.name, s.abstract) }
            out += "\n  See '\(path.first?.name ?? name) help \(path.dropFirst().map { $0.name + " " }.joined())<subcommand>' for detailed help.\n"
        } else {
            out += "\n"
        }
        return out
    }

    static func describe(_ help: String, default value: String?) -> String {
        guard let value else { return help }
        return help.isEmpty ? "(default: \(value))" : help + " (default: \(value))"
    }

    /// "  LABEL  description", the description wrapped at `column`; a
    /// label too wide for its column puts the description on the next line.
    static func entry(_ label: String, _ description: String) -> String {
        let head = "  " + label
        if description.isEmpty { return head + "\n" }
        let body = wrap(description, indent: column)
        let bodyText = String(body.dropFirst(column))
        if head.count <= column - 2 {
            return head + String(repeating: " ", count: column - head.count) + bodyText + "\n"
        }
        return head + "\n" + body + "\n"
    }

    static func paragraphs(_ text: String) -> [String] {
        var out: [String] = []
        var current: [Substring] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.allSatisfy({ $0 == " " }) {
                if !current.isEmpty { out.append(current.joined(separator: " ")) }
                current = []
            } else {
                current.append(line)
            }
        }
        if !current.isEmpty { out.append(current.joined(separator: " ")) }
        return out
    }

    /// Words filled to `width`, every line indented by `indent` spaces.
    static func wrap(_ text: String, indent: Int) -> String {
        let pad = String(repeating: " ", count: indent)
        var lines: [String] = []
        var line = ""
        for word in text.split(separator: " ") {
            if !line.isEmpty && indent + line.count + 1 + word.count > width {
                lines.append(pad + line)
                line = ""
            }
            line += (line.isEmpty ? "" : " ") + word
        }
        lines.append(pad + line)
        return lines.joined(separator: "\n")
    }
}
