#if canImport(Glibc)
import Glibc
#endif
import CSSIShim
import SSICore
import SSILinux
import SSIConfig
import SSIMembership

/// Where load leveling is on (`loadlevel`): `/etc/ssi/loadlevel`, beside
/// the configuration, never in it (the command rewrites a line of its own
/// file, not the administrator's cluster.conf). Lines: `cluster on|off`
/// (every node: `loadlevel -a`) and `node N on|off` (one node, over the
/// cluster line); `#` comments. Missing: off everywhere.
struct LoadLevelSettings: Equatable, Sendable {
    var cluster = false
    var nodes: [UInt32: Bool] = [:]

    static let path = "/etc/ssi/loadlevel"

    func enabled(on node: UInt32) -> Bool { nodes[node] ?? cluster }

    var text: String {
        "# ssi load leveling (loadlevel(8)); cluster: every node, node N: that one\n"
            + "cluster \(cluster ? "on" : "off")\n"
            + nodes.keys.sorted().map { "node \($0) \(nodes[$0]! ? "on" : "off")\n" }.joined()
    }

    static func parse(_ text: String, file: String = path) throws(SSIError) -> LoadLevelSettings {
        var out = LoadLevelSettings()
        for (i, raw) in text.lines().enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let w = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if w.isEmpty { continue }
            func flag(_ s: Substring) throws(SSIError) -> Bool {
                switch s {
                case "on": return true
                case "off": return false
                default:
                    throw SSIError("loadlevel", "\(file):\(i + 1): `\(printable(s.prefix(40)))` is neither on nor off",
                                   hint: "write `cluster on|off` or `node N on|off`, or use loadlevel(8)")
                }
            }
            switch (w.first, w.count) {
            case ("cluster", 2): out.cluster = try flag(w[1])
            case ("node", 3):
                guard let n = UInt32(w[1]), n > 0 else {
                    throw SSIError("loadlevel", "\(file):\(i + 1): `\(printable(w[1].prefix(40)))` is not a node number")
                }
                out.nodes[n] = try flag(w[2])
            default:
                throw SSIError("loadlevel", "\(file):\(i + 1): `\(printable(line.prefix(60)))` is not `cluster on|off` or `node N on|off`")
            }
        }
        return out
    }

    /// The file in `root` (the system's), or off everywhere when there is
    /// none; a file that does not parse is an error (said, and leveling
    /// stays as it was).
    static func read(root: String = "") throws(SSIError) -> LoadLevelSettings {
        guard FileSystem.exists(root + path) else { return LoadLevelSettings() }
        do { return try parse(try FileSystem.readText(root + path)) } catch let e as SSIError { throw e } catch {
            throw SSIError("loadlevel", "\(path): \(error)")
        }
    }
}

/// The programs that may be leveled (OpenSSI's loadlevellist):
/// `/etc/ssi/loadlevellist`, one program name per line, `#` comments. A
/// name is a file name (no `/`), as a shell looks it up in PATH.
enum LoadLevelList {
    static let path = "/etc/ssi/loadlevellist"
    /// Without the file: compilers, the jobs of a parallel build.
    static let defaults = ["cc", "gcc", "c++", "g++", "clang", "clang++"]

    static func parse(_ text: String, file: String = path) throws(SSIError) -> [String] {
        var out: [String] = []
        for (i, raw) in text.lines().enumerated() {
            let name = (raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? "").trimmingCharacters(in: " \t")
            if name.isEmpty { continue }
            guard !name.contains("/"), name != ".", name != "..", name.utf8.count <= 255,
                  name.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
                throw SSIError("loadlevel", "\(file):\(i + 1): `\(printable(name.prefix(60)))` is not a program name",
                               hint: "one name per line, as found in PATH (no path, no spaces)")
            }
            if !out.contains(name) { out.append(name) }
        }
        return out
    }

    static func read(root: String = "") throws(SSIError) -> [String] {
        guard FileSystem.exists(root + path) else { return defaults }
        do { return try parse(try FileSystem.readText(root + path)) } catch let e as SSIError { throw e } catch {
            throw SSIError("loadlevel", "\(path): \(error)")
        }
    }
}

/// The leveler's decisions, as pure functions of the loads (runnable
/// processes per CPU) and the nodes where leveling is on.
enum Leveler {
    /// The node a leveled program should start on. Here while this node
    /// has a CPU to spare (nothing is gained by shipping), else on the node
    /// with the least load per CPU if that is lower by at least half a
    /// process per CPU (a margin: equal loads keep work here).
    /// `pending`: placements made here in the last seconds, which the
    /// published loads do not show yet (a burst of jobs would otherwise
    /// all go to the same idle node).
    static func place(local: UInt32, loads: [UInt32: NodeLoads.Load], pending: [UInt32: Int], enabled: Set<UInt32>) -> UInt32 {
        func estimate(_ n: UInt32) -> Double? {
            guard let l = loads[n] else { return nil }
            return (Double(l.hundredths) / 100 + Double(pending[n] ?? 0)) / Double(max(l.cpus, 1))
        }
        guard enabled.contains(local) else { return local }
        let here = estimate(local) ?? 0
        let cpusHere = Double(max(loads[local]?.cpus ?? 1, 1))
        if here + 1 / cpusHere <= 1.0 { return local }
        var best: (node: UInt32, load: Double)?
        for n in enabled.sorted() where n != local {
            if let e = estimate(n), best == nil || e < best!.load { best = (n, e) }
        }
        guard let best, best.load + 0.5 <= here else { return local }
        return best.node
    }

    /// Where a running leveled process should go from this node, if
    /// anywhere: only when this node is busy (more than one runnable
    /// process per CPU) and another is lighter by at least one per CPU,
    /// so that a move does not just turn the imbalance round (hysteresis;
    /// a moved process also waits `cooldownSeconds` before it moves again).
    /// `excluding`: nodes it cannot go to (its home, where its deputy
    /// holds its PID).
    static func rebalance(local: UInt32, loads: [UInt32: NodeLoads.Load], enabled: Set<UInt32>,
                          excluding: Set<UInt32> = []) -> UInt32? {
        guard enabled.contains(local), let mine = loads[local], mine.perCPU > 1.0 else { return nil }
        var best: (UInt32, Double)?
        for n in enabled.sorted() where n != local && !excluding.contains(n) {
            guard let l = loads[n], mine.perCPU - l.perCPU >= 1.0 else { continue }
            if best == nil || l.perCPU < best!.1 { best = (n, l.perCPU) }
        }
        return best?.0
    }

    static let cooldownSeconds = 30.0
    /// After a move, how long this node waits for the loads to show it.
    static let settleSeconds = 6.0
    /// CPU seconds a process must have used before it is moved while it
    /// runs (short jobs end before a move would pay off).
    static let minimumCPUSeconds = 2.0
    /// How long a placement counts in `pending`.
    static let pendingSeconds = 3.0
}

extension ProcAgent {
    /// The wrappers' directory: one link per leveled program, to this
    /// binary as the system sees it; ssi-ll puts it first in PATH.
    static let levelDirectory = "/run/ssi/ll"

    /// `place` (a wrapper asks): the node, and the placement noted.
    func placement() -> UInt32 {
        let settings = (try? LoadLevelSettings.read(root: options.systemRoot)) ?? LoadLevelSettings()
        let up = peers().filter(\.value.up).keys
        let enabled = Set(up.filter { settings.enabled(on: $0) })
        let loads = NodeLoads.read(directory: options.stateDirectory).byNode
        let now = Process.now()
        return placements.withLock { p -> UInt32 in
            p = p.filter { now - $0.at < Leveler.pendingSeconds }
            var pending: [UInt32: Int] = [:]
            for x in p { pending[x.node, default: 0] += 1 }
            let node = Leveler.place(local: localNode, loads: loads, pending: pending, enabled: enabled)
            p.append((node, now))
            if node != localNode { trace("placed a leveled program on node \(node)") }
            return node
        }
    }

    /// The leveler's thread: every 2 s, the wrappers' links follow the
    /// list, and a busy node moves one running leveled process.
    func startLeveler() {
        startThread { [self] in
            var links: [String] = []
            var lastError = ""
            while true {
                Process.sleep(milliseconds: 2000)
                do throws(SSIError) {
                    let list = try LoadLevelList.read(root: options.systemRoot)
                    if list != links {
                        try syncLevelLinks(list)
                        links = list
                    }
                    try rebalanceOnce()
                    lastError = ""
                } catch {
                    if error.description != lastError { trace("load leveling: \(error.description)") }
                    lastError = error.description
                }
            }
        }
    }

    func syncLevelLinks(_ list: [String]) throws(SSIError) {
        guard let me = try? FileSystem.readLink("/proc/self/exe") else { return }
        let target = FileSystem.exists(AuthKey.runningRoot + me) ? AuthKey.runningRoot + me : me
        let dir = Self.levelDirectory
        do {
            try FileSystem.makeDirectories(dir, mode: 0o755)
            for name in (try? FileSystem.list(dir)) ?? [] where !list.contains(name) { unlink(dir + "/" + name) }
            for name in list {
                unlink(dir + "/" + name)
                try FileSystem.symlink(target: target, at: dir + "/" + name)
            }
        } catch {
            throw SSIError("loadlevel", "\(dir): \(error)")
        }
    }

    /// One rebalancing step: the busiest leveled process goes to the
    /// lightest node, if the loads say so (`Leveler.rebalance`).
    func rebalanceOnce() throws(SSIError) {
        let settings = try LoadLevelSettings.read(root: options.systemRoot)
        let up = peers().filter(\.value.up).keys
        let enabled = Set(up.filter { settings.enabled(on: $0) })
        let loads = NodeLoads.read(directory: options.stateDirectory).byNode
        guard Leveler.rebalance(local: localNode, loads: loads, enabled: enabled) != nil else { return }
        let now = Process.now()
        let recent = levelMoves.withLock { m -> [pid_t: Double] in
            m = m.filter { now - $0.value < Leveler.cooldownSeconds }
            return m
        }
        // After a move, the loads published next show it: until then
        // (`settleSeconds`) nothing more moves from here.
        guard now - lastLevelMove.current >= Leveler.settleSeconds else { return }
        let names = Set(try LoadLevelList.read(root: options.systemRoot))
        guard let pid = LeveledProcesses.busiest(named: names, excluding: Set(recent.keys), isHere: { self.isHere($0) }) else { return }
        // A process that came from elsewhere cannot go back to its home.
        let home = deputyHomes.withLock { $0[pid] }
        guard let target = Leveler.rebalance(local: localNode, loads: loads, enabled: enabled, excluding: home.map { [$0] } ?? []) else { return }
        levelMoves.withLock { $0[pid] = now }
        lastLevelMove.withLock { $0 = now }
        trace("load leveling: moving \(pid) to node \(target) (loads: \(loads.keys.sorted().map { "\($0)=\(loads[$0]!.hundredths)/\(loads[$0]!.cpus)" }.joined(separator: " ")))")
        startThread { [self] in
            let answers = RecordedReplies()
            do throws(SSIError) {
                try migrate(pid: pid, to: target, tree: false, uid: 0, throughRoot: false, precopy: true, reply: answers)
                trace("load leveling: \(pid): \(answers.last)")
            } catch {
                trace("load leveling: \(pid) stays: \(error.description)")
            }
        }
    }
}

/// The running leveled processes, as the leveler sees them: started
/// under ssi-ll (SSI_LL=1 in their environment, not pinned with
/// SSI_LL_PIN=1) and themselves named in the loadlevellist (their name or
/// argv[0]'s last part): what a leveled program runs in turn (a
/// compiler's cc1, which inherits the environment) stays with it. Moving
/// cc1 in the middle of a compile slowed a build and wrote its assembly
/// through a stream home.
enum LeveledProcesses {
    /// The one with the most CPU time of those running now, with at least
    /// `Leveler.minimumCPUSeconds` and no children.
    static func busiest(named names: Set<String>, excluding: Set<pid_t>, isHere: (pid_t) -> Bool) -> pid_t? {
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        var best: (pid_t, Double)?
        for name in (try? FileSystem.list("/proc")) ?? [] {
            guard let pid = pid_t(name), pid > 1, !excluding.contains(pid),
                  let stat = try? FileSystem.readText("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { continue }
            let f = stat[stat.index(after: close)...].split(separator: " ")
            // state ... utime (12th after the command) stime (13th)
            guard f.count > 13, f[0] == "R", let ut = Double(f[11]), let st = Double(f[12]) else { continue }
            let cpu = (ut + st) / ticks
            guard cpu >= Leveler.minimumCPUSeconds else { continue }
            let comm = ((try? FileSystem.readText("/proc/\(pid)/comm")) ?? "").trimmingCharacters(in: "\n")
            let arg0 = basename(of: ProcessInspector.arguments(pid).first ?? "")
            guard names.contains(comm) || names.contains(arg0) else { continue }
            guard let env = try? FileSystem.readFile("/proc/\(pid)/environ") else { continue }
            let vars = env.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            guard vars.contains("SSI_LL=1"), !vars.contains("SSI_LL_PIN=1") else { continue }
            guard ((try? FileSystem.readText("/proc/\(pid)/task/\(pid)/children")) ?? "").isEmpty, isHere(pid) else { continue }
            if best == nil || cpu > best!.1 { best = (pid, cpu) }
        }
        return best?.0
    }
}

/// The leveler's own moves answer to no command: their replies are kept
/// for its log line.
final class RecordedReplies: MessageChannel, @unchecked Sendable {
    private let messages = Locked<[Fields]>([])
    func send(_ type: UInt8, _ payload: [UInt8]) throws(SSIError) {
        if type == Wire.fields, let f = try? Fields.decode(payload) { messages.withLock { $0.append(f) } }
    }
    func receive() throws(SSIError) -> (UInt8, [UInt8])? { nil }
    func close() {}
    var last: String {
        guard let f = messages.current.last else { return "no answer" }
        return f.op == "migrated" ? "moved to node \(f["node"] ?? "?") (frozen \(f["freeze_ms"] ?? "?") ms)" : "\(f.op): \(f["message"] ?? "")"
    }
}
