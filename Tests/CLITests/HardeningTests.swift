import Foundation
import PGTestSupport
import Postgres
import XCTest

/// The failures of issue 10, each reproduced with the built binary: exit 2 with a message naming the input and its
/// range, nothing changed; readers that still work when rows already hold extreme timestamps.
final class HardeningTests: XCTestCase {
    var db: TestDatabase!

    override func setUp() async throws {
        do { db = try await TestDatabase.create(name) } catch {
            XCTFail("\(error)")
            throw error
        }
    }

    override func tearDown() async throws { await db?.drop() }

    func nexjobs(_ args: String..., env: [String: String] = [:]) async throws -> (Int32, String) {
        try await NexjobsProcess.run(args, databaseURL: db.url, environment: env)
    }

    func count(_ table: String) async throws -> Int {
        try await db.pool.query(PGQuery(unsafeSQL: "SELECT count(*)::int FROM \(table)")).first!.decode(0)
    }

    /// Runs `args`, expects exit 2 with every `mentions` in the output, and no new job or schedule.
    func refused(
        _ args: [String], mentions: [String], env: [String: String] = [:], file: StaticString = #filePath,
        line: UInt = #line
    ) async throws {
        let jobs = try await count("nexjobs.jobs")
        let schedules = try await count("nexjobs.schedules")
        let (code, out) = try await NexjobsProcess.run(args, databaseURL: db.url, environment: env)
        XCTAssertEqual(code, 2, "\(args.prefix(6)): \(out.prefix(400))", file: file, line: line)
        for m in mentions {
            XCTAssertTrue(
                out.contains(m), "\(args.prefix(6)) should mention \(m): \(out.prefix(400))", file: file, line: line)
        }
        let jobsAfter = try await count("nexjobs.jobs")
        let schedulesAfter = try await count("nexjobs.schedules")
        XCTAssertEqual(jobsAfter, jobs, "\(args.prefix(6)) changed nexjobs.jobs", file: file, line: line)
        XCTAssertEqual(schedulesAfter, schedules, "\(args.prefix(6)) changed nexjobs.schedules", file: file, line: line)
    }

    func testOverflowingDurationsExit2InsteadOfSIGILL() async throws {
        try await refused(["enqueue", "noop", "--in", "1e300"], mentions: ["--in", "0s...36500d"])
        try await refused(["worker", "--poll", "inf"], mentions: ["--poll", "10ms...1h"])
        try await refused(["worker", "--lease", "inf"], mentions: ["--lease", "1s...1h"])
        try await refused(["worker", "--grace", "nan"], mentions: ["--grace"])
        try await refused(["scheduler", "--tick", "9223372036854775808s"], mentions: ["--tick"])
        try await refused(
            ["schedules", "add", "e", "--cron", "@every 1e300", "--kind", "noop"],
            mentions: ["@every", "1s...3650d"])
        try await refused(
            ["schedules", "add", "e", "--cron", "@every 99999999999d", "--kind", "noop"],
            mentions: ["1s...3650d"])
    }

    func testExpiresInOnStdinIsRangeChecked() async throws {
        let org: Int64 = try await db.pool.query(
            "INSERT INTO nexcomet.organizations (name, plan) VALUES ('o', 'free') RETURNING id"
        ).first!.decode(0)
        let keys = [
            "NEXJOBS_TOKEN_KEYS": "k1:" + Data(repeating: 7, count: 32).base64EncodedString(),
            "DATABASE_URL": db.url,
        ]
        for bad in ["1e300", "-5", "1.5", "true", "9223372036854775808"] {
            let (code, out) = try await NexjobsProcess.run(
                ["connections", "add", "--org", "\(org)", "--platform", "tiktok"],
                input: #"{"access_token":"a","expires_in":\#(bad)}"#, environment: keys)
            XCTAssertEqual(code, 2, "expires_in \(bad): \(out)")
            XCTAssertTrue(out.contains("expires_in") && out.contains("1...315360000"), out)
        }
        let connections = try await count("nexcomet.ad_connections")
        XCTAssertEqual(connections, 0)
        let (code, out) = try await NexjobsProcess.run(
            ["connections", "add", "--org", "\(org)", "--platform", "tiktok"],
            input: #"{"access_token":"a","expires_in":3600}"#, environment: keys)
        XCTAssertEqual(code, 0, out)
    }

    func testImpossibleAndOutOfRangeTimestampsAreRefused() async throws {
        try await refused(["enqueue", "noop", "--run-at", "2026-13-45"], mentions: ["--run-at", "9999-12-31"])
        try await refused(["enqueue", "noop", "--run-at", "2026-02-30T10:00:00Z"], mentions: ["--run-at"])
        try await refused(["enqueue", "noop", "--run-at", "2026-12-01T25:00:00Z"], mentions: ["--run-at"])
        try await refused(["enqueue", "noop", "--run-at", "-infinity"], mentions: ["--run-at"])
        try await refused(["enqueue", "noop", "--run-at", "294277-01-01T00:00:00Z"], mentions: ["--run-at"])
        try await refused(["enqueue", "noop", "--run-at", "0044-03-15 00:00:00 BC"], mentions: ["--run-at"])
        let (code, out) = try await nexjobs("enqueue", "noop", "--run-at", "2026-12-01T09:00:00+02:00")
        XCTAssertEqual(code, 0, out)
        let stored: String = try await db.pool.query(
            "SELECT to_char(run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') FROM nexjobs.jobs"
        ).first!.decode(0)
        XCTAssertEqual(stored, "2026-12-01 07:00")
    }

    func testValuesPostgresWouldRefuseExit2() async throws {
        try await refused(
            ["enqueue", "noop", "--unique-key", String(repeating: "k", count: 9000)],
            mentions: ["--unique-key", "1...1000 bytes"])
        let longCron = (0..<120).map(String.init).joined(separator: ",") + " * * * *"
        try await refused(
            ["schedules", "add", "long", "--cron", longCron, "--kind", "noop"], mentions: ["--cron", "200"])
        try await refused(["enqueue", "noop", "--priority", "40000"], mentions: ["--priority", "-32768...32767"])
        // SQL function errors of class 22 (here: a non-finite run_at given to nexjobs.enqueue) map to exit 2 too.
        do {
            try await db.pool.execute("SELECT nexjobs.enqueue('noop', run_at => '-infinity')")
            XCTFail("nexjobs.enqueue accepted run_at -infinity")
        } catch let e as PGError {
            XCTAssertEqual(e.sqlState, "22008")
            XCTAssertTrue(e.message.contains("finite"), e.message)
        }
        do {
            try await db.pool.execute("SELECT nexjobs.enqueue('noop', run_at => 'infinity')")
            XCTFail("nexjobs.enqueue accepted run_at infinity")
        } catch let e as PGError {
            XCTAssertEqual(e.sqlState, "22008")
        }
        let jobs = try await count("nexjobs.jobs")
        XCTAssertEqual(jobs, 0)
    }

    func testJobArgsAreCheckedForKnownKinds() async throws {
        try await refused(["enqueue", "noop", "--args", #"{"sleep_ms": -1}"#], mentions: ["sleep_ms", "0...86400000"])
        try await refused(["enqueue", "noop", "--args", #"{"sleep_ms": 1e300}"#], mentions: ["noop"])
        try await refused(["enqueue", "retention_purge", "--args", #"{"batch_size": 0}"#], mentions: ["batch_size"])
        try await refused(
            [
                "enqueue", "sync_ad_account", "--args",
                #"{"ad_account_id": 1, "from": "2026-13-45", "to": "2026-01-01"}"#,
            ],
            mentions: ["from and to"])
        // Unknown kinds are another build's business: their args pass when they are a JSON object.
        let (code, out) = try await nexjobs("enqueue", "some_other_kind", "--args", #"{"x": 1e300}"#)
        XCTAssertEqual(code, 0, out)
    }

    func testSchedulesRefuseArgsTheirKindWouldRefuse() async throws {
        try await refused(
            [
                "schedules", "add", "r0", "--kind", "nexjobs.rescue", "--cron", "@every 5s", "--args",
                #"{"batch_size":0}"#,
            ],
            mentions: ["batch_size", "1...100000"])
        try await refused(
            [
                "schedules", "add", "p0", "--kind", "nexjobs.prune", "--cron", "@every 1m", "--args",
                #"{"completed_retention":"-1 day"}"#,
            ], mentions: ["completed_retention"])
        try await refused(
            [
                "schedules", "add", "p1", "--kind", "nexjobs.prune", "--cron", "@every 1m", "--args",
                #"{"completed_retention":"soon"}"#,
            ], mentions: ["completed_retention"])
        try await refused(
            ["schedules", "add", "n0", "--kind", "noop", "--cron", "@every 5s", "--args", #"{"fail_times":-3}"#],
            mentions: ["fail_times"])
        // A schedule written through SQL with args its kind refuses cannot be enabled.
        try await db.pool.execute(
            """
            INSERT INTO nexjobs.schedules (name, cron, timezone, kind, args, enabled)
            VALUES ('bad_rescue', '@every 5s', 'UTC', 'nexjobs.rescue', '{"batch_size": 0}', false)
            """)
        let (code, out) = try await nexjobs("schedules", "enable", "bad_rescue")
        XCTAssertEqual(code, 2, out)
        XCTAssertTrue(out.contains("batch_size"), out)
        let enabled: Bool = try await db.pool.query(
            "SELECT enabled FROM nexjobs.schedules WHERE name = 'bad_rescue'"
        ).first!.decode(0)
        XCTAssertFalse(enabled)
        let (ok, okOut) = try await nexjobs(
            "schedules", "add", "r1", "--kind", "nexjobs.rescue", "--cron", "@every 5s",
            "--args", #"{"batch_size":500}"#)
        XCTAssertEqual(ok, 0, okOut)
    }

    func testEnvironmentSettingsAreRangeChecked() async throws {
        for (name, value) in [
            ("NEXJOBS_SYNC_RETENTION_FREE", "1e300"), ("NEXJOBS_SYNC_LOOKBACK_TIKTOK", "-1"),
            ("NEXJOBS_SYNC_RATE_LIMIT_SNOOZE", "inf"), ("NEXJOBS_RATE_LIMIT_RPS", "nan"),
            ("NEXJOBS_SYNC_TRANSIENT_RETRIES", "99"), ("NEXJOBS_LOG_LEVEL", "loud"),
            ("NEXJOBS_RATE_LIMIT_APP_RPS_TIKTOK", "-1"), ("NEXJOBS_RATE_LIMIT_APP_RPS_SNAPCHAT", "10001"),
            ("NEXJOBS_RATE_LIMIT_APP_RPS_TIKTOK", "0.05"), ("NEXJOBS_SYNC_QUEUE_TIKTOK", "sync tiktok"),
            ("NEXJOBS_SYNC_QUEUE_SNAPCHAT", "a,b"), ("NEXJOBS_SYNC_QUEUE_TIKTOK", "a=8"),
            ("NEXJOBS_SYNC_QUEUE_SNAPCHAT", String(repeating: "q", count: 129)),
            ("NEXJOBS_SYNC_ENTITY_REFRESH", "-5"), ("NEXJOBS_SYNC_RECONCILE", "yes"),
            ("NEXJOBS_SYNC_CALL_PLAN", "cheap"),
        ] {
            try await refused(["worker"], mentions: [name], env: [name: value])
            try await refused(["scheduler", "--once"], mentions: [name], env: [name: value])
            if name.hasPrefix("NEXJOBS_SYNC_QUEUE_") {
                try await refused(["serve", "--listen", "127.0.0.1:0"], mentions: [name], env: [name: value])
            }
        }
        // A console setting out of range is refused even while the console is off (no tokens).
        for (name, value) in [("NEXJOBS_CONSOLE_LOGIN_INTERVAL", "0"), ("NEXJOBS_CONSOLE_SECURE_COOKIE", "yes")] {
            try await refused(["serve", "--listen", "127.0.0.1:0"], mentions: [name], env: [name: value])
        }
        // serve's own settings: a console interval out of range, and a token key ring that is set but malformed
        // (it used to be ignored, leaving the reauthorized webhook answering 503 with nothing said at start).
        let console = "NEXJOBS_CONSOLE_TOKENS"
        for (name, value) in [
            ("NEXJOBS_CONSOLE_LOGIN_INTERVAL", "0"), ("NEXJOBS_CONSOLE_LOGIN_INTERVAL", "2h"),
            ("NEXJOBS_CONSOLE_LOGIN_INTERVAL", "1e9"), ("NEXJOBS_TOKEN_KEYS", "k1:not-base64!"),
            ("NEXJOBS_TOKEN_KEYS", "k1:" + Data(repeating: 7, count: 16).base64EncodedString()),
        ] {
            try await refused(
                ["serve", "--listen", "127.0.0.1:0"], mentions: [name],
                env: [name: value, console: "console-token-0123456789abcdef"])
        }
    }

    func testReadersWorkWithExtremeTimestamps() async throws {
        // Rows written through SQL before migration 026, or straight into the table.
        for v in [
            "-infinity", "infinity", "0044-03-15 00:00:00+00 BC", "200000-01-01 00:00:00+00",
            "4713-01-01 00:00:00+00 BC",
        ] {
            try await db.pool.execute("INSERT INTO nexjobs.jobs (kind, run_at) VALUES ('noop', \(v)::timestamptz)")
        }
        var (code, out) = try await nexjobs("stats")
        XCTAssertEqual(code, 0, out)
        XCTAssertTrue(out.contains("infinite"), out)
        (code, out) = try await nexjobs("stats", "--json")
        XCTAssertEqual(code, 0, out)
        (code, out) = try await nexjobs("jobs", "list")
        XCTAssertEqual(code, 0, out)
        for shown in [
            "-infinity", "infinity", "0044-03-15T00:00:00.000000Z BC", "200000-01-01T00:00:00.000000Z",
            "4713-01-01T00:00:00.000000Z BC",
        ] {
            XCTAssertTrue(out.contains(shown), "jobs list should show \(shown): \(out)")
        }
        (code, out) = try await nexjobs("jobs", "list", "--json")
        XCTAssertEqual(code, 0, out)
        let ids: [Int64] = try await db.pool.query("SELECT id FROM nexjobs.jobs ORDER BY id").map { try $0.decode(0) }
        for id in ids {
            (code, out) = try await nexjobs("jobs", "show", "\(id)")
            XCTAssertEqual(code, 0, out)
            (code, out) = try await nexjobs("jobs", "show", "\(id)", "--json")
            XCTAssertEqual(code, 0, out)
        }
        // The values read back as written: each formats to text PostgreSQL reads as the same instant.
        for row in try await db.pool.query("SELECT run_at, run_at::text FROM nexjobs.jobs") {
            let date: Date = try row.decode(0)
            let same: Bool = try await db.pool.query(
                "SELECT \(PGTimestamp.format(date))::timestamptz = \(row.text(1)!)::timestamptz"
            ).first!.decode(0)
            XCTAssertTrue(same, "\(row.text(1)!) -> \(PGTimestamp.format(date))")
        }
    }

    func testSandboxRefusesAbsurdWorldSizes() async throws {
        for args in [
            ["--accounts-per-connection", "1-1000000000"], ["--accounts-per-connection", "0"],
            ["--accounts-per-connection", "5-2"], ["--days", "99999999"], ["--tiktok-connections", "1000000"],
            ["--snap-token-ttl", "9223372036854775807"], ["--port", "70000"],
        ] {
            let (code, out) = try await NexjobsProcess.run(["sandbox"] + args, databaseURL: nil, timeout: .seconds(20))
            XCTAssertEqual(code, 2, "\(args): \(out)")
            XCTAssertTrue(out.contains(args[0]), "\(args): \(out)")
        }
    }
}
