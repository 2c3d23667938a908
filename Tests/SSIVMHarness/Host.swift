// What the host offers for VM tests: a kernel with its modules, qemu, the
// tools the harness calls, /dev/net/tun and the capabilities for network
// namespaces and taps. Tests gate themselves on `VMHost.skipReason`.

import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The kernel the guests boot, and whose modules an initramfs is built from.
public struct Kernel: Sendable, CustomStringConvertible {
    /// Path to the vmlinuz.
    public let path: String
    /// The release string, e.g. "6.1.0-56-amd64" (the vmlinuz suffix).
    public let version: String
    /// /lib/modules/VERSION
    public var modulesDirectory: String { "/lib/modules/\(version)" }
    public var description: String { "\(path) (\(version))" }
}

public enum VMHost {
    /// The host's time of day, HH:MM:SS (UTC), for the test log's lines:
    /// set beside the guests' own clocks in their serial logs.
    public static func timeOfDay() -> String {
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        return String(format: "%02d:%02d:%02d", parts.tm_hour, parts.tm_min, parts.tm_sec)
    }

    /// The package root (the folder with Package.swift), from this file's
    /// path: Tests/SSIVMHarness/Host.swift.
    public static let packageRoot: String = {
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .path
    }()

    /// initramfs/testroot: mkroot.sh and the marker init script.
    public static var testrootDirectory: String { packageRoot + "/initramfs/testroot" }

    /// `SSI_KERNEL` (a vmlinuz path), else the newest /boot/vmlinuz-* that has
    /// /lib/modules/VERSION. Nil when none is usable; see `kernelProblem`.
    public static let kernel: Kernel? = findKernel().kernel

    /// Why no kernel was found (nil when `kernel` is set).
    public static let kernelProblem: String? = findKernel().problem

    /// qemu-system-x86_64, or `SSI_QEMU`.
    public static let qemu: String? = {
        if let env = environment("SSI_QEMU") { return Command.find(env) }
        return Command.find("qemu-system-x86_64")
    }()

    /// Set when SSI_KEEP_VM=1: scratch folders (images, logs) are kept.
    public static var keepScratch: Bool { environment("SSI_KEEP_VM") == "1" }

    /// Why a single guest cannot boot here (no kernel, no qemu, a missing
    /// tool), or nil. Needs no privileges.
    public static let bootSkipReason: String? = {
        var problems: [String] = []
        if let kernelProblem { problems.append(kernelProblem) }
        if qemu == nil { problems.append("qemu-system-x86_64 not found (apt-get install qemu-system-x86)") }
        for (tool, package) in [("setpriv", "util-linux"), ("timeout", "coreutils"),
                                ("mkfs.ext4", "e2fsprogs")] where Command.find(tool) == nil {
            problems.append("\(tool) not found (apt-get install \(package))")
        }
        if !isStaticExecutable("/usr/bin/busybox") {
            problems.append("/usr/bin/busybox missing or not static (apt-get install busybox-static)")
        }
        if access(testrootDirectory + "/mkroot.sh", X_OK) != 0 {
            problems.append("\(testrootDirectory)/mkroot.sh missing or not executable")
        }
        return problems.isEmpty ? nil : "cannot run VM tests: " + problems.joined(separator: "; ")
    }()

    /// `bootSkipReason` plus what test networks need: `ip`, /dev/net/tun,
    /// CAP_SYS_ADMIN (network namespaces) and CAP_NET_ADMIN (taps, bridge)
    /// in the effective set. Tests use
    /// `.enabled(if: VMHost.skipReason == nil, Comment(rawValue: VMHost.skipReason ?? ""))`.
    public static let skipReason: String? = {
        var problems: [String] = []
        if let boot = bootSkipReason { problems.append(boot) }
        if Command.find("ip") == nil { problems.append("ip not found (apt-get install iproute2)") }
        var st = stat()
        if stat("/dev/net/tun", &st) != 0 || (st.st_mode & S_IFMT) != S_IFCHR {
            problems.append("/dev/net/tun is missing")
        }
        let caps = effectiveCapabilities()
        for (bit, name) in [(21, "CAP_SYS_ADMIN"), (12, "CAP_NET_ADMIN")] where caps & (1 << UInt64(bit)) == 0 {
            problems.append("\(name) not in the effective capability set (CapEff=\(String(caps, radix: 16)))")
        }
        return problems.isEmpty ? nil : "cannot run networked VM tests: " + problems.joined(separator: "; ")
    }()

    /// CapEff from /proc/self/status (0 when unreadable). Privilege is what
    /// the process may do, not its uid: root in a container may lack
    /// CAP_SYS_ADMIN, and a non-root runner may have it.
    public static func effectiveCapabilities() -> UInt64 {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix("CapEff:") {
            let hex = line.dropFirst("CapEff:".count).trimmingCharacters(in: .whitespaces)
            return UInt64(hex, radix: 16) ?? 0
        }
        return 0
    }

    /// An environment variable, nil when unset or empty.
    public static func environment(_ name: String) -> String? {
        guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else { return nil }
        return value
    }

    private static func findKernel() -> (kernel: Kernel?, problem: String?) {
        func check(_ path: String, _ version: String) -> (Kernel?, String?) {
            guard access(path, R_OK) == 0 else { return (nil, "kernel \(path) is not readable") }
            let kernel = Kernel(path: path, version: version)
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: kernel.modulesDirectory, isDirectory: &isDir),
                  isDir.boolValue else {
                return (nil, "kernel \(path) has no \(kernel.modulesDirectory)")
            }
            return (kernel, nil)
        }
        if let env = environment("SSI_KERNEL") {
            let name = URL(fileURLWithPath: env).lastPathComponent
            guard name.hasPrefix("vmlinuz-") else {
                return (nil, "SSI_KERNEL=\(env): the file name must be vmlinuz-VERSION")
            }
            return check(env, String(name.dropFirst("vmlinuz-".count)))
        }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/boot")) ?? []
        let versions = names.filter { $0.hasPrefix("vmlinuz-") }
            .map { String($0.dropFirst("vmlinuz-".count)) }
            .sorted { versionLess($1, $0) }     // newest first
        guard !versions.isEmpty else {
            return (nil, "no /boot/vmlinuz-* (apt-get install linux-image-amd64, or set SSI_KERNEL)")
        }
        var problems: [String] = []
        for version in versions {
            let (kernel, problem) = check("/boot/vmlinuz-\(version)", version)
            if let kernel { return (kernel, nil) }
            if let problem { problems.append(problem) }
        }
        return (nil, problems.joined(separator: "; "))
    }

    /// Compares release strings by their numeric and text runs, so that
    /// 6.1.0-10 < 6.1.0-56 and 6.1 < 6.12.
    public static func versionLess(_ a: String, _ b: String) -> Bool {
        func parts(_ s: String) -> [Either] {
            var out: [Either] = []
            var current = ""
            var digits = false
            for ch in s {
                let isDigit = ch.isASCII && ch.isNumber
                if !current.isEmpty && isDigit != digits {
                    out.append(digits ? .number(Int(current) ?? 0) : .text(current))
                    current = ""
                }
                digits = isDigit
                current.append(ch)
            }
            if !current.isEmpty { out.append(digits ? .number(Int(current) ?? 0) : .text(current)) }
            return out
        }
        let pa = parts(a), pb = parts(b)
        for (x, y) in zip(pa, pb) where x != y {
            switch (x, y) {
            case let (.number(m), .number(n)): return m < n
            case let (.text(m), .text(n)): return m < n
            case (.number, .text): return false
            case (.text, .number): return true
            }
        }
        return pa.count < pb.count
    }

    private enum Either: Equatable { case number(Int), text(String) }

    /// True for an ELF file without a PT_INTERP program header.
    public static func isStaticExecutable(_ path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        guard let header = try? handle.read(upToCount: 64), header.count == 64,
              header.prefix(4).elementsEqual([0x7f, 0x45, 0x4c, 0x46]), header[4] == 2 else { return false }
        func u16(_ o: Int) -> Int { Int(header[o]) | Int(header[o + 1]) << 8 }
        func u64(_ o: Int, _ d: Data) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(d[d.startIndex + o + $1]) << (8 * UInt64($1)) } }
        let phoff = u64(32, header), phentsize = u16(54), phnum = u16(56)
        guard (try? handle.seek(toOffset: phoff)) != nil,
              let table = try? handle.read(upToCount: phentsize * phnum), table.count == phentsize * phnum else { return false }
        for i in 0..<phnum {
            let at = table.startIndex + i * phentsize
            let type = (0..<4).reduce(UInt32(0)) { $0 | UInt32(table[at + $1]) << (8 * UInt32($1)) }
            if type == 3 { return false }       // PT_INTERP
        }
        return true
    }
}
