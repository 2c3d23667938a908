// [private] and [netboot]: how nodes share one root without trampling each
// other, and what the CFS init node serves to network-booting nodes.

extension ConfigDecoder {
    /// nil when a problem was reported.
    mutating func decodePrivate(_ t: TOMLTable?) -> ClusterConfig.PrivatePaths? {
        guard let t else { return ClusterConfig.PrivatePaths() }
        checkKeys(t, section: "private")
        var result = ClusterConfig.PrivatePaths()
        var ok = true
        if let list = strings(t, "paths", "private", single: false) {
            if let paths = privatePathList(list, field: "private.paths") { result.paths = paths } else { ok = false }
        } else if t.entry("paths") != nil { ok = false }
        if let (d, line) = string(t, "directory", "private") {
            if let why = absolutePathProblem(d) {
                report(line, "private.directory", why); ok = false
            } else if d == "/" {
                report(line, "private.directory", "the per-node copies need a folder of their own, not /",
                       hint: "directory = \"\(ClusterConfig.PrivatePaths.defaultDirectory)\"")
                ok = false
            } else if let p = result.paths.first(where: { d == $0 || d.hasPrefix($0 + "/") }) {
                report(line, "private.directory", "\(d) is inside the private path \(p): each node would hide the others' copies and its own",
                       hint: "use a folder outside every private path, e.g. \(ClusterConfig.PrivatePaths.defaultDirectory)")
                ok = false
            }
            result.directory = d
        } else if t.entry("directory") != nil { ok = false }
        return ok ? result : nil
    }

    /// Node-private paths ([private] paths, a node's private): absolute,
    /// not /, each once, none inside another. nil when a problem was reported.
    mutating func privatePathList(_ list: [(value: String, line: Int)], field: String) -> [String]? {
        var paths: [String] = []
        var ok = true
        for (p, line) in list {
            if let why = absolutePathProblem(p) {
                report(line, field, why); ok = false
            } else if p == "/" {
                report(line, field, "/ cannot be node-private: it is the shared root"); ok = false
            } else if paths.contains(p) {
                report(line, field, "\(p) is listed twice"); ok = false
            } else if let outer = paths.first(where: { p.hasPrefix($0 + "/") || $0.hasPrefix(p + "/") }) {
                report(line, field, "\(p) and \(outer) are nested: the outer one is already private with everything in it",
                       hint: "keep only the outer path")
                ok = false
            } else {
                paths.append(p)
            }
        }
        return ok ? paths : nil
    }

    mutating func decodeNetboot(_ t: TOMLTable?) -> ClusterConfig.Netboot? {
        guard let t else { return ClusterConfig.Netboot() }
        checkKeys(t, section: "netboot")
        var result = ClusterConfig.Netboot()
        var ok = true
        if let (b, _) = boolean(t, "enabled", "netboot") { result.enabled = b } else if t.entry("enabled") != nil { ok = false }
        if let (d, line) = string(t, "directory", "netboot") {
            if let why = absolutePathProblem(d) { report(line, "netboot.directory", why); ok = false }
            else if d == "/" { report(line, "netboot.directory", "the TFTP root must be a folder of its own, not /"); ok = false }
            result.directory = d
        } else if t.entry("directory") != nil { ok = false }
        if let (k, line) = string(t, "kernel_arguments", "netboot") {
            if k.contains(where: { $0 == "\n" || $0 == "\r" }) {
                report(line, "netboot.kernel_arguments", "one line of kernel parameters, separated by spaces"); ok = false
            }
            result.kernelArguments = k
        } else if t.entry("kernel_arguments") != nil { ok = false }
        return ok ? result : nil
    }
}
