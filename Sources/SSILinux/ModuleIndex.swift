#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
public import SSICore

/// A kernel module directory's text indexes, as depmod writes them and as
/// ssi-mkinitrd writes them into an image for exactly the modules it
/// carries: modules.dep, modules.alias, modules.softdep, modules.builtin,
/// and ssi's own modules.builtin.alias (the aliases of built-in modules,
/// which depmod keeps only in its binary index). ssi-init resolves names
/// and device aliases with this instead of libkmod, which would bring
/// libcrypto (4.7 MB, for module signatures it never reads) into every
/// image (DESIGN-NOTES, "Module loading at boot").
public struct ModuleIndex: Sendable {
    public struct Entry: Sendable, Equatable {
        /// Path relative to the module directory ("kernel/fs/ext4/ext4.ko").
        public var path: String
        /// Hard dependencies as modules.dep lists them: transitively
        /// closed, the one to load first last.
        public var dependencies: [String]
    }
    /// Module name (underscores) -> its entry.
    public private(set) var modules: [String: Entry] = [:]
    /// (normalized pattern, module name), in file order.
    public private(set) var aliases: [(pattern: String, module: String)] = []
    public private(set) var softdeps: [String: (pre: [String], post: [String])] = [:]
    public private(set) var builtin: Set<String> = []
    public private(set) var builtinAliases: [(pattern: String, module: String)] = []

    public init() {}

    /// Reads the indexes in `directory`. modules.dep must be there; the
    /// others may be missing (no aliases, softdeps or built-ins). A line
    /// that is not in the file's format is an error naming file and line:
    /// a damaged index must not load the wrong module or none in silence.
    public static func read(directory: String) throws(SSIError) -> ModuleIndex {
        func text(_ name: String, required: Bool) throws(SSIError) -> String? {
            do throws(SystemCallError) {
                return try FileSystem.readText(directory + "/" + name)
            } catch {
                if !required && error.errno == ENOENT { return nil }
                throw SSIError("modules", "\(directory)/\(name): \(errnoDescription(error.errno))",
                               hint: required ? "rebuild the image (ssi-mkinitrd), or run depmod for this kernel" : nil)
            }
        }
        var index = ModuleIndex()
        try index.parse(dep: text("modules.dep", required: true) ?? "", file: directory + "/modules.dep")
        if let t = try text("modules.alias", required: false) {
            index.aliases = try parseAliases(t, file: directory + "/modules.alias")
        }
        if let t = try text("modules.softdep", required: false) {
            try index.parse(softdep: t, file: directory + "/modules.softdep")
        }
        if let t = try text("modules.builtin", required: false) {
            for line in t.lines() where !line.hasPrefix("#") {
                index.builtin.insert(moduleName(fromPath: String(line)))
            }
        }
        if let t = try text("modules.builtin.alias", required: false) {
            index.builtinAliases = try parseAliases(t, file: directory + "/modules.builtin.alias")
        }
        return index
    }

    /// modules.dep: "kernel/a/b.ko: kernel/c.ko kernel/d.ko".
    public mutating func parse(dep text: String, file: String) throws(SSIError) {
        for (n, line) in textLines(text).enumerated() where !line.isEmpty && !line.hasPrefix("#") {
            guard let colon = line.firstIndex(of: ":") else {
                throw SSIError("modules", "\(file):\(n + 1): no ':' after the module path",
                               hint: "modules.dep lines are 'PATH: DEPENDENCY...'; rebuild the image or run depmod")
            }
            let path = String(line[..<colon].filter { $0 != " " && $0 != "\t" })
            guard !path.isEmpty else {
                throw SSIError("modules", "\(file):\(n + 1): empty module path", hint: "rebuild the image or run depmod")
            }
            let deps = line[line.index(after: colon)...].split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            modules[moduleName(fromPath: path)] = Entry(path: path, dependencies: deps)
        }
    }

    /// modules.alias: "alias PATTERN MODULE".
    static func parseAliases(_ text: String, file: String) throws(SSIError) -> [(pattern: String, module: String)] {
        var out: [(pattern: String, module: String)] = []
        for (n, line) in textLines(text).enumerated() where !line.isEmpty && !line.hasPrefix("#") {
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard f.count >= 3, f[0] == "alias" else {
                throw SSIError("modules", "\(file):\(n + 1): not 'alias PATTERN MODULE'", hint: "rebuild the image or run depmod")
            }
            // depmod writes a module's alias as it is, spaces and all (a
            // device-tree compatible string may hold one): the module is
            // the last word.
            let pattern = f.dropFirst().dropLast().joined(separator: " ")
            out.append((normalizeAlias(pattern), moduleName(fromPath: String(f.last!))))
        }
        return out
    }

    /// modules.softdep: "softdep MODULE pre: A B post: C".
    public mutating func parse(softdep text: String, file: String) throws(SSIError) {
        for (n, line) in textLines(text).enumerated() where !line.isEmpty && !line.hasPrefix("#") {
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard f.count >= 2, f[0] == "softdep" else {
                throw SSIError("modules", "\(file):\(n + 1): not 'softdep MODULE pre: ... post: ...'", hint: "rebuild the image or run depmod")
            }
            var pre: [String] = [], post: [String] = []
            var into: Int? = nil
            for word in f.dropFirst(2) {
                switch word {
                case "pre:": into = 0
                case "post:": into = 1
                // A name before either tag is ignored, as kmod ignores it
                // (Debian 12's modules.softdep has "softdep cifs gcm").
                default:
                    if into == 0 { pre.append(word) } else if into == 1 { post.append(word) }
                }
            }
            softdeps[moduleName(fromPath: f[1])] = (pre, post)
        }
    }

    /// What a name or alias resolves to, as libkmod's lookup does for the
    /// sources an image has: a module name, then aliases (glob patterns,
    /// fnmatch), then built-in names and aliases. Dashes count as
    /// underscores outside brackets, on both sides.
    public func lookup(_ nameOrAlias: String) -> ModuleLookup {
        let key = normalizeAlias(nameOrAlias)
        if modules[key] != nil { return .modules([key]) }
        var found: [String] = []
        for (pattern, module) in aliases where !found.contains(module) && modules[module] != nil {
            if fnmatch(pattern, key, 0) == 0 { found.append(module) }
        }
        if !found.isEmpty { return .modules(found) }
        if builtin.contains(key) { return .builtin }
        if builtinAliases.contains(where: { fnmatch($0.pattern, key, 0) == 0 }) { return .builtin }
        return .notFound
    }

    /// One module to insert, in `loadOrder`.
    public struct Step: Sendable, Equatable {
        public var name: String
        /// The module asked for or one of its hard dependencies: its
        /// failure fails the load. A softdep's failure does not (modprobe
        /// ignores it: crc32c_intel on a CPU without SSE4.2).
        public var required: Bool
        public init(name: String, required: Bool) {
            self.name = name
            self.required = required
        }
    }

    /// The order to insert `name` in, as modprobe builds its probe list:
    /// for each hard dependency, from the last modules.dep lists to the
    /// first, its softdeps pre, itself and its softdeps post; then the
    /// module's own softdeps pre, the module, its softdeps post. A softdep
    /// is looked up like an alias (`crypto-crc32c` may name two modules)
    /// and brings its own dependencies. Each module once.
    public func loadOrder(_ name: String) -> [Step] {
        var order: [Step] = []
        var placed: Set<String> = []
        var visited: Set<String> = []
        func place(_ m: String, _ required: Bool) {
            if placed.insert(m).inserted { order.append(Step(name: m, required: required)) }
        }
        func probe(_ m: String, required: Bool) {
            guard let entry = modules[m], visited.insert(m).inserted else { return }
            for d in entry.dependencies.reversed() {
                let dn = moduleName(fromPath: d)
                if modules[dn] != nil { fill(dn, required) }
            }
            fill(m, required)
        }
        func fill(_ m: String, _ required: Bool) {
            let soft = softdeps[m]
            for p in soft?.pre ?? [] { for x in resolveSoftdep(p) { probe(x, required: false) } }
            place(m, required)
            for p in soft?.post ?? [] { for x in resolveSoftdep(p) { probe(x, required: false) } }
        }
        probe(name, required: true)
        return order
    }

    func resolveSoftdep(_ name: String) -> [String] {
        if case .modules(let found) = lookup(name) { return found }
        return []
    }
}

/// What a module name or alias resolves to.
public enum ModuleLookup: Sendable, Equatable {
    /// Loadable modules, by name (an alias can match several).
    case modules([String])
    /// Built into the kernel: nothing to load.
    case builtin
    /// Neither a module, an alias nor a built-in.
    case notFound
}

/// "kernel/fs/ext4/ext4.ko" -> "ext4"; dashes become underscores as in
/// the kernel's own module names.
public func moduleName(fromPath path: String) -> String {
    var base = basename(of: path)
    for ext in [".ko.zst", ".ko.xz", ".ko.gz", ".ko"] where base.hasSuffix(ext) {
        base = String(base.dropLast(ext.count))
        break
    }
    return String(base.map { $0 == "-" ? "_" : $0 })
}

/// libkmod looks aliases up with '-' turned into '_' outside bracket
/// expressions; patterns and keys are compared that way.
public func normalizeAlias(_ alias: String) -> String {
    var out = ""
    var inBracket = false
    for c in alias {
        if c == "[" { inBracket = true } else if c == "]" { inBracket = false }
        out.append(!inBracket && c == "-" ? "_" : c)
    }
    return out
}
