public import SSICore
public import SSILinux

/// A set of kernel modules closed under dependencies, resolved on the
/// build host against one kernel's module directory.
public struct ModuleSet: Sendable {
    public let kernelVersion: String
    public let directory: String
    /// What was asked for (and is not built in), in order.
    public private(set) var requested: [String] = []
    /// Requested names the kernel has built in: nothing to carry.
    public private(set) var builtin: [String] = []
    /// Every module to carry, by name.
    public private(set) var modules: [String: KernelModule] = [:]
    public private(set) var hardDependencies: [String: [KernelModule]] = [:]
    public private(set) var softdeps: [String: (pre: [String], post: [String])] = [:]
    public private(set) var aliases: [String: [String]] = [:]
    public private(set) var firmware: [String] = []
    public private(set) var missingFirmware: [String] = []

    /// Resolves `names` (module names or aliases) with their dependency
    /// closure, softdeps (pre: and post:) included, and the firmware they
    /// declare that the host has.
    public static func resolve(names: [String], kernelVersion: String, directory: String,
                               firmwareRoot: String = "/lib/firmware") throws(SSIError) -> ModuleSet {
        let ctx = try KmodContext(directory: directory, useSystemConfig: false)
        var set = ModuleSet(kernelVersion: kernelVersion, directory: directory)
        var queue: [KernelModule] = []
        func enqueue(_ m: KernelModule) {
            if set.modules[m.name] == nil {
                set.modules[m.name] = m
                queue.append(m)
            }
        }
        for name in names {
            switch try ctx.lookup(name) {
            case .notFound:
                throw SSIError("modules", "unknown module or alias '\(name)' for kernel \(kernelVersion)",
                               hint: "not in \(directory)/modules.dep, modules.alias or modules.builtin; check the name with 'modinfo -k \(kernelVersion) \(name)'")
            case .builtin:
                set.builtin.append(name)
            case .modules(let mods):
                set.requested.append(name)
                mods.forEach(enqueue)
            }
        }
        while let m = queue.popLast() {
            let deps = ctx.dependencies(of: m)
            set.hardDependencies[m.name] = deps.hard
            deps.hard.forEach(enqueue)
            if !deps.softPre.isEmpty || !deps.softPost.isEmpty {
                set.softdeps[m.name] = (deps.softPre, deps.softPost)
            }
            // A softdep this kernel does not have is not an error: modprobe
            // skips it too.
            for soft in deps.softPre + deps.softPost {
                if case .modules(let mods) = try ctx.lookup(soft) { mods.forEach(enqueue) }
            }
            set.aliases[m.name] = ctx.info(m, key: "alias")
            for fw in ctx.info(m, key: "firmware") {
                if let path = findFirmware(fw, kernelVersion: kernelVersion, root: firmwareRoot) {
                    set.firmware.append(path)
                } else {
                    set.missingFirmware.append(fw)
                }
            }
        }
        set.firmware = Array(Set(set.firmware)).sorted()
        set.missingFirmware = Array(Set(set.missingFirmware)).sorted()
        return set
    }

    /// The search order of the kernel's firmware loader, with the
    /// compressed variants the kernel can decompress itself.
    static func findFirmware(_ name: String, kernelVersion: String, root: String) -> String? {
        for dir in ["\(root)/updates/\(kernelVersion)", "\(root)/updates", "\(root)/\(kernelVersion)", root] {
            for ext in ["", ".zst", ".xz"] {
                let p = "\(dir)/\(name)\(ext)"
                if FileSystem.exists(p) { return p }
            }
        }
        return nil
    }

    /// The module's path relative to the module directory, as modules.dep
    /// writes it ("kernel/fs/ext4/ext4.ko").
    public func relativePath(_ m: KernelModule) -> String? {
        guard let p = m.path else { return nil }
        let prefix = directory.hasSuffix("/") ? directory : directory + "/"
        return p.hasPrefix(prefix) ? String(p.dropFirst(prefix.count)) : nil
    }

    /// Adds the modules, their firmware, the indexes libkmod needs and the
    /// boot list to the image tree.
    /// `loadAtBoot` is the list ssi-init always loads; everything else is
    /// loaded when a device or a file system needs it.
    public func install(into tree: inout ImageTree, loadAtBoot: [String]) throws(SSIError) {
        let base = "usr/lib/modules/\(kernelVersion)"
        try tree.add(base, .directory(permissions: 0o755))
        let names = modules.keys.sorted()
        let dep = KmodIndexWriter()
        let alias = KmodIndexWriter()
        for (i, name) in names.enumerated() {
            let m = modules[name]!
            guard let rel = relativePath(m), let path = m.path else {
                throw SSIError("modules", "\(name): \(m.path ?? "no path") is outside \(directory)")
            }
            let st: FileSystem.Status
            do { st = try FileSystem.status(path, followSymlinks: true) } catch {
                throw SSIError("modules", "\(name): \(error.description)")
            }
            try tree.add("\(base)/\(rel)", .hostFile(source: path, permissions: 0o644, size: st.size))
            // libkmod hands the modules.dep list back reversed (it prepends
            // while parsing); modprobe loads the list from its end, so the
            // index must hold depmod's order again.
            let deps = (hardDependencies[name] ?? []).reversed().compactMap(relativePath)
            dep.insert(key: name, value: "\(rel):" + deps.map { " " + $0 }.joined(), priority: UInt32(i))
            for a in aliases[name] ?? [] {
                alias.insert(key: normalizeAlias(a), value: name, priority: UInt32(i))
            }
        }
        try tree.add("\(base)/modules.dep.bin", .data(dep.serialized(), permissions: 0o644))
        try tree.add("\(base)/modules.alias.bin", .data(alias.serialized(), permissions: 0o644))
        try tree.add("\(base)/modules.symbols.bin", .data(symbolIndex(names: Set(names)).serialized(), permissions: 0o644))
        let (builtinIndex, builtinAliases) = builtinIndexes()
        try tree.add("\(base)/modules.builtin.bin", .data(builtinIndex.serialized(), permissions: 0o644))
        try tree.add("\(base)/modules.builtin.alias.bin", .data(builtinAliases.serialized(), permissions: 0o644))
        var soft = ""
        for name in softdeps.keys.sorted() {
            let s = softdeps[name]!
            soft += "softdep \(name)"
            if !s.pre.isEmpty { soft += " pre: " + s.pre.joined(separator: " ") }
            if !s.post.isEmpty { soft += " post: " + s.post.joined(separator: " ") }
            soft += "\n"
        }
        try tree.add("\(base)/modules.softdep", .data(Array(soft.utf8), permissions: 0o644))
        for fw in firmware {
            let st: FileSystem.Status
            do { st = try FileSystem.status(fw, followSymlinks: true) } catch {
                throw SSIError("firmware", error.description)
            }
            // Keep the path under /lib/firmware as the kernel looks it up.
            let rel = fw.split(separator: "/").drop { $0 != "firmware" }.dropFirst().joined(separator: "/")
            try tree.add("usr/lib/firmware/\(rel)", .hostFile(source: fw, permissions: 0o644, size: st.size))
        }
        // What ssi-init loads at boot, one name per line, in request order.
        let list = loadAtBoot.map { $0 + "\n" }.joined()
        try tree.add("etc/ssi/modules", .data(Array(list.utf8), permissions: 0o644))
    }

    private func symbolIndex(names: Set<String>) -> KmodIndexWriter {
        let idx = KmodIndexWriter()
        guard let text = try? FileSystem.readText(directory + "/modules.symbols") else { return idx }
        // "alias symbol:NAME module"
        for line in text.lines() {
            let f = line.split(separator: " ")
            if f.count == 3, f[0] == "alias", names.contains(String(f[2])) {
                idx.insert(key: String(f[1]), value: String(f[2]))
            }
        }
        return idx
    }

    /// modules.builtin (one path per built-in module) and the aliases in
    /// modules.builtin.modinfo, so lookups of built-in names succeed.
    private func builtinIndexes() -> (KmodIndexWriter, KmodIndexWriter) {
        let names = KmodIndexWriter()
        let aliases = KmodIndexWriter()
        if let text = try? FileSystem.readText(directory + "/modules.builtin") {
            for line in text.lines() {
                names.insert(key: moduleName(fromPath: String(line)), value: "")
            }
        }
        if let raw = try? FileSystem.readFile(directory + "/modules.builtin.modinfo") {
            for rec in raw.split(separator: 0) {
                let s = String(decoding: rec, as: UTF8.self)
                guard let dot = s.firstIndex(of: "."), let eq = s.firstIndex(of: "="), dot < eq else { continue }
                if s[s.index(after: dot)..<eq] == "alias" {
                    aliases.insert(key: normalizeAlias(String(s[s.index(after: eq)...])), value: String(s[..<dot]))
                }
            }
        }
        return (names, aliases)
    }
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
/// expressions; the index must hold them the same way.
public func normalizeAlias(_ alias: String) -> String {
    var out = ""
    var inBracket = false
    for c in alias {
        if c == "[" { inBracket = true } else if c == "]" { inBracket = false }
        out.append(!inBracket && c == "-" ? "_" : c)
    }
    return out
}
