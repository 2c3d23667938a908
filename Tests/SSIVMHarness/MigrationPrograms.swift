// Test programs for process migration, put in the root by the VM test
// and the benchmark (ToolsCluster.boot's files): shared, never written
// twice.

public enum MigrationPrograms {
    /// By path in the root.
    public static let all: [String: String] = [
        // A counter kept in memory: a line a second to the cluster
        // root's file (with the node it ran on) and to stdout.
        "/usr/local/bin/ssi-counter": """
            #!/bin/sh
            i=0
            while :; do
                i=$((i+1))
                read -r h < /proc/sys/kernel/hostname
                echo "$i $h" >> /root/counter.log
                echo "line $i"
                sleep 1
            done

            """,
        // An interactive program: echoes each line it reads with the
        // node it runs on, and says its window size on SIGWINCH.
        "/usr/local/bin/ssi-tty-prog": """
            #!/bin/bash
            trap 'echo "winch $(stty size)"' WINCH
            echo "ready $(stty size)"
            while :; do
                if read -r line; then echo "got $line on $(cat /proc/sys/kernel/hostname)"; fi
            done

            """,
        "/usr/local/bin/ssi-echo-server": """
            #!/usr/bin/python3
            import socket, threading
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", 7000))
            s.listen(8)
            def serve(c):
                f = c.makefile("rwb", buffering=0)
                for line in f:
                    c.sendall(b"echo " + line)
                c.close()
            while True:
                c, _ = s.accept()
                threading.Thread(target=serve, args=(c,), daemon=True).start()

            """,
        // A TCP client of node 1's echo server: a ping a second, each
        // reply logged with the node the client runs on.
        "/usr/local/bin/ssi-tcp-client": """
            #!/usr/bin/python3
            import socket, time
            c = socket.create_connection(("10.77.0.1", 7000))
            f = c.makefile("rb")
            i = 0
            while True:
                i += 1
                c.sendall(b"ping %d\\n" % i)
                reply = f.readline().decode().strip()
                host = open("/proc/sys/kernel/hostname").read().strip()
                with open("/root/tcp.log", "a") as log:
                    log.write("%d %s %s\\n" % (i, reply, host))
                time.sleep(1)

            """,
        // Node-local objects: reads 6-byte records from a file in /run (a
        // tmpfs of its node), appends a line a second to another file
        // there, and writes the same line to the kernel log (/dev/kmsg,
        // level 7: not on the console).
        "/usr/local/bin/ssi-local": """
            #!/usr/bin/python3
            import os, time
            inp = os.open("/run/lf/in.txt", os.O_RDONLY)
            out = os.open("/run/lf/out.txt", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            kmsg = os.open("/dev/kmsg", os.O_WRONLY)
            i = 0
            while True:
                i += 1
                rec = b""
                while len(rec) < 6:
                    more = os.read(inp, 6 - len(rec))
                    if not more:
                        break
                    rec += more
                host = open("/proc/sys/kernel/hostname").read().strip()
                line = "%d %s %s" % (i, rec.decode().strip() or "EOF", host)
                os.write(out, (line + "\\n").encode())
                os.write(kmsg, ("<7>ssi-local " + line + "\\n").encode())
                time.sleep(1)

            """,
        // MB of resident memory, then a line a second.
        // A child that ends when a file appears, with the exit code it
        // is given: its parent waits for it at home (the deputy test).
        "/usr/local/bin/ssi-exit-when": """
            #!/usr/bin/python3
            import os, sys, time
            path, code = sys.argv[1], int(sys.argv[2])
            while not os.path.exists(path):
                time.sleep(0.2)
            sys.exit(code)

            """,
        // A CPU spinner for the load leveler: runs until killed.
        "/usr/local/bin/ssi-spin": """
            #!/usr/bin/python3
            n = 0
            while True:
                n += 1

            """,
        "/usr/local/bin/ssi-hog": """
            #!/usr/bin/python3
            import sys, time
            mb = int(sys.argv[1])
            block = bytearray(b"x") * (mb << 20)
            i = 0
            while True:
                i += 1
                with open("/root/hog.log", "a") as log:
                    log.write("%d\\n" % i)
                time.sleep(1)

            """,
        // A parent and its child talking over a socketpair: a ping a half
        // second, the child's answer logged with both nodes to the cluster
        // root's /root/pair.log. Moved with -t, the pair goes with the tree.
        "/usr/local/bin/ssi-pair": """
            #!/usr/bin/python3
            import os, socket, time
            a, b = socket.socketpair()
            if os.fork() == 0:
                a.close()
                f = b.makefile("rw")
                for line in f:
                    f.write("pong %s %s\\n" % (line.split()[1], socket.gethostname()))
                    f.flush()
                os._exit(0)
            b.close()
            f = a.makefile("rw")
            n = 0
            while True:
                n += 1
                f.write("ping %d\\n" % n)
                f.flush()
                reply = f.readline().split()
                with open("/root/pair.log", "a") as log:
                    log.write("%d %s %s %s\\n" % (n, reply[1], reply[2], socket.gethostname()))
                time.sleep(0.5)

            """,
        // Pre-copy's test and benchmark: MB of memory (argv[1]) rewritten
        // 1 MB at a time (argv[2] MB a second, 10 by default) in a ring,
        // each block filled with one byte value that the program
        // remembers; a numbered line with its node to stdout every 5
        // blocks; on SIGUSR1, every block checked against what it
        // remembers ("check ok N" or "check bad:BLOCKS N").
        "/usr/local/bin/ssi-dirtier": """
            #!/usr/bin/python3
            import signal, socket, sys, time
            MB = 1 << 20
            blocks = int(sys.argv[1])
            rate = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
            fills = [bytes([v + 1]) * MB for v in range(8)]
            buf = bytearray(blocks * MB)
            values = [0] * blocks
            for b in range(blocks):
                buf[b * MB:(b + 1) * MB] = fills[0]
            check = False
            def on_usr1(sig, frame):
                global check
                check = True
            signal.signal(signal.SIGUSR1, on_usr1)
            n = line = 0
            start = time.monotonic()
            while True:
                b = n % blocks
                v = (n // blocks + 1) % 8
                buf[b * MB:(b + 1) * MB] = fills[v]
                values[b] = v
                n += 1
                if n % 5 == 0:
                    line += 1
                    print("%d %s %d" % (line, socket.gethostname(), n), flush=True)
                if check:
                    check = False
                    bad = [i for i in range(blocks) if buf[i * MB:(i + 1) * MB] != fills[values[i]]]
                    print("check %s %d" % ("ok" if not bad else "bad:" + ",".join(map(str, bad[:5])), n), flush=True)
                # The pace: n blocks by now. Another node's monotonic clock
                # (after a move) differs: the pace starts again from there.
                ahead = start + n / rate - time.monotonic()
                if ahead < -1.0 or ahead > 1.0:
                    start = time.monotonic() - n / rate
                    ahead = 0.0
                if ahead > 0:
                    time.sleep(ahead)

            """,
    ]

    /// MB of resident memory, then a line a second.
    public static var hog: String { all["/usr/local/bin/ssi-hog"]! }
}
