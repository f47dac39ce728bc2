import Foundation
import PGTestSupport
import Postgres
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// Every command and subcommand of the CLI, each of its flags, positionals, numeric environment settings and
/// standard input, fed hostile values. The list of commands, subcommands, flags and environment variables is read
/// from the binary's own `--help` texts, so a new command or flag is covered without editing this test.
///
/// Asserts: no process dies by a signal; every exit is 0, 2 or 3 (a long-running command that accepted its input
/// may also still be running at the deadline, then it is killed); an exit 2 says "error" or "usage"; and every case
/// that exits 2 changes nothing: they are all run again against a second database and a digest of every table in
/// schemas nexjobs and nexcomet is equal before and after.
final class HostileInputTests: XCTestCase {
    /// Values given to every flag, positional and environment setting. Raw bytes: some are not UTF-8.
    static let hostileValues: [[UInt8]] = {
        let texts = [
            "99999999999999999999999", "1e300", "-1", "0", "nan", "inf", "9223372036854775808", "", "2026-13-45",
            "-infinity", "0044-03-15 00:00:00 BC", "200000-01-01T00:00:00Z", "1e300s",
        ]
        // 100 KiB: one argument (or environment string) may not exceed 128 KiB on Linux; 1 MB goes through stdin.
        return texts.map { Array($0.utf8) } + [
            Array(repeating: UInt8(ascii: "x"), count: 100_000), [0xff, 0xfe, 0x41, 0xc3],
        ]
    }()

    /// The values also given as `--flag=VALUE` (the parser splits at the first `=`; a few suffice).
    static let equalsFormValues: Set<[UInt8]> = [[], Array("1e300".utf8), [0xff, 0xfe, 0x41, 0xc3]]

    /// The values given to each numeric environment setting.
    static let environmentValues: [[UInt8]] =
        ["1e300", "-1", "nan", "inf", "", "9223372036854775808"].map { Array($0.utf8) } + [[0xff, 0xfe, 0x41, 0xc3]]

    /// What standard input gets for commands that read it (`connections add`): tokens with hostile lifetimes,
    /// 1 MB of text, bytes that are not UTF-8.
    static let hostileStdin: [[UInt8]] = [
        Array(#"{"access_token":"a","expires_in":1e300}"#.utf8), Array(#"{"access_token":"a","expires_in":-1}"#.utf8),
        Array(#"{"access_token":"a","expires_in":9223372036854775808}"#.utf8),
        Array(#"{"access_token":"a","expires_in":"inf"}"#.utf8), Array(repeating: UInt8(ascii: "t"), count: 1_000_000),
        [0xff, 0xfe, 0x0a, 0x80], [],
    ]

    /// Valid arguments that let a case reach past "missing argument" checks, for the commands that exist today.
    /// Commands not listed here still get every hostile value, with no baseline.
    static let baselines: [String: [String]] = [
        "enqueue": ["noop"], "jobs show": ["1"], "jobs retry": ["1"], "jobs cancel": ["1"],
        "schedules add": ["h1", "--cron", "@every 1h", "--kind", "noop"], "schedules enable": ["hostile_seed"],
        "schedules disable": ["hostile_seed"], "schedules remove": ["hostile_seed"], "orgs add": ["acme"],
        "connections add": ["--org", "1", "--platform", "tiktok"], "scheduler": ["--once"],
        "serve": ["--listen", "127.0.0.1:0"], "sandbox": ["--port", "0"],
    ]
    static let validStdin = Array(#"{"access_token":"hostile-a","expires_in":3600}"#.utf8)
    /// Commands that serve until stopped: killed at the deadline when they accepted their input.
    static let longRunning: Set<String> = ["worker", "scheduler", "serve", "sandbox"]

    struct Case: Sendable {
        var unit: String
        var argv: [[UInt8]]
        var env: [String: [UInt8]] = [:]
        var stdin: [UInt8] = []
        var label: String
    }

    struct Outcome: Sendable {
        var exitCode: Int32?
        var signal: Int32?
        var timedOut: Bool
        var output: String
    }

    func testEveryCommandSurvivesHostileInput() async throws {
        let first = try await TestDatabase.create("hostile_a")
        let second = try await TestDatabase.create("hostile_b")
        defer {
            Task {
                await first.drop()
                await second.drop()
            }
        }
        try await seed(first)
        try await seed(second)

        let cases = try await discoverCases()
        XCTAssertGreaterThan(cases.count, 500, "the help texts yielded too few cases")
        let units = Set(cases.map(\.unit))
        for expected in [
            "migrate", "worker", "scheduler", "enqueue", "jobs list", "jobs show", "jobs retry",
            "jobs cancel", "stats", "schedules list", "schedules add", "schedules enable",
            "schedules disable", "schedules remove", "serve", "sandbox", "orgs add", "connections add",
            "connections list", "keys rotate",
        ] {
            XCTAssertTrue(units.contains(expected), "help discovery missed '\(expected)': \(units.sorted())")
        }
        let started = ContinuousClock.now

        // Phase 1: every case against the first database.
        let outcomes = await runAll(cases, databaseURL: first.url)
        var usageCases: [Case] = []
        var failures: [String] = []
        for (c, o) in zip(cases, outcomes) {
            if let sig = o.signal, !o.timedOut {
                failures.append("\(c.label): killed by signal \(sig): \(o.output.prefix(300))")
                continue
            }
            if o.timedOut {
                if !Self.longRunning.contains(c.unit.split(separator: " ").first.map(String.init) ?? "") {
                    failures.append("\(c.label): still running at the deadline")
                }
                continue
            }
            switch o.exitCode {
            case 0: break
            case 2:
                let text = o.output.lowercased()
                if !(text.contains("error") || text.contains("usage")) {
                    failures.append("\(c.label): exit 2 without an error message: \(o.output.prefix(200))")
                }
                usageCases.append(c)
            case 3:
                if o.output.isEmpty { failures.append("\(c.label): exit 3 without a message") }
            default:
                failures.append("\(c.label): exit \(o.exitCode.map(String.init) ?? "?"): \(o.output.prefix(300))")
            }
        }

        // Phase 2: the cases that exited 2, all again against the second database: nothing may change.
        let before = try await digest(second)
        let again = await runAll(usageCases, databaseURL: second.url)
        let after = try await digest(second)
        for (c, o) in zip(usageCases, again) where o.exitCode != 2 || o.signal != nil {
            failures.append(
                "\(c.label): exit 2 on the first database, \(o.exitCode.map(String.init) ?? "signal") on the second")
        }
        XCTAssertEqual(before, after, "a command that exited 2 changed the database")
        for f in failures { print("hostile input failure: \(f)") }
        XCTAssertTrue(failures.isEmpty, "\(failures.count) failures:\n" + failures.prefix(40).joined(separator: "\n"))
        print("hostile input: \(cases.count) cases, \(usageCases.count) exit 2, in \(ContinuousClock.now - started)")
    }

    // MARK: Discovery from the help texts

    func help(_ args: [String]) async throws -> String {
        let (_, out) = try await NexjobsProcess.run(args + ["--help"], databaseURL: nil)
        return out
    }

    func discoverCases() async throws -> [Case] {
        let top = try await help([])
        let commandsSection =
            top.components(separatedBy: "Commands:").dropFirst().first?
            .components(separatedBy: "\n\n").first ?? ""
        let commands = commandsSection.split(separator: "\n").compactMap { line in
            line.split(separator: " ").first.map(String.init)
        }
        XCTAssertTrue(commands.contains("enqueue") && commands.contains("sandbox"), "commands: \(commands)")
        let envNames = Set(matches(#"NEXJOBS_[A-Z_]+"#, in: top)).subtracting(["NEXJOBS_TOKEN_KEYS"]).sorted()
        XCTAssertTrue(envNames.contains("NEXJOBS_SYNC_RETENTION_FREE"), "environment: \(envNames)")

        var cases: [Case] = []
        for command in commands {
            let commandHelp = try await help([command])
            var subs = Set<String>()
            for group in matches("nexjobs \(command) <([a-z|]+)>", in: commandHelp, group: 1) {
                subs.formUnion(group.split(separator: "|").map(String.init))
            }
            for word in matches("nexjobs \(command) ([a-z]+)(?=[ \\n]|$)", in: commandHelp, group: 1) {
                subs.insert(word)
            }
            let units: [[String]] = subs.isEmpty ? [[command]] : subs.sorted().map { [command, $0] }
            for unit in units {
                let unitHelp = unit.count == 2 ? try await help(unit) + commandHelp : commandHelp
                cases += makeCases(unit: unit, help: unitHelp)
            }
        }
        // Environment settings, read by the scheduler (run once) before it starts.
        for name in envNames {
            for v in Self.environmentValues {
                cases.append(
                    Case(
                        unit: "scheduler", argv: bytes(["scheduler", "--once"]), env: [name: v],
                        label: "\(name)=\(show(v)) nexjobs scheduler --once"))
            }
        }
        return cases
    }

    func makeCases(unit: [String], help: String) -> [Case] {
        let key = unit.joined(separator: " ")
        let baseline = Self.baselines[key] ?? []
        let readsStdin = help.contains("STDIN") || help.contains("< tokens")
        let stdin = readsStdin ? Self.validStdin : []
        let flags = Set(matches(#"--[a-z][a-z0-9-]+"#, in: help)).subtracting(["--help"]).sorted()
        // Positionals: the upper-case words right after the unit in its usage line (KIND, NAME, ID).
        let usage =
            matches(
                "\(NSRegularExpression.escapedPattern(for: unit.last!)) ((?:[A-Z][A-Z_]* ?)+)", in: help,
                group: 1
            ).first ?? ""
        let positionals = usage.split(separator: " ").count
        var cases: [Case] = []
        func add(_ args: [[UInt8]], _ label: String, stdin input: [UInt8]? = nil) {
            cases.append(
                Case(
                    unit: key, argv: bytes(unit) + args, stdin: input ?? stdin,
                    label: "nexjobs \(key) \(label)"))
        }
        let base = bytes(baseline)
        let basePositionals = Array(base.prefix { !$0.starts(with: Array("--".utf8)) })
        let baseOptions = Array(base.dropFirst(basePositionals.count))
        for v in Self.hostileValues {
            // Each positional slot in turn.
            for slot in 0..<positionals {
                var p = basePositionals
                while p.count < positionals { p.append(Array("x".utf8)) }
                p[slot] = v
                add(p + baseOptions, "<positional \(slot)>=\(show(v))")
            }
            // Each flag in turn, as `--flag VALUE` and `--flag=VALUE`.
            for flag in flags {
                let options = replacing(flag, in: baseOptions)
                add(basePositionals + options + [Array(flag.utf8), v], "\(flag) \(show(v))")
                if Self.equalsFormValues.contains(v) {
                    add(basePositionals + options + [Array(flag.utf8) + [UInt8(ascii: "=")] + v], "\(flag)=\(show(v))")
                }
            }
        }
        // A flag without its value, and hostile standard input.
        for flag in flags {
            add(basePositionals + replacing(flag, in: baseOptions) + [Array(flag.utf8)], "\(flag) <no value>")
        }
        if readsStdin {
            for input in Self.hostileStdin { add(base, "< \(show(input))", stdin: input) }
        }
        return cases
    }

    func replacing(_ flag: String, in options: [[UInt8]]) -> [[UInt8]] {
        var out: [[UInt8]] = []
        var i = 0
        while i < options.count {
            if options[i] == Array(flag.utf8) {
                let valued = i + 1 < options.count && !options[i + 1].starts(with: Array("--".utf8))
                i += valued ? 2 : 1
                continue
            }
            out.append(options[i])
            i += 1
        }
        return out
    }

    func matches(_ pattern: String, in text: String, group: Int = 0) -> [String] {
        guard let re = try? NSRegularExpression(pattern: pattern) else { return [] }
        let ns = text as NSString
        return re.matches(in: text, range: NSRange(location: 0, length: ns.length)).compactMap { m in
            let r = m.range(at: group)
            return r.location == NSNotFound ? nil : ns.substring(with: r)
        }
    }

    func bytes(_ strings: [String]) -> [[UInt8]] { strings.map { Array($0.utf8) } }

    func show(_ v: [UInt8]) -> String {
        if v.count > 40 { return "<\(v.count) bytes>" }
        guard let s = String(bytes: v, encoding: .utf8) else { return "<non-UTF-8 \(v)>" }
        return "'\(s)'"
    }

    // MARK: Running

    /// Runs the cases, 8 at a time, each with a deadline (3 s for long-running commands, 20 s otherwise).
    func runAll(_ cases: [Case], databaseURL: String) async -> [Outcome] {
        let keys = "k1:" + Data((0..<32).map { UInt8($0) }).base64EncodedString()
        var env = ProcessInfo.processInfo.environment
        env["DATABASE_URL"] = databaseURL
        env["NEXJOBS_SQL_DIR"] = TestDatabase.sqlDirectory.path
        env["NEXJOBS_TOKEN_KEYS"] = keys
        env["NEXJOBS_LOG_LEVEL"] = "error"
        let baseEnv = env
        let executable = nexjobsExecutable.path
        return await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                final class Box: @unchecked Sendable {  // guarded by `lock`
                    var results: [Outcome?]
                    init(_ n: Int) { results = [Outcome?](repeating: nil, count: n) }
                }
                let box = Box(cases.count)
                let lock = NSLock()
                let queue = OperationQueue()
                queue.maxConcurrentOperationCount = 8
                for (i, c) in cases.enumerated() {
                    queue.addOperation {
                        let long = Self.longRunning.contains(c.unit.split(separator: " ").first.map(String.init) ?? "")
                        let o = Self.spawn(executable, c, baseEnv: baseEnv, deadline: long ? 3 : 20)
                        lock.lock()
                        box.results[i] = o
                        lock.unlock()
                    }
                }
                queue.waitUntilAllOperationsAreFinished()
                continuation.resume(returning: box.results.map { $0! })
            }
        }
    }

    /// posix_spawn with raw argument bytes (Foundation's Process cannot pass bytes that are not UTF-8), standard
    /// input from a file, output to a file; polls for exit until the deadline, then SIGKILL.
    static func spawn(_ executable: String, _ c: Case, baseEnv: [String: String], deadline seconds: Double) -> Outcome {
        let dir = FileManager.default.temporaryDirectory
        let id = UUID().uuidString
        let inPath = dir.appendingPathComponent("hostile-in-\(id)").path
        let outPath = dir.appendingPathComponent("hostile-out-\(id)").path
        defer {
            unlink(inPath)
            unlink(outPath)
        }
        FileManager.default.createFile(atPath: inPath, contents: Data(c.stdin))
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, inPath, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        func cString(_ b: [UInt8]) -> UnsafeMutablePointer<CChar> {
            let p = UnsafeMutablePointer<CChar>.allocate(capacity: b.count + 1)
            for (i, x) in b.enumerated() { p[i] = CChar(bitPattern: x == 0 ? UInt8(ascii: "?") : x) }
            p[b.count] = 0
            return p
        }
        var argv: [UnsafeMutablePointer<CChar>?] = [cString(Array(executable.utf8))] + c.argv.map(cString) + [nil]
        var envBytes = baseEnv.map { Array("\($0.key)=\($0.value)".utf8) }
        for (k, v) in c.env { envBytes.append(Array("\(k)=".utf8) + v) }
        var envp: [UnsafeMutablePointer<CChar>?] = envBytes.map(cString) + [nil]
        defer {
            for p in argv { p?.deallocate() }
            for p in envp { p?.deallocate() }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, nil, &argv, &envp)
        guard rc == 0 else {
            return Outcome(exitCode: nil, signal: nil, timedOut: false, output: "spawn failed: \(rc)")
        }
        var status: Int32 = 0
        var timedOut = false
        let end = Date().addingTimeInterval(seconds)
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { break }
            if r < 0 && errno != EINTR { break }
            if Date() >= end {
                timedOut = true
                kill(pid, SIGKILL)
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                break
            }
            usleep(10_000)
        }
        let output =
            (try? String(contentsOfFile: outPath, encoding: .utf8))
            ?? String(decoding: FileManager.default.contents(atPath: outPath) ?? Data(), as: UTF8.self)
        let sig = status & 0x7f
        if sig != 0 { return Outcome(exitCode: nil, signal: sig, timedOut: timedOut, output: output) }
        return Outcome(exitCode: (status >> 8) & 0xff, signal: nil, timedOut: timedOut, output: output)
    }

    // MARK: Database

    /// One job (id 1), a schedule `hostile_seed` and an organization (id 1), so commands find real rows.
    func seed(_ db: TestDatabase) async throws {
        try await db.pool.execute("SELECT nexjobs.enqueue('noop')")
        try await db.pool.execute(
            "INSERT INTO nexjobs.schedules (name, cron, timezone, kind, args) VALUES ('hostile_seed', '@every 1h', 'UTC', 'noop', '{}')"
        )
        try await db.pool.execute("INSERT INTO nexcomet.organizations (name, plan) VALUES ('seed', 'free')")
    }

    /// md5 of every row of every table in schemas nexjobs and nexcomet, table by table (names from the catalog).
    func digest(_ db: TestDatabase) async throws -> [String: String] {
        let tables = try await db.pool.query(
            """
            SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
             WHERE schemaname IN ('nexjobs', 'nexcomet') ORDER BY 1
            """)
        var out: [String: String] = [:]
        for t in tables {
            let name: String = try t.decode(0)
            let sum = try await db.pool.query(
                PGQuery(unsafeSQL: "SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM \(name) x")
            )
            out[name] = try sum.first!.decode(0)
        }
        XCTAssertGreaterThan(out.count, 5)
        return out
    }
}
