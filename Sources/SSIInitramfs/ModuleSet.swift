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

    /// Adds the modules, their firmware, the indexes ssi-init's loader
    /// reads and the boot list to the image tree.
    /// `loadAtBoot` is the list ssi-init always loads; everything else is
    /// loaded when a device or a file system needs it.
    ///
    /// The indexes are depmod's text files for exactly these modules
    /// (`ModuleIndex`), not libkmod's binary ones: the image carries no
    /// libkmod (DESIGN-NOTES, "Module loading at boot"). A compressed
    /// module is stored decompressed, as mkinitramfs stores it: the image
    /// is compressed as a whole, and finit_module then needs no
    /// decompressor in the kernel or in the image.
    public func install(into tree: inout ImageTree, loadAtBoot: [String]) throws(SSIError) {
        let base = "usr/lib/modules/\(kernelVersion)"
        try tree.add(base, .directory(permissions: 0o755))
        let names = modules.keys.sorted()
        var stored: [String: String] = [:]
        for name in names {
            guard let rel = relativePath(modules[name]!) else {
                throw SSIError("modules", "\(name): \(modules[name]!.path ?? "no path") is outside \(directory)")
            }
            stored[name] = Self.storedPath(rel)
        }
        var dep = "", alias = ""
        for name in names {
            let m = modules[name]!
            let path = m.path!
            let rel = relativePath(m)!
            if let format = Self.compression(of: rel) {
                let raw: [UInt8]
                do { raw = try FileSystem.readFile(path) } catch {
                    throw SSIError("modules", "\(name): \(error.description)")
                }
                let plain = try Decompress.all(raw[...], format: format, source: path)
                try tree.add("\(base)/\(stored[name]!)", .data(plain, permissions: 0o644))
            } else {
                let st: FileSystem.Status
                do { st = try FileSystem.status(path, followSymlinks: true) } catch {
                    throw SSIError("modules", "\(name): \(error.description)")
                }
                try tree.add("\(base)/\(rel)", .hostFile(source: path, permissions: 0o644, size: st.size))
            }
            // modules.dep's order: libkmod hands the list back reversed (it
            // prepends while parsing), so it is reversed again here; the
            // loader takes it from its end, as modprobe does.
            let deps = (hardDependencies[name] ?? []).reversed().compactMap { stored[$0.name] }
            dep += "\(stored[name]!):" + deps.map { " " + $0 }.joined() + "\n"
            for a in aliases[name] ?? [] where !a.isEmpty && !a.contains("\n") {
                alias += "alias \(a) \(name)\n"
            }
        }
        try tree.add("\(base)/modules.dep", .data(Array(dep.utf8), permissions: 0o644))
        try tree.add("\(base)/modules.alias", .data(Array(alias.utf8), permissions: 0o644))
        let (builtinNames, builtinAliases) = builtinIndexes()
        try tree.add("\(base)/modules.builtin", .data(Array(builtinNames.utf8), permissions: 0o644))
        try tree.add("\(base)/modules.builtin.alias", .data(Array(builtinAliases.utf8), permissions: 0o644))
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

    /// The compression of a module file, by its name.
    static func compression(of path: String) -> ArchiveFormat? {
        if path.hasSuffix(".ko.zst") { return .zstd }
        if path.hasSuffix(".ko.xz") { return .xz }
        if path.hasSuffix(".ko.gz") { return .gzip }
        return nil
    }

    /// Where a module is stored in the image: decompressed, as NAME.ko.
    static func storedPath(_ rel: String) -> String {
        for ext in [".zst", ".xz", ".gz"] where compression(of: rel) != nil && rel.hasSuffix(ext) {
            return String(rel.dropLast(ext.count))
        }
        return rel
    }

    /// modules.builtin as the kernel ships it, and the aliases of built-in
    /// modules from modules.builtin.modinfo as "alias PATTERN MODULE"
    /// lines, so that lookups of built-in names and aliases succeed.
    private func builtinIndexes() -> (names: String, aliases: String) {
        let names = (try? FileSystem.readText(directory + "/modules.builtin")) ?? ""
        var aliases = ""
        if let raw = try? FileSystem.readFile(directory + "/modules.builtin.modinfo") {
            for rec in raw.split(separator: 0) {
                let s = String(decoding: rec, as: UTF8.self)
                guard let dot = s.firstIndex(of: "."), let eq = s.firstIndex(of: "="), dot < eq,
                      s[s.index(after: dot)..<eq] == "alias" else { continue }
                let pattern = s[s.index(after: eq)...]
                if pattern.isEmpty || pattern.contains("\n") { continue }
                aliases += "alias \(pattern) \(s[..<dot])\n"
            }
        }
        return (names, aliases)
    }
}

