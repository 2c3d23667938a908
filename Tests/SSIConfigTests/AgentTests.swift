import Testing
@testable import SSIConfig
import SSICore

@Suite struct AgentTests {
    @Test func agentsAreReadInOrder() throws {
        let text = baseCFS + """

            [[agent]]
            name = "migrationd"
            command = ["/usr/sbin/migrationd", "--foreground"]
            files = ["/usr/lib/migrationd/plugin.so"]

            [[agent]]
            name = "fd-ship"
            command = ["/usr/sbin/fdshipd"]

            """
        let c = try valid(text)
        #expect(c.agents.map(\.name) == ["migrationd", "fd-ship"])
        #expect(c.agents[0].command == ["/usr/sbin/migrationd", "--foreground"])
        #expect(c.agents[0].files == ["/usr/lib/migrationd/plugin.so"])
        #expect(c.agents[1].files.isEmpty)
        #expect(c.agents[0].line == line(of: "[[agent]]", in: text))
        #expect(try valid(baseCFS).agents.isEmpty)
    }

    func agent(_ body: String) -> String { baseCFS + "\n[[agent]]\n" + body + "\n" }

    @Test func problemsNameLineAndField() {
        var t = agent("name = \"x\"\ncommand = [\"sbin/x\"]")
        expectOneProblem(t, line: line(of: "command = [\"sbin/x\"]", in: t), field: "agent.command", "not an absolute path")
        t = agent("name = \"corosync\"\ncommand = [\"/usr/sbin/corosync\"]")
        expectOneProblem(t, line: line(of: "name = \"corosync\"", in: t), field: "agent.name", "ssi's own daemon")
        t = agent("name = \"9lives\"\ncommand = [\"/bin/x\"]")
        expectOneProblem(t, line: line(of: "name = \"9lives\"", in: t), field: "agent.name", "not a name")
        t = agent("name = \"x\"\ncommand = []")
        expectOneProblem(t, line: line(of: "command = []", in: t), field: "agent.command", "is empty")
        t = agent("command = [\"/bin/x\"]")
        expectOneProblem(t, line: line(of: "[[agent]]", in: t), field: "agent.name", "missing")
        t = agent("name = \"x\"\ncommand = [\"/bin/x\"]\nfiles = [\"lib/y\"]")
        expectOneProblem(t, line: line(of: "files = [\"lib/y\"]", in: t), field: "agent.files", "not an absolute path")
        t = agent("name = \"x\"\ncommand = [\"/bin/x\"]\nuser = \"nobody\"")
        expectOneProblem(t, line: line(of: "user = \"nobody\"", in: t), field: "agent.user", "unknown key")
    }

    @Test func duplicateNamesPointAtTheFirst() {
        let t = agent("name = \"a\"\ncommand = [\"/bin/a\"]") + "\n[[agent]]\nname = \"a\"\ncommand = [\"/bin/b\"]\n"
        expectOneProblem(t, line: line(of: "name = \"a\"", in: t, occurrence: 2), field: "agent.name",
                         "already the name of the agent at line \(line(of: "[[agent]]", in: t))")
    }

    @Test func agentMustBeAnArrayOfTables() {
        let t = baseCFS + "\n[agent]\nname = \"a\"\ncommand = [\"/bin/a\"]\n"
        expectOneProblem(t, line: line(of: "[agent]", in: t), field: "agent", "[[agent]]")
    }
}
