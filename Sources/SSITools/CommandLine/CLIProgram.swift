#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux

/// A command tree made a program: parses, then prints the help, the
/// version, a completion script or a usage error, or runs the command.
/// Help and version go to stdout (exit 0); a usage error to stderr, exit
/// 64 (EX_USAGE), as swift-argument-parser did.
public struct CLIProgram: Sendable {
    public var root: CLICommand
    public var version: String
    public static let usageExit: Int32 = 64

    /// `root` gets the hidden `generate-manual` command the package's
    /// build runs.
    public init(root: CLICommand, version: String) {
        var root = root
        root.subcommands.append(Self.manualCommand(for: root))
        self.root = root
        self.version = version
    }

    public var parser: CLIParser { CLIParser(root: root) }

    /// What was printed and the exit status, for the tests; `main` writes
    /// them out.
    public struct Output: Sendable, Equatable {
        public var status: Int32
        public var stdout = ""
        public var stderr = ""
    }

    /// Everything but running a command: `run` is left to the caller with
    /// the parsed values (nil: nothing to run).
    public func respond(to invocation: CLIInvocation) -> Output? {
        switch invocation {
        case .help(let path):
            return Output(status: 0, stdout: CLIHelp.text(path))
        case .version:
            return Output(status: 0, stdout: version + "\n")
        case .completionScript(let shell):
            return Output(status: 0, stdout: CLICompletions.script(root.withoutInternal, shell: shell))
        case .usageError(let path, let message):
            let name = path.map(\.name).joined(separator: " ")
            return Output(status: Self.usageExit, stderr: "Error: \(message)\nUsage: \(CLIHelp.usage(path))\n"
                          + "  See '\(name) --help' for more information.\n")
        case .run, .passThrough:
            return nil
        }
    }

    /// `args` without argv[0]. Runs the command and exits.
    public func main(_ args: [String]) -> Never {
        let invocation = parser.parse(args)
        if let output = respond(to: invocation) {
            print(output.stdout, terminator: "")
            writeAll(2, output.stderr)
            exit(output.status)
        }
        var status: Int32 = 0
        do {
            switch invocation {
            case .run(let path, let values):
                if let run = path.last?.run {
                    try run(values)
                } else {
                    print(CLIHelp.text(path), terminator: "")
                }
            case .passThrough(let path, let words):
                try path.last?.run?(CLIValues(arguments: [Self.passThroughName: words]))
            default:
                break
            }
        } catch let e as ExitCode {
            status = e.code
        } catch {
            writeAll(2, "Error: \(printable(String(describing: error)))\n")
            status = 1
        }
        exit(status)
    }

    /// The argument a pass-through command's words are given as.
    public static let passThroughName = "arguments"

    /// `ssi generate-manual -o DIR [--section 8] [--date YYYY-MM-DD]`: the
    /// man pages, one file per command (debian/rules).
    static func manualCommand(for root: CLICommand) -> CLICommand {
        CLICommand("generate-manual", abstract: "Write the man pages (mdoc), one per command.",
                   options: [
                       .value("output", short: "o", "dir", help: "The folder to write them into.", required: true),
                       .integer("section", "n", as: Int.self, help: "The manual section.", default: 8),
                       .value("date", "yyyy-mm-dd", help: "The pages' date (default: SOURCE_DATE_EPOCH's, else 1970-01-01)."),
                   ],
                   hidden: true, internalOnly: true) { values in
            let dir = values.string("output") ?? "."
            let date = values.string("date") ?? sourceDate()
            let section = values.integer("section", as: Int.self) ?? 8
            do throws(SystemCallError) {
                try FileSystem.makeDirectories(dir)
                for page in CLIManual.pages(root, section: section, date: date) {
                    try FileSystem.writeFile(dir + "/" + page.fileName, page.text)
                }
            } catch {
                writeAll(2, "\(root.name) generate-manual: \(error.description)\n")
                throw ExitCode(1)
            }
        }
    }

    /// SOURCE_DATE_EPOCH as a date (reproducible builds), else the epoch.
    static func sourceDate() -> String {
        // From the environment: anything outside 1970...9999 is the epoch
        // (no arithmetic on an outside value that could overflow).
        let given = getenv("SOURCE_DATE_EPOCH").flatMap { Int(String(cString: $0)) } ?? 0
        let seconds = (0..<253_402_300_800).contains(given) ? given : 0
        return civilDate(days: seconds / 86400)
    }

    /// Days since 1970-01-01 as YYYY-MM-DD (the proleptic Gregorian
    /// calendar, Howard Hinnant's days_from_civil inverse).
    static func civilDate(days: Int) -> String {
        let z = days + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(year)-\(two(month))-\(two(day))"
    }
}

extension CLICommand {
    /// The tree without the build's own commands.
    var withoutInternal: CLICommand {
        var c = self
        c.subcommands = subcommands.filter { !$0.internalOnly }.map(\.withoutInternal)
        return c
    }
}
