import Testing
import SSITestSupport
@testable import SSITools
@testable import ssi

/// Mutated command lines through ssi's whole command tree: each parse
/// gives an invocation (nothing is run), never a trap, and a usage error's
/// message carries no control character to the terminal.
@Suite struct CLIFuzzTests {
    static let seeds = Fuzz.seeds([
        "mkinitrd\u{0}-o\u{0}/tmp/x\u{0}-k\u{0}6.1.0\u{0}--install\u{0}/a\u{0}/b\u{0}--add-modules=e1000e,xfs\u{0}-qu\u{0}--threads\u{0}4",
        "cluster\u{0}keygen\u{0}--size=256\u{0}-o\u{0}/tmp/k\u{0}--force\u{0}--\u{0}-x",
        "cluster\u{0}proc-agent\u{0}--port\u{0}65535\u{0}--state-dir\u{0}/run/ssi\u{0}--system-root=/proc/1/root",
        "cluster\u{0}root\u{0}create\u{0}--gfs2\u{0}/dev/vdb\u{0}--from\u{0}/\u{0}--journal-size\u{0}64\u{0}--spare-journals=2",
        "cluster\u{0}mount-apply\u{0}--mount\u{0}--entry\u{0}e\u{0}--local-address\u{0}10.0.0.1\u{0}--network\u{0}10.0.0.0/24\u{0}--local-node\u{0}4294967295",
        "help\u{0}cluster\u{0}config\u{0}check\u{0}--generate-completion-script\u{0}bash\u{0}--version\u{0}-h",
    ])

    @Test("Fuzz: ssi's command tree parses any argv without trapping")
    func parse() {
        let parser = SSICommand.program.parser
        Fuzz.run("ssi-command-line", seeds: Self.seeds, iterations: Fuzz.iterations(default: 600)) { bytes in
            let args = bytes.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
            let invocation = parser.parse(args)
            if case .usageError(_, let message) = invocation {
                #expect(!message.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }, "\(args)")
            }
            // The text the runner would print, built too (help, usage), never run.
            _ = SSICommand.program.respond(to: invocation)
        }
    }
}
