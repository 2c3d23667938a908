#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import CSSIShim
import SSICore
import SSILinux

/// glibc's getopt_long, the parser util-linux's commands call, behind a
/// typed table. Using glibc's own (rather than a copy of its rules) gives
/// util-linux's behaviour exactly: options and operands mixed and permuted
/// ("mount /dev/x /mnt -o ro"), bundles ("-av", "-oro"), "=VALUE" or the
/// next word for a required argument, an optional argument only glued
/// ("-donce", "--discard=once"), unique prefixes of long names, POSIXLY_CORRECT,
/// and "--" ending the options.
///
/// glibc would print its own error and lose it for the tests' captured
/// output; errors are silenced (":" and opterr = 0) and the message is
/// rebuilt from optopt and the offending word, in getopt's words.
public struct GetOpt: Sendable {
    public enum Argument: Sendable, Equatable {
        case none, required, optional

        var hasArg: Int32 {
            switch self {
            case .none: no_argument
            case .required: required_argument
            case .optional: optional_argument
            }
        }
    }

    public struct Option: Sendable {
        /// What the caller switches on: the first long name, else the short.
        public var key: String
        /// ASCII only (getopt works on bytes).
        public var short: Character?
        /// Long names, in the order of util-linux's `longopts` table: that
        /// order decides getopt's "possibilities" list for an ambiguous prefix.
        public var long: [String]
        /// The short option's argument.
        public var argument: Argument
        /// The long names' argument: util-linux swapon's `-o` requires one
        /// where `--options` only takes one glued.
        public var longArgument: Argument

        public init(_ short: Character?, _ long: String?, _ argument: Argument = .none, aliases: [String] = [],
                    longArgument: Argument? = nil) {
            self.short = short
            self.long = (long.map { [$0] } ?? []) + aliases
            self.key = long ?? short.map { String($0) } ?? ""
            self.argument = argument
            self.longArgument = longArgument ?? argument
        }
    }

    public struct Parsed: Sendable, Equatable {
        /// In order of the command line.
        public var options: [Pair]
        public var operands: [String]

        /// The value of the last occurrence of `key` (nil: absent, or given without one).
        public func last(_ key: String) -> String? { options.last { $0.key == key }?.value }
        public func has(_ key: String) -> Bool { options.contains { $0.key == key } }
    }

    public struct Pair: Sendable, Equatable {
        public var key: String
        /// nil for an option without an argument (or an optional one not given).
        public var value: String?
        public init(_ key: String, _ value: String? = nil) {
            self.key = key
            self.value = value
        }
    }

    /// A usage error: getopt's message, argv[0] first; the command adds
    /// util-linux's "Try 'NAME --help' for more information.".
    public struct Failure: Error, Sendable, Equatable {
        public var message: String
        public init(message: String) { self.message = message }
    }

    public enum Ordering: Sendable {
        /// GNU: operands may come before options (util-linux's default).
        case permute
        /// "+": the first operand ends the options (commands that run commands).
        case requireOrder
    }

    public let options: [Option]
    public let ordering: Ordering
    /// "+" or "", ":" (we report errors ourselves), then each short option.
    let shortString: String
    /// (name, has_arg, index into `options`), util-linux's longopts order.
    let longs: [(name: String, argument: Argument, option: Int)]

    /// Long options return 256 + their option's index (aliases share it, as
    /// util-linux's share a letter, which decides what is ambiguous): above
    /// every byte, so optopt tells a long option's error from a short one's.
    static let longBase: Int32 = 256

    /// A character getopt can take as a short option.
    static func isValidShort(_ c: Character) -> Bool {
        c.isASCII && c != ":" && c != "-" && c != "?" && c != ";" && c != "+"
    }

    public init(_ options: [Option], ordering: Ordering = .permute) {
        self.options = options
        self.ordering = ordering
        var s = (ordering == .requireOrder ? "+" : "") + ":"
        var l: [(String, Argument, Int)] = []
        for (i, o) in options.enumerated() {
            // The table is ours, not input; still, a character getopt cannot
            // take is left out rather than trapped on (the util-linux
            // compatibility tests then miss that option, and a test checks
            // every table).
            if let c = o.short, Self.isValidShort(c) {
                s.append(c)
                s += o.argument == .required ? ":" : o.argument == .optional ? "::" : ""
            }
            for name in o.long { l.append((name, o.longArgument, i)) }
        }
        shortString = s
        longs = l
    }

    /// getopt_long's state (optind, optarg, optopt, its permutation) is
    /// global to the process: one parse at a time (the tests parse from
    /// many threads).
    static let lock = Mutex(())

    /// `program` is argv[0] as given (getopt prints it whole).
    public func parse(_ args: [String], program: String) throws(Failure) -> Parsed {
        let argv = [program] + args
        // The kernel never passes a NUL inside an argument, but callers may:
        // C would see a shorter word than Swift.
        if let bad = argv.firstIndex(where: { $0.utf8.contains(0) }) {
            throw Failure(message: "\(program.escapedForTerminal): argument \(bad) contains a NUL byte")
        }
        guard let argc = Int32(exactly: argv.count) else {
            throw Failure(message: "\(program.escapedForTerminal): too many arguments")
        }
        // Under the lock: getopt's state is global. Copying the strings
        // for C can only fail for want of memory: an error, not a trap.
        func parse() throws(SystemCallError) -> Result<Parsed, Failure> {
            // The C strings live until after the parse: optarg and the
            // permuted argv point into them. getopt permutes the pointer
            // array, so `owned` keeps the originals for free().
            let owned = try CStringArray(argv)
            let names = try CStringArray(longs.map(\.name))
            let shorts = try CString(shortString)
            let cargv = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: owned.count + 1)
            let table = UnsafeMutablePointer<option>.allocate(capacity: longs.count + 1)
            defer {
                cargv.deallocate()
                table.deallocate()
            }
            cargv.initialize(from: owned.pointer, count: owned.count + 1)
            for (i, l) in longs.enumerated() {
                table[i] = option(name: UnsafePointer(names[i]), has_arg: l.argument.hasArg, flag: nil, val: Self.longBase + Int32(l.option))
            }
            table[longs.count] = option(name: nil, has_arg: 0, flag: nil, val: 0)

            // optind = 0: glibc starts over (its permutation state too).
            ssi_optind().pointee = 0
            ssi_opterr().pointee = 0
            var out = Parsed(options: [], operands: [])
            while true {
                ssi_optarg().pointee = nil
                let c = getopt_long(argc, cargv, shorts.pointer, table, nil)
                if c == -1 { break }
                let value = ssi_optarg().pointee.map { String(cString: $0) }
                if c >= Self.longBase, Int(c - Self.longBase) < options.count {
                    out.options.append(Pair(options[Int(c - Self.longBase)].key, value))
                    continue
                }
                if c != Int32(UInt8(ascii: "?")) && c != Int32(UInt8(ascii: ":")),
                   let o = options.first(where: { $0.short?.asciiValue.map(Int32.init) == c }) {
                    out.options.append(Pair(o.key, value))
                    continue
                }
                // An error: optopt is 0 for an unknown or ambiguous long
                // name, a long option's value for an argument error on it,
                // else the short option's byte. A long option's word is
                // consumed: it is argv[optind - 1].
                let optind = ssi_optind().pointee
                let word = optind >= 1 && optind <= argc ? cargv[Int(optind) - 1].map { String(cString: $0) } ?? "" : ""
                return .failure(Failure(message: "\(program.escapedForTerminal): "
                    + describe(error: c, optopt: ssi_optopt().pointee, word: word)))
            }
            var i = Int(ssi_optind().pointee)
            while i < owned.count {
                out.operands.append(cargv[i].map { String(cString: $0) } ?? "")
                i += 1
            }
            return .success(out)
        }
        let result: Result<Parsed, Failure> = Self.lock.withLock { _ in
            do { return try parse() } catch { return .failure(Failure(message: "\(program.escapedForTerminal): \(error)")) }
        }
        return try result.get()
    }

    /// getopt's own message for an error (glibc 2.36's words).
    func describe(error c: Int32, optopt: Int32, word: String) -> String {
        let missing = c == Int32(UInt8(ascii: ":"))
        if optopt >= Self.longBase, Int(optopt - Self.longBase) < options.count {
            let name = matchedName(word, option: Int(optopt - Self.longBase))
            return missing ? "option '--\(name)' requires an argument" : "option '--\(name)' doesn't allow an argument"
        }
        if optopt != 0 {
            // glibc prints the byte raw; one of a UTF-8 sequence is shown as \xNN.
            let byte = UInt8(truncatingIfNeeded: optopt)
            let shown = byte < 0x80 ? String(UnicodeScalar(byte)) : "\\x" + hex(byte)
            return missing ? "option requires an argument -- '\(shown.escapedForTerminal)'"
                : "invalid option -- '\(shown.escapedForTerminal)'"
        }
        // Unknown or ambiguous: glibc lists the first match, then every
        // later one that differs from it (not its aliases), in table order.
        let text = word.hasPrefix("--") ? String(word.dropFirst(2)) : word
        let name = String(text.prefix { $0 != "=" })
        let matches = longs.filter { $0.name.hasPrefix(name) }
        if let first = matches.first {
            let listed = [first] + matches.dropFirst().filter { $0.option != first.option || $0.argument != first.argument }
            if listed.count > 1 {
                return "option '--\(text.escapedForTerminal)' is ambiguous; possibilities:"
                    + listed.map { " '--\($0.name)'" }.joined()
            }
        }
        return "unrecognized option '--\(text.escapedForTerminal)'"
    }

    /// The long name getopt found for `word` ("--opt=x", maybe abbreviated).
    func matchedName(_ word: String, option: Int) -> String {
        let given = String(word.dropFirst(2).prefix { $0 != "=" })
        let names = options[option].long
        return names.first { $0 == given } ?? names.first { $0.hasPrefix(given) } ?? names.first ?? given
    }
}

func hex(_ b: UInt8) -> String {
    let digits = Array("0123456789abcdef")
    return String([digits[Int(b >> 4)], digits[Int(b & 15)]])
}

extension String {
    /// For messages to a terminal (SSICore's `printable`): a name from
    /// outside cannot move the cursor, clear the screen or hide the rest of
    /// the line.
    var escapedForTerminal: String { printable(self) }
}
