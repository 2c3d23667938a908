#if canImport(Glibc)
import Glibc
#endif
import CSSIShim
import SSICore
import SSILinux

extension ProcAgent {
    /// `onnode NODE COMMAND...` at home: the command's stdin, stdout and
    /// stderr (handed over by the client) become home channels, and the
    /// target runs the command with stand-ins for them. Returns whether
    /// the client's connection stays open for the exit status.
    /// The command runs as `caller`, whom the kernel named; any identity
    /// in the request (a "client" pid, a uid) is not read.
    func onnode(_ r: OnnodeRequest, fds: [Int32], caller: Caller, client: LocalChannel) throws(SSIError) -> Bool {
        let target = r.node
        guard fds.count == 3 else { throw SSIError("onnode", "the command's stdin, stdout and stderr did not arrive") }
        let session = "\(localNode)-\(UInt32.random(in: 0...UInt32.max))"
        var std: [RunRequest.Stdio] = []
        // One channel for all the descriptors of one terminal or one
        // socket (stdin and stdout on one socketpair end): two channels
        // would both read it and share out its input between them.
        var sharedChannel: [String: (ShipKind, String)] = [:]
        var made: [String] = []
        for (i, fd) in fds.enumerated() {
            var st = stat()
            fstat(fd, &st)
            let kind: ShipKind
            let key: String?
            if isatty(fd) != 0 {
                kind = .tty
                key = "tty \(st.st_rdev)"
            } else if st.st_mode & S_IFMT == S_IFSOCK {
                kind = .socket
                key = "socket \(st.st_ino)"
            } else {
                kind = i == 0 ? .pipeIn : .pipeOut
                key = nil
            }
            if let key, let (k, ch) = sharedChannel[key] {
                std.append(RunRequest.Stdio(index: i, spec: ShipSpec(resource: "-", kind: k, home: localNode, channel: ch)))
                close(fd)
                continue
            }
            let channel = "\(session).\(i)"
            homes.add(HomeChannel(id: channel, kind: kind, fd: fd, passesHalfClose: false))
            made.append(channel)
            if let key { sharedChannel[key] = (kind, channel) }
            std.append(RunRequest.Stdio(index: i, spec: ShipSpec(resource: "-", kind: kind, home: localNode, channel: channel)))
        }
        let persistent = r.persistent
        do throws(SSIError) {
            let c = try connect(target)
            defer { c.close() }
            // Who it runs as: the kernel's word (Caller), the uid and gid
            // as runIdentity takes them (0...Int32.max; Caller refused
            // (uid_t)-1 already).
            guard let uid = Int32(exactly: caller.uid), let gid = Int32(exactly: caller.gid) else {
                throw SSIError("onnode", "uid \(caller.uid) or gid \(caller.gid) cannot run a command on another node")
            }
            let run = RunRequest(cwd: r.cwd, uid: uid, gid: gid, groups: caller.groups, argv: r.argv, environment: r.environment,
                                 stdio: std, session: persistent ? nil : session)
            try c.send(PeerRequest.run(run).encode())
            let answer = try c.expectFields("node \(target)'s answer")
            let pid: pid_t
            do throws(ProcMessageError) {
                switch try PeerReply.decode(answer) {
                case .started(let p): pid = p
                case .error(let message): throw ProcMessageError.refused(SSIError("onnode", message))
                default: throw ProcMessageError.unknownOp(answer.op)
                }
            } catch {
                if case .refused(let e) = error { throw e }
                throw SSIError("onnode", "node \(target)'s answer: \(error.description)", hint: error.hint)
            }
            if !persistent { sessions.withLock { $0[session] = client } }
            try client.send(LocalReply.started(pid: pid, node: target).encode())
            if !persistent {
                // onnode's signals (SIGINT, SIGTERM, ...) reach the command
                // wherever it runs by then. This thread owns the client's
                // connection: it closes it when onnode goes.
                startThread { [self] in
                    while let m = try? client.receiveFields() {
                        guard case .signal(let sig)? = try? LocalRequest.decode(m) else {
                            trace("onnode session \(session): ignored \(printable(m.op.prefix(40)))")
                            continue
                        }
                        forwardSignal(sig, to: pid, uid: caller.uid)
                    }
                    sessions.withLock { m in
                        m.removeValue(forKey: session)
                        client.close()
                    }
                }
            }
        } catch {
            made.forEach { homes.release($0) }
            throw error
        }
        return !persistent
    }

    /// Sends `sig` to `pid` on the node where it runs now, as user `uid`.
    func forwardSignal(_ sig: Int32, to pid: pid_t, uid: uid_t) {
        guard let node = clusterWhere(pid: pid).first else { return }
        if node == localNode {
            if let problem = signalHere(pid, sig, uid: uid) { trace("signal \(sig) to \(pid): \(problem)") }
            return
        }
        do throws(SSIError) {
            let c = try connect(node, timeoutSeconds: 5)
            defer { c.close() }
            try c.send(PeerRequest.kill(pid: pid, signal: sig, uid: uid).encode())
            let r = try c.expectFields("node \(node)'s answer")
            if case .error(let message)? = try? PeerReply.decode(r) { trace("signal \(sig) to \(pid) on node \(node): \(message)") }
        } catch {
            trace("signal \(sig) to \(pid) on node \(node): \(error.description)")
        }
    }

    /// ssi kill: `sig` to `pid` on the node where it runs (not its
    /// deputy: the process itself), as user `uid`.
    func killAnywhere(_ pid: pid_t, _ sig: Int32, uid: uid_t) throws(SSIError) {
        guard let node = clusterWhere(pid: pid).first else { throw SSIError("kill", "(\(pid)): no such process on any node") }
        if node == localNode {
            if let problem = signalHere(pid, sig, uid: uid) { throw SSIError("kill", "(\(pid)): \(problem)") }
            return
        }
        let c = try connect(node, timeoutSeconds: 5)
        defer { c.close() }
        try c.send(PeerRequest.kill(pid: pid, signal: sig, uid: uid).encode())
        let r = try c.expectFields("node \(node)'s answer")
        if case .error(let message)? = try? PeerReply.decode(r) { throw SSIError("kill", "(\(pid)) on node \(node): \(message)") }
    }

    /// kill(2) for a user: nil, or why not. The owner is read from the
    /// process's real and saved uids (/proc/PID/status), as the kernel's
    /// own rule does: the effective uid alone (the owner of /proc/PID)
    /// would let a user signal a root process that took their uid as its
    /// effective one for a moment, and refuse a setuid program they started.
    func signalHere(_ pid: pid_t, _ sig: Int32, uid: uid_t) -> String? {
        guard (0...64).contains(sig) else { return "signal \(sig) is not a signal (0 to 64)" }
        guard isHere(pid), let status = ProcessStatus.of(pid) else { return "no such process on node \(localNode)" }
        guard status.signallable(by: uid) else { return "process \(pid) belongs to \(status.ownerDescription), not to uid \(uid)" }
        var sent = sig
        if [SIGTSTP, SIGTTIN, SIGTTOU].contains(sig), deputyHomes.withLock({ $0[pid] }) != nil,
           !ProcessInspector.handles(pid, signal: sig) {
            // A restored process's group is orphaned here (its parent is
            // this agent, in another session), and the kernel discards
            // these three stop signals for an orphaned group. At its home
            // (where the signal was meant: its deputy got it) the group is
            // its shell's job: the signal's default, a stop, is done by
            // SIGSTOP, and the stop is reported home as this signal.
            sent = SIGSTOP
            convertedStops.withLock { $0[pid] = sig }
            trace("signal \(sig) to \(pid), whose deputy is at home: sent as SIGSTOP, reported as \(sig)")
        }
        guard kill(pid, sent) == 0 else {
            let e = errno
            return "kill: \(errnoDescription(e))"
        }
        return nil
    }

    /// Who the command of a "run" request runs as: the uid, gid and groups
    /// the caller's home agent took from the kernel. Each must be there and
    /// valid: a missing or bad uid is refused, never read as 0 (root), and
    /// one beyond Int32 (the spawn's "no change" is a negative uid) too.
    static func runIdentity(_ f: Fields, from peer: UInt32) throws(SSIError) -> (uid: Int32, gid: Int32, groups: [gid_t]) {
        func id(_ key: String) throws(SSIError) -> Int32 {
            guard let text = f[key], let n = UInt32(text), n <= UInt32(Int32.max) else {
                throw SSIError("onnode", "node \(peer)'s request has no valid \(key) (\(f[key].map { quotedString(String($0.prefix(20))) } ?? "none")): the command is not run",
                               hint: "the caller's \(key) must be 0 to \(Int32.max); are both nodes running the same ssi?")
            }
            return Int32(n)
        }
        let uid = try id("uid"), gid = try id("gid")
        let texts = f.all("group")
        guard texts.count <= Caller.maxGroups else {
            throw SSIError("onnode", "node \(peer)'s request has \(texts.count) groups, more than a process can hold (\(Caller.maxGroups))")
        }
        var groups: [gid_t] = []
        for t in texts {
            guard let g = gid_t(t), g != gid_t.max else {
                throw SSIError("onnode", "node \(peer)'s request has a bad group \(quotedString(String(t.prefix(20)))): the command is not run")
            }
            groups.append(g)
        }
        return (uid, gid, groups)
    }

    /// The target's side of onnode: stand-ins, then the command. `r` was
    /// checked by `RunRequest.decode` (its identity by `runIdentity`).
    func runHere(_ r: RunRequest, peer: UInt32, on c: SecureChannel) throws(SSIError) {
        let argv = r.argv
        var made: [MadeStandIn] = []
        var stdio: [Int32] = [-1, -1, -1]
        var ctty: Int32 = -1
        var byChannel: [String: MadeStandIn] = [:]
        for s in r.stdio {
            let spec = s.spec
            let m: MadeStandIn
            if let existing = byChannel[spec.channel] { m = existing } else {
                do throws(SSIError) { m = try MadeStandIn.make(spec) } catch {
                    for m in made { close(m.processEnd); close(m.agentEnd) }
                    throw error
                }
                byChannel[spec.channel] = m
                made.append(m)
            }
            stdio[s.index] = m.processEnd
            if spec.kind == .tty { ctty = Int32(s.index) }
        }
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { close(null) }
        var job = JobSpec(root: options.systemRoot, cwd: r.cwd, argv: argv, environment: r.environment,
                          fds: stdio.map { $0 < 0 ? null : $0 })
        job.controllingTTY = ctty
        job.uid = r.uid
        job.gid = r.gid
        job.groups = r.groups
        let pid: pid_t
        do throws(SSIError) {
            pid = try reaper.spawn(job)
        } catch {
            for m in made { close(m.processEnd); close(m.agentEnd) }
            throw SSIError("onnode", "node \(localNode): \(error.message)")
        }
        if let s = r.session { exitReports.withLock { $0[pid] = (peer, s) } }
        let stands = made.map { m in
            StandIn(channelID: m.spec.channel, home: m.spec.home, kind: m.spec.kind, fd: m.agentEnd, resource: m.resource,
                    log: { [weak self] in self?.trace($0) })
        }
        for m in made { close(m.processEnd) }
        for s in stands {
            standIns.add(s)
            do throws(SSIError) { try s.start(connect: { (n: UInt32) throws(SSIError) -> SecureChannel in try self.connect(n) }) } catch {
                trace("stand-in \(s.channelID): \(error.description)")
            }
        }
        try c.send(PeerReply.started(pid: pid).encode())
        trace("onnode: started \(pid) `\(argv.joined(separator: " "))` for node \(peer)")
        watchExit(pid, standIns: stands)
    }
}
