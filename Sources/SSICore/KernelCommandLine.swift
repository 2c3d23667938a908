/// The kernel command line as the kernel itself splits it: words separated by
/// spaces, double quotes group a value that holds spaces
/// (`root="LABEL=my root"`), and a later word wins over an earlier one with
/// the same key, which is how boot loaders append overrides.
public struct KernelCommandLine: Sendable, Equatable {
    public private(set) var words: [String]

    public init(_ text: String) {
        var words: [String] = []
        var current = String.UnicodeScalarView()
        var inQuotes = false
        var hasWord = false
        // Scalars, not Characters: "\r\n" is one Character, so a CRLF file
        // given to `ssi init --explain` glued its words together. The
        // separators are the kernel's isspace(): space, \t, \n, \v, \f, \r.
        for ch in text.unicodeScalars {
            if ch == "\"" {
                inQuotes.toggle()
                hasWord = true
                continue
            }
            if !inQuotes && (ch == " " || ("\t"..."\r").contains(ch)) {
                if hasWord { words.append(String(current)) }
                current = String.UnicodeScalarView()
                hasWord = false
                continue
            }
            current.append(ch)
            hasWord = true
        }
        if hasWord { words.append(String(current)) }
        // The kernel hands everything after "--" to init as its arguments;
        // those are not boot parameters.
        if let dashes = words.firstIndex(of: "--") {
            words = Array(words[..<dashes])
        }
        self.words = words
    }

    /// The value of the last `key=value`, or nil. `key` alone (a flag) is
    /// not a value: use `has(_:)`.
    public func value(_ key: String) -> String? {
        for word in words.reversed() {
            if let eq = word.firstIndex(of: "="), word[..<eq] == key {
                return String(word[word.index(after: eq)...])
            }
        }
        return nil
    }

    /// Every value of a key that may repeat (`ssi.break=a ssi.break=b`), and
    /// comma lists inside each (`ssi.break=a,b`), in order.
    public func values(_ key: String) -> [String] {
        words.compactMap { word -> [String]? in
            guard let eq = word.firstIndex(of: "="), word[..<eq] == key else { return nil }
            return word[word.index(after: eq)...].split(separator: ",").map(String.init)
        }.flatMap { $0 }
    }

    /// True if the bare flag is present (`ro`, `rootwait`, `quiet`).
    public func has(_ flag: String) -> Bool {
        words.contains(flag)
    }

    /// The last of several flags present, e.g. `lastFlag(of: ["ro", "rw"])`,
    /// because "ro ... rw" means rw.
    public func lastFlag(of flags: [String]) -> String? {
        words.last(where: { flags.contains($0) })
    }
}
