import SSICore
import SSIMembership
import SSITestSupport
@testable import SSIProcess
import Testing

@Suite struct LoadLevelingTests {
    static func loads(_ pairs: [(UInt32, Double, UInt32)]) -> [UInt32: NodeLoads.Load] {
        var out: [UInt32: NodeLoads.Load] = [:]
        for (n, l, c) in pairs { out[n] = .init(hundredths: UInt32(l * 100), cpus: c) }
        return out
    }

    @Test("placement: here while a CPU is free here; else the lightest node, if lighter by half a process per CPU; off here: here")
    func placement() {
        let idle = Self.loads([(1, 0, 1), (2, 0, 1), (3, 0, 1)])
        #expect(Leveler.place(local: 1, loads: idle, pending: [:], enabled: [1, 2, 3]) == 1, "a free CPU here")
        #expect(Leveler.place(local: 1, loads: idle, pending: [1: 1], enabled: [1, 2, 3]) == 2, "busy here: the lightest, lowest number first")
        #expect(Leveler.place(local: 1, loads: idle, pending: [1: 1, 2: 1], enabled: [1, 2, 3]) == 3, "what was just placed counts")
        #expect(Leveler.place(local: 1, loads: idle, pending: [1: 1, 2: 1, 3: 1], enabled: [1, 2, 3]) == 1, "equal loads: here")
        #expect(Leveler.place(local: 1, loads: idle, pending: [1: 1], enabled: [1, 3]) == 3, "not where leveling is off")
        #expect(Leveler.place(local: 1, loads: idle, pending: [1: 5], enabled: [2, 3]) == 1, "off here: here")
        // Per CPU: node 2 (2 on 4 CPUs: 0.5) is heavier than node 3 (0.2).
        let mixed = Self.loads([(1, 2, 1), (2, 2, 4), (3, 0.2, 1)])
        #expect(Leveler.place(local: 1, loads: mixed, pending: [:], enabled: [1, 2, 3]) == 3)
        #expect(Leveler.place(local: 1, loads: Self.loads([(1, 2, 1), (2, 1.6, 1)]), pending: [:], enabled: [1, 2]) == 1,
                "lighter by less than half a process: here")
        #expect(Leveler.place(local: 1, loads: [:], pending: [:], enabled: [1, 2]) == 1, "no loads known: here")
    }

    @Test("rebalancing: only from a node with more than one runnable process per CPU, to one lighter by a whole one")
    func rebalance() {
        #expect(Leveler.rebalance(local: 1, loads: Self.loads([(1, 3, 1), (2, 0, 1), (3, 1, 1)]), enabled: [1, 2, 3]) == 2)
        #expect(Leveler.rebalance(local: 1, loads: Self.loads([(1, 1, 1), (2, 0, 1)]), enabled: [1, 2]) == nil, "one per CPU is not busy")
        #expect(Leveler.rebalance(local: 1, loads: Self.loads([(1, 1.8, 1), (2, 1, 1)]), enabled: [1, 2]) == nil, "hysteresis: less than one apart")
        #expect(Leveler.rebalance(local: 1, loads: Self.loads([(1, 3, 1), (2, 0, 1)]), enabled: [2]) == nil, "off here")
        #expect(Leveler.rebalance(local: 1, loads: Self.loads([(1, 3, 1), (2, 0, 1)]), enabled: [1]) == nil, "off there")
        #expect(Leveler.rebalance(local: 2, loads: Self.loads([(1, 0, 1), (2, 3, 1), (3, 1, 1)]), enabled: [1, 2, 3], excluding: [1]) == 3,
                "not back to its home (its deputy holds the PID there)")
        #expect(Leveler.rebalance(local: 1, loads: Self.loads([(1, 6, 4), (2, 1, 2)]), enabled: [1, 2]) == 2, "per CPU: 1.5 against 0.5")
    }

    @Test("/etc/ssi/loadlevel: cluster and node lines, comments; a bad line is an error naming the file and line; the text round-trips")
    func settings() throws {
        let s = try LoadLevelSettings.parse("# x\ncluster on\nnode 2 off # not this one\n\n")
        #expect(s.cluster && s.nodes == [2: false] && s.enabled(on: 1) && !s.enabled(on: 2))
        #expect(try LoadLevelSettings.parse(s.text) == s)
        #expect(!LoadLevelSettings().enabled(on: 1), "off by default")
        for (bad, words) in [("cluster maybe", "neither on nor off"), ("node x on", "not a node number"), ("node 0 on", "not a node number"),
                             ("loadlevel on", "is not `cluster on|off`"), ("cluster on off", "is not `cluster on|off`")] {
            #expect {
                _ = try LoadLevelSettings.parse("cluster off\n" + bad + "\n")
            } throws: { e in
                let d = (e as? SSIError)?.description ?? ""
                return d.contains("/etc/ssi/loadlevel:2:") && d.contains(words)
            }
        }
    }

    @Test("the loadlevellist: names, comments, duplicates once; a path or a space is refused with its line")
    func list() throws {
        #expect(try LoadLevelList.parse("cc\n# compilers\ngcc # the GNU one\n\ncc\n") == ["cc", "gcc"])
        #expect(throws: SSIError.self) { try LoadLevelList.parse("cc\n/usr/bin/gcc\n") }
        #expect(throws: SSIError.self) { try LoadLevelList.parse("my prog\n") }
        #expect(throws: SSIError.self) { try LoadLevelList.parse("..\n") }
        #expect(LoadLevelList.defaults.contains("gcc") && LoadLevelList.defaults.contains("cc"))
    }

    @Test("the loads file: lines round-trip; bad lines are skipped; the sampler reads loadavg's running count without itself")
    func loadsFile() {
        let l = NodeLoads(byNode: [1: .init(hundredths: 250, cpus: 2), 3: .init(hundredths: 0, cpus: 1)])
        #expect(NodeLoads.parse(l.text) == l)
        #expect(NodeLoads.parse("1 100 1\n2 x 1\n0 5 1\n4 100001 1\n5 1 0\n6 1 1 1\n7 50 2\n").byNode.keys.sorted() == [1, 7])
        #expect(LoadSampler.runnable(loadavg: "0.52 0.40 0.30 3/211 12345\n") == 2)
        #expect(LoadSampler.runnable(loadavg: "0.00 0.00 0.00 1/90 1\n") == 0)
        #expect(LoadSampler.runnable(loadavg: "garbage") == nil)
        var s = LoadSampler(cpus: 2)
        let first = s.tick(now: 100, loadavg: { "0 0 0 5/10 1" })
        #expect(first == .init(hundredths: 200, cpus: 2), "the first sample is published (half of 4)")
        #expect(s.tick(now: 100.5, loadavg: { "0 0 0 5/10 1" }) == nil, "at most a sample a second")
        #expect(s.tick(now: 101, loadavg: { "0 0 0 5/10 1" }) == .init(hundredths: 300, cpus: 2), "moved by a quarter or more")
        #expect(s.tick(now: 102, loadavg: { "0 0 0 4/10 1" }) == nil, "3.0 -> 3.0: not again")
        #expect(s.tick(now: 112, loadavg: { "0 0 0 4/10 1" }) != nil, "but every 10 s")
    }

    @Test("Fuzz: the leveler's files (loadlevel, loadlevellist, loads) never trap")
    func fuzz() {
        let seeds = Fuzz.seeds(["cluster on\nnode 2 off\n", "cc\ngcc # x\n", "1 100 1\n2 250 4\n"])
        Fuzz.run("load-leveling-files", seeds: seeds, iterations: Fuzz.iterations(default: 400)) { bytes in
            let text = String(decoding: bytes, as: UTF8.self)
            _ = try? LoadLevelSettings.parse(text)
            _ = try? LoadLevelList.parse(text)
            _ = NodeLoads.parse(text)
            _ = LoadSampler.runnable(loadavg: text)
        }
    }
}
