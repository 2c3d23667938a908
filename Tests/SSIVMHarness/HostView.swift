import Foundation

/// What the host says of a guest's processes when a wait on it runs out:
/// each thread of its qemu (and of its swtpm) with its state, the CPU
/// time it has had and the kernel function it sleeps in, and the host's
/// load and pressure. A guest that stopped printing for half a minute
/// while the others ran on (GFS2's CI runs, three times) leaves no trace
/// inside itself; this tells a vCPU thread starved of a core ("R", its
/// CPU time flat) from one blocked in the host kernel ("D", its wchan)
/// or waiting on swtpm.
enum HostView {
    /// Lines for the processes whose command line contains `marker` (the
    /// guest's scratch path: its qemu and swtpm, not the wrappers).
    static func describe(processesMentioning marker: String, programs: [String] = ["qemu-system", "swtpm"]) -> String {
        var lines: [String] = []
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for pid in entries where pid.allSatisfy(\.isNumber) {
            guard let raw = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline")) else { continue }
            let argv = raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            guard let program = argv.first, programs.contains(where: { program.hasSuffix($0) || program.contains("/\($0)") }),
                  argv.contains(where: { $0.contains(marker) }) else { continue }
            lines.append("  \(URL(fileURLWithPath: program).lastPathComponent) \(pid):")
            let tasks = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []).sorted { (Int($0) ?? 0) < (Int($1) ?? 0) }
            for tid in tasks.prefix(24) {
                lines.append("    " + thread("/proc/\(pid)/task/\(tid)", tid: tid))
            }
        }
        if lines.isEmpty { lines.append("  no qemu or swtpm process mentions \(marker)") }
        let load = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
        lines.append("  load: \(load)")
        for kind in ["cpu", "memory", "io"] {
            if let p = try? String(contentsOfFile: "/proc/pressure/\(kind)", encoding: .utf8) {
                lines.append("  pressure \(kind): " + p.split(separator: "\n").joined(separator: "; "))
            }
        }
        return lines.joined(separator: "\n")
    }

    /// "TID NAME state S, cpu 12.34 s, wchan do_sys_poll": /proc's stat
    /// fields after the parenthesized name (state, then utime and stime as
    /// fields 14 and 15, in clock ticks).
    static func thread(_ dir: String, tid: String) -> String {
        guard let stat = try? String(contentsOfFile: dir + "/stat", encoding: .utf8),
              let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")") else { return "\(tid): gone" }
        let name = stat[stat.index(after: open)..<close]
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is the state (field 3); utime is field 14, stime 15.
        let state = fields.first.map(String.init) ?? "?"
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let cpu = fields.count > 12 ? ((Double(fields[11]) ?? 0) + (Double(fields[12]) ?? 0)) / max(ticks, 1) : 0
        let wchan = ((try? String(contentsOfFile: dir + "/wchan", encoding: .utf8)) ?? "?").trimmingCharacters(in: .whitespacesAndNewlines)
        return "\(tid) \(name): state \(state), cpu \(String(format: "%.2f", cpu)) s, wchan \(wchan.isEmpty || wchan == "0" ? "-" : wchan)"
    }
}
