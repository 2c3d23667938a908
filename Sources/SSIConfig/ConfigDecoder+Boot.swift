// [private] and [netboot]: how nodes share one root without trampling each
// other, and what the CFS init node serves to network-booting nodes;
// [identity], [tunnel] and [fence].

import SSICore

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
            // Scalars, not Characters: "\r\n" is one Character, equal to neither.
            if k.unicodeScalars.contains(where: { $0 == "\n" || $0 == "\r" }) {
                report(line, "netboot.kernel_arguments", "one line of kernel parameters, separated by spaces"); ok = false
            }
            result.kernelArguments = k
        } else if t.entry("kernel_arguments") != nil { ok = false }
        return ok ? result : nil
    }
}

extension ConfigDecoder {
    /// `[identity]`; nil with a problem reported.
    mutating func decodeIdentity(_ t: TOMLTable?) -> ClusterConfig.Identity? {
        guard let t else { return ClusterConfig.Identity() }
        checkKeys(t, section: "identity")
        var result = ClusterConfig.Identity()
        var ok = true
        for key in ["known", "key", "device", "sealed"] {
            if let (path, line) = string(t, key, "identity") {
                if let why = key == "device" ? keySourceProblem(path) : absolutePathProblem(path) {
                    report(line, "identity.\(key)", why)
                    ok = false
                }
                switch key {
                case "known": result.known = path
                case "key": result.key = path
                case "sealed": result.sealed = path
                default: result.device = path
                }
            } else if t.entry(key) != nil { ok = false }
        }
        if let (v, _) = integer(t, "enroll_wait_seconds", "identity", range: 1...86_400) {
            result.enrollWaitSeconds = v
        } else if t.entry("enroll_wait_seconds") != nil { ok = false }
        return ok ? result : nil
    }
}

extension ConfigDecoder {
    /// `[tunnel]`: .some(nil) without the section, nil with a problem
    /// reported. Node N's tunnel address is host N of the prefix, so the
    /// prefix must hold every node number, and stay apart from the
    /// cluster network (a route to one would shadow the other).
    mutating func decodeTunnel(_ t: TOMLTable?, network: ClusterConfig.Network?, nodes: [NodeDraft]) -> ClusterConfig.Tunnel?? {
        guard let t else { return .some(nil) }
        checkKeys(t, section: "tunnel")
        var ok = true
        var prefix: IPv4CIDR?
        if let (p, line) = string(t, "prefix", "tunnel") {
            do {
                let parsed = try IPv4CIDR(parsingNetwork: p)
                if parsed.prefixLength > 30 || parsed.prefixLength < 8 {
                    report(line, "tunnel.prefix", "/\(parsed.prefixLength) is not a usable tunnel network", hint: "use a prefix length between /8 and /30")
                    ok = false
                } else if let network, network.prefix.contains(parsed.address) || parsed.contains(network.prefix.address) {
                    report(line, "tunnel.prefix", "\(parsed) overlaps network.prefix \(network.prefix)",
                           hint: "the tunnel needs addresses of its own, e.g. \"10.78.0.0/24\" beside \"10.77.0.0/24\"")
                    ok = false
                } else {
                    let hosts = parsed.prefixLength >= 31 ? 0 : (1 << (32 - parsed.prefixLength)) - 2
                    for n in nodes where n.hasNumber && n.node.number > hosts {
                        report(line, "tunnel.prefix", "\(parsed) has \(hosts) host addresses; node \(n.node.number) (line \(n.numberLine)) needs host \(n.node.number)",
                               hint: "node N's tunnel address is host N of the prefix: use a larger one")
                        ok = false
                    }
                }
                prefix = parsed
            } catch {
                report(line, "tunnel.prefix", error.description, hint: error.ipv6Hint)
                ok = false
            }
        } else {
            if t.entry("prefix") == nil { report(t.line, "tunnel.prefix", "missing", hint: "prefix = \"10.78.0.0/24\" (node N is host N in it)") }
            ok = false
        }
        var port = ClusterConfig.Tunnel.defaultPort
        if let (v, _) = integer(t, "port", "tunnel", range: 1...65535) {
            port = v
        } else if t.entry("port") != nil { ok = false }
        guard ok, let prefix else { return nil }
        return .some(ClusterConfig.Tunnel(prefix: prefix, port: port))
    }

    /// `[fence]`; nil with a problem reported. A gfs2 root needs it.
    mutating func decodeFence(_ t: TOMLTable?, rootType: String?, rootLine: Int) -> ClusterConfig.Fence?? {
        guard let t else {
            if rootType == "gfs2" {
                report(rootLine, "fence", "a gfs2 root needs a [fence] section: GFS2 replays a failed node's journal only once the node is fenced, and without an agent every node's I/O stops at the first failure",
                       hint: "[fence] agent = \"/usr/sbin/fence_ipmilan\" with args (see INSTALL.md), or \"\(ClusterConfig.Fence.builtinAgent)\" for qemu guests")
            }
            return .some(nil)
        }
        checkKeys(t, section: "fence")
        var ok = true
        var fence = ClusterConfig.Fence(agent: "")
        if let (a, line) = string(t, "agent", "fence") {
            if let why = absolutePathProblem(a) { report(line, "fence.agent", why, hint: "give the agent's absolute path"); ok = false }
            fence.agent = a
        } else {
            if t.entry("agent") == nil { report(t.line, "fence.agent", "missing", hint: "agent = \"/usr/sbin/fence_ipmilan\"") }
            ok = false
        }
        if let (a, line) = string(t, "args", "fence") {
            let words = a.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            if let why = words.lazy.compactMap(fenceArgumentProblem).first {
                report(line, "fence.args", why, hint: "space-separated key=value words"); ok = false
            }
            fence.arguments = words
        } else if t.entry("args") != nil { ok = false }
        if let files = strings(t, "files", "fence", single: false) {
            for f in files {
                if let why = absolutePathProblem(f.value) { report(f.line, "fence.files", "\(f.value): \(why)"); ok = false }
            }
            fence.files = files.map(\.value)
        } else if t.entry("files") != nil { ok = false }
        if let (d, _) = integer(t, "post_join_delay", "fence", range: 0...3600) { fence.postJoinDelay = d } else if t.entry("post_join_delay") != nil { ok = false }
        if let (p, line) = string(t, "secrets", "fence") {
            if let why = absolutePathProblem(p) { report(line, "fence.secrets", why); ok = false }
            fence.secrets = p
        } else if t.entry("secrets") != nil { ok = false }
        return ok ? .some(fence) : nil
    }

    /// A node's `fence_args`.
    mutating func fenceArguments(_ t: TOMLTable) -> [String]? {
        guard let (a, line) = string(t, "fence_args", "node") else { return t.entry("fence_args") == nil ? [] : nil }
        let words = a.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        for w in words {
            if let why = fenceArgumentProblem(w) { report(line, "node.fence_args", why, hint: "space-separated key=value words, e.g. \"ipaddr=10.0.1.5\""); return nil }
        }
        return words
    }
}
