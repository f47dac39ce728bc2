import Foundation
import PGTestSupport
import Postgres
import XCTest

/// `nexjobs schedules ...` and `nexjobs scheduler --once`, run as the built binary.
final class SchedulesCommandTests: XCTestCase {
    func run(_ args: [String], _ db: TestDatabase) async throws -> (Int32, String) {
        try await NexjobsProcess.run(args, databaseURL: db.url)
    }

    func testListShowsTheSeededDefaultsAsTableAndJSON() async throws {
        let db = try await TestDatabase.create()
        let (status, text) = try await run(["schedules", "list"], db)
        XCTAssertEqual(status, 0, text)
        for name in ["maintenance.rescue", "maintenance.prune", "retention_purge"] {
            XCTAssertTrue(text.contains(name), text)
        }
        XCTAssertTrue(text.contains("17 * * * *"), text)
        let (jsonStatus, json) = try await run(["schedules", "list", "--json"], db)
        XCTAssertEqual(jsonStatus, 0, json)
        let parsed = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]]
        let purge = parsed?.first { $0["name"] as? String == "retention_purge" }
        XCTAssertEqual(purge?["kind"] as? String, "retention_purge")
        XCTAssertEqual(purge?["timezone"] as? String, "UTC")
        // Seeded disabled until its handler existed; sql/023 enables it on the default queue.
        XCTAssertEqual(purge?["enabled"] as? Bool, true)
        XCTAssertEqual(purge?["queue"] as? String, "default")
        await db.drop()
    }

    func testAddDisableEnableRemoveRoundTripThroughTheTable() async throws {
        let db = try await TestDatabase.create()
        let (added, addText) = try await run(
            [
                "schedules", "add", "weekly", "--cron", "0 6 * * MON", "--timezone", "Europe/Paris",
                "--kind", "weekly_report", "--args", #"{"account": "7123456789012345678"}"#, "--priority", "5",
            ], db)
        XCTAssertEqual(added, 0, addText)
        let row = try await db.pool.query(
            """
            SELECT cron, timezone, kind, args->>'account', priority, enabled FROM nexjobs.schedules WHERE name = 'weekly'
            """
        ).first
        XCTAssertEqual(try row?.decode(0, as: String.self), "0 6 * * MON")
        XCTAssertEqual(try row?.decode(1, as: String.self), "Europe/Paris")
        XCTAssertEqual(try row?.decode(2, as: String.self), "weekly_report")
        XCTAssertEqual(try row?.decode(3, as: String.self), "7123456789012345678")
        XCTAssertEqual(try row?.decode(4, as: Int.self), 5)
        XCTAssertEqual(try row?.decode(5, as: Bool.self), true)

        let (dup, dupText) = try await run(["schedules", "add", "weekly", "--cron", "@daily", "--kind", "x"], db)
        XCTAssertEqual(dup, 3, dupText)
        let (replaced, replacedText) = try await run(
            ["schedules", "add", "weekly", "--cron", "@daily", "--kind", "x", "--replace"], db)
        XCTAssertEqual(replaced, 0, replacedText)

        let (disabled, _) = try await run(["schedules", "disable", "weekly"], db)
        XCTAssertEqual(disabled, 0)
        let enabled: Bool = try await db.pool.query("SELECT enabled FROM nexjobs.schedules WHERE name = 'weekly'")
            .first!.decode(0)
        XCTAssertFalse(enabled)
        let (reenabled, _) = try await run(["schedules", "enable", "weekly"], db)
        XCTAssertEqual(reenabled, 0)
        let (removed, _) = try await run(["schedules", "remove", "weekly"], db)
        XCTAssertEqual(removed, 0)
        let left: Int = try await db.pool.query("SELECT count(*) FROM nexjobs.schedules WHERE name = 'weekly'")
            .first!.decode(0)
        XCTAssertEqual(left, 0)
        let (missing, missingText) = try await run(["schedules", "remove", "weekly"], db)
        XCTAssertEqual(missing, 3, missingText)
        await db.drop()
    }

    func testInvalidDefinitionsAreUsageErrorsAndChangeNothing() async throws {
        let db = try await TestDatabase.create()
        let cases: [[String]] = [
            ["schedules", "add", "a", "--cron", "0 25 * * *", "--kind", "k"],
            ["schedules", "add", "a", "--cron", "0 3 * * *", "--timezone", "Europe/Atlantis", "--kind", "k"],
            ["schedules", "add", "a", "--cron", "@every 100ms", "--kind", "k"],
            ["schedules", "add", "a", "--cron", "@daily", "--kind", "k", "--args", "[]"],
            ["schedules", "add", "a", "--kind", "k"],
            ["schedules", "frobnicate"],
        ]
        for args in cases {
            let (status, text) = try await run(args, db)
            XCTAssertEqual(status, 2, "\(args): \(text)")
            XCTAssertTrue(text.contains("error:"), text)
        }
        let n: Int = try await db.pool.query("SELECT count(*) FROM nexjobs.schedules WHERE name = 'a'").first!.decode(0)
        XCTAssertEqual(n, 0)
        await db.drop()
    }

    func testEverySubcommandHasHelp() async throws {
        for sub in [
            ["schedules", "list"], ["schedules", "add"], ["schedules", "enable"], ["schedules", "disable"],
            ["schedules", "remove"], ["schedules"], ["scheduler"],
        ] {
            let (status, text) = try await NexjobsProcess.run(sub + ["--help"], databaseURL: nil)
            XCTAssertEqual(status, 0, text)
            XCTAssertTrue(text.contains("Usage: nexjobs"), text)
        }
    }

    func testOnceRunsOneTickAsLeaderAndRefusesWhenAnotherLeads() async throws {
        let db = try await TestDatabase.create()
        try await db.pool.execute("INSERT INTO nexcomet.organizations (id, name) VALUES (1, 'o')")
        try await db.pool.execute(
            """
            INSERT INTO nexcomet.ad_connections (organization_id, platform, next_sync_at)
            SELECT 1, 'tiktok', now() - interval '1 minute' FROM generate_series(1, 25)
            """)
        let (status, text) = try await run(["scheduler", "--once", "--json"], db)
        XCTAssertEqual(status, 0, text)
        let line = text.split(separator: "\n").first { $0.hasPrefix("{") }.map(String.init) ?? ""
        let parsed = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        XCTAssertEqual(parsed?["sync_connection"] as? Int, 25, text)
        XCTAssertNotNil(parsed?["elapsed_ms"] as? Double, text)
        // It released leadership on the way out.
        let live: Int = try await db.pool.query("SELECT count(*) FROM nexjobs.leader WHERE term_until > now()")
            .first!.decode(0)
        XCTAssertEqual(live, 0)
        try await db.pool.execute("SELECT nexjobs.leader_acquire('scheduler', 'someone-else', '1 minute')")
        let (refused, refusedText) = try await run(["scheduler", "--once"], db)
        XCTAssertEqual(refused, 3, refusedText)
        await db.drop()
    }
}
