/// GNU getopt_long as util-linux's commands use it: options and operands
/// may be mixed ("mount /dev/x /mnt -o ro"), short options bundle ("-av",
/// "-oro", "-t" "ext4"), long options take "=VALUE" or the next argument,
/// may be abbreviated to a unique prefix, and "--" ends the options. The
/// error messages are getopt's own, word for word, so that a drop-in
/// replacement fails the way the original does.
public struct GetOpt: Sendable {
    public struct Option: Sendable {
        public var short: Character?
        public var long: String?
        public var takesValue: Bool
        /// The key the caller switches on: the long name, else the short.
        public var key: String { long ?? String(short!) }

        public init(_ short: Character?, _ long: String?, value: Bool = false) {
            self.short = short
            self.long = long
            self.takesValue = value
        }
    }

    public struct Parsed: Sendable, Equatable {
        /// In order: (key, value) with "" for a flag.
        public var options: [Pair]
        public var operands: [String]
    }

    public struct Pair: Sendable, Equatable {
        public var key: String
        public var value: String
        public init(_ key: String, _ value: String) {
            self.key = key
            self.value = value
        }
    }

    /// A usage error: getopt's message; the command adds util-linux's
    /// "Try 'NAME --help' for more information." and exits 1.
    public struct Failure: Error, Sendable, Equatable {
        public var message: String
    }

    public var options: [Option]

    public init(_ options: [Option]) { self.options = options }

    /// `program` is argv[0] as given (getopt prints it whole).
    public func parse(_ args: [String], program: String) throws(Failure) -> Parsed {
        var out = Parsed(options: [], operands: [])
        var i = 0
        while i < args.count {
            let a = args[i]
            i += 1
            if a == "--" {
                out.operands += args[i...]
                break
            }
            if a.hasPrefix("--") {
                let body = a.dropFirst(2)
                let name = String(body.prefix { $0 != "=" })
                let inline: String? = body.contains("=") ? String(body.drop { $0 != "=" }.dropFirst()) : nil
                let exact = options.filter { $0.long == name }
                let candidates = exact.isEmpty ? options.filter { $0.long?.hasPrefix(name) == true } : exact
                guard !candidates.isEmpty else {
                    throw Failure(message: "\(program): unrecognized option '--\(name)'")
                }
                guard candidates.count == 1 else {
                    let list = candidates.compactMap(\.long).map { "'--\($0)'" }.joined(separator: " ")
                    throw Failure(message: "\(program): option '--\(name)' is ambiguous; possibilities: \(list)")
                }
                let o = candidates[0]
                if o.takesValue {
                    if let inline {
                        out.options.append(Pair(o.key, inline))
                    } else if i < args.count {
                        out.options.append(Pair(o.key, args[i]))
                        i += 1
                    } else {
                        throw Failure(message: "\(program): option '--\(o.long!)' requires an argument")
                    }
                } else {
                    guard inline == nil else {
                        throw Failure(message: "\(program): option '--\(o.long!)' doesn't allow an argument")
                    }
                    out.options.append(Pair(o.key, ""))
                }
                continue
            }
            if a.hasPrefix("-") && a.count > 1 {
                var rest = Substring(a.dropFirst())
                while let c = rest.first {
                    rest = rest.dropFirst()
                    guard let o = options.first(where: { $0.short == c }) else {
                        throw Failure(message: "\(program): invalid option -- '\(c)'")
                    }
                    if o.takesValue {
                        if !rest.isEmpty {
                            out.options.append(Pair(o.key, String(rest)))
                        } else if i < args.count {
                            out.options.append(Pair(o.key, args[i]))
                            i += 1
                        } else {
                            throw Failure(message: "\(program): option requires an argument -- '\(c)'")
                        }
                        break
                    }
                    out.options.append(Pair(o.key, ""))
                }
                continue
            }
            out.operands.append(a)
        }
        return out
    }
}
