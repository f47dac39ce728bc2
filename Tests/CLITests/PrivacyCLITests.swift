import Foundation
import PGTestSupport
import Postgres
import XCTest

/// `nexjobs privacy ...` as an operator runs it: input checked before anything changes, exit codes 0/2/3.
final class PrivacyCLITests: XCTestCase {
    var db: TestDatabase!

    override func setUp() async throws {
        do { db = try await TestDatabase.create(name) } catch {
            XCTFail("\(error)")
            throw error
        }
    }

    override func tearDown() async throws { await db?.drop() }

    func nexjobs(_ args: String...) async throws -> (Int32, String) {
        try await NexjobsProcess.run(args, databaseURL: db.url)
    }

    func requests() async throws -> Int {
        try await db.pool.query("SELECT count(*)::int FROM nexcomet.privacy_requests").first!.decode(0)
    }

    func testRequestListShowRetryAndBadInput() async throws {
        let org: Int64 = try await db.pool.query(
            "INSERT INTO nexcomet.organizations (name) VALUES ('acme') RETURNING id"
        ).first!.decode(0)
        let other: Int64 = try await db.pool.query(
            "INSERT INTO nexcomet.organizations (name) VALUES ('other') RETURNING id"
        ).first!.decode(0)
        let foreign: Int64 = try await db.pool.query(
            "INSERT INTO nexcomet.users (organization_id, email) VALUES (\(other), 'x@example.com') RETURNING id"
        ).first!.decode(0)
        let (help, helpText) = try await nexjobs("privacy", "--help")
        XCTAssertEqual(help, 0)
        XCTAssertTrue(helpText.contains("Usage: nexjobs privacy"), helpText)
        for (args, needle) in [
            (["--org", "\(org)", "--kind", "delete"], "--kind must be one of"),
            (["--org", "0", "--kind", "export"], "--org must be an integer in 1...9223372036854775807"),
            (["--org", "99999999999999999999", "--kind", "export"], "--org must be an integer"),
            (["--org", "\(org)", "--user", "-1", "--kind", "erase"], "--user must be an integer"),
            (["--kind", "export"], "needs --org"),
        ] {
            let (code, out) = try await NexjobsProcess.run(["privacy", "request"] + args, databaseURL: db.url)
            XCTAssertEqual(code, 2, "\(args): \(out)")
            XCTAssertTrue(out.contains(needle), "\(args): \(out)")
        }
        let (limit, limitText) = try await nexjobs("privacy", "list", "--limit", "0")
        XCTAssertEqual(limit, 2)
        XCTAssertTrue(limitText.contains("--limit") && limitText.contains("1...10000"), limitText)
        let (missing, _) = try await nexjobs("privacy", "request", "--org", "424242", "--kind", "export")
        XCTAssertEqual(missing, 3)
        let (foreignCode, foreignText) = try await nexjobs(
            "privacy", "request", "--org", "\(org)", "--user", "\(foreign)", "--kind", "erase")
        XCTAssertEqual(foreignCode, 3)
        XCTAssertTrue(foreignText.contains("does not belong"), foreignText)
        let none = try await requests()
        XCTAssertEqual(none, 0, "refused input changes nothing")

        let (ok, idText) = try await nexjobs("privacy", "request", "--org", "\(org)", "--kind", "export")
        XCTAssertEqual(ok, 0, idText)
        let id = idText.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertNotNil(Int64(id), idText)
        try await db.pool.execute(
            "UPDATE nexcomet.privacy_requests SET requested_at = now() - interval '31 days' WHERE id = \(Int64(id)!)")
        let (listCode, list) = try await nexjobs("privacy", "list", "--overdue", "--json")
        XCTAssertEqual(listCode, 0)
        XCTAssertTrue(list.contains("\"id\":\(id)") && list.contains("\"overdue\":true"), list)
        let (notFailed, notFailedText) = try await nexjobs("privacy", "retry", id)
        XCTAssertEqual(notFailed, 3)
        XCTAssertTrue(notFailedText.contains("only a failed request"), notFailedText)
        try await db.pool.execute(
            "UPDATE nexcomet.privacy_requests SET status = 'failed', error = 'boom' WHERE id = \(Int64(id)!)")
        let (retried, _) = try await nexjobs("privacy", "retry", id)
        XCTAssertEqual(retried, 0)
        let (showCode, show) = try await nexjobs("privacy", "show", id)
        XCTAssertEqual(showCode, 0)
        XCTAssertTrue(show.contains("status:") && show.contains("pending"), show)
        XCTAssertTrue(show.contains("request_status"), show)
        let (gone, _) = try await nexjobs("privacy", "show", "777777")
        XCTAssertEqual(gone, 3)
        let (statsCode, stats) = try await nexjobs("stats")
        XCTAssertEqual(statsCode, 0)
        XCTAssertTrue(stats.contains("privacy requests: 1 open") && stats.contains("1 overdue"), stats)
    }

    /// `privacy download ID` writes the chunks in order, nothing else; exit 3 for a missing, non-export or
    /// unfinished request, 2 for a bad id.
    func testDownloadStreamsTheChunksInOrderWithExitCodes() async throws {
        let org: Int64 = try await db.pool.query(
            "INSERT INTO nexcomet.organizations (name) VALUES ('acme') RETURNING id"
        ).first!.decode(0)
        func request(_ kind: String, _ status: String) async throws -> Int64 {
            try await db.pool.query(
                """
                INSERT INTO nexcomet.privacy_requests (organization_id, kind, status, completed_at)
                VALUES (\(org), \(kind), \(status), CASE WHEN \(status) = 'completed' THEN now() END) RETURNING id
                """
            ).first!.decode(0)
        }
        let done = try await request("export", "completed")
        // Stored out of order, read in seq order; 25 chunks so several pages are read.
        var expected = ""
        for seq in 0..<25 { expected += "{\"line\": \(seq)}\n" }
        for seq in (0..<25).reversed() {
            try await db.pool.execute(
                """
                INSERT INTO nexcomet.privacy_export_chunks (request_id, seq, body)
                VALUES (\(done), \(seq), \("{\"line\": \(seq)}\n"))
                """)
        }
        let (code, out) = try await nexjobs("privacy", "download", "\(done)")
        XCTAssertEqual(code, 0, out)
        XCTAssertEqual(out, expected)
        let running = try await request("export", "running")
        let erase = try await request("erase", "completed")
        for (id, needle) in [(running, "is running"), (erase, "not an export"), (999_999, "not found")] {
            let (c, text) = try await nexjobs("privacy", "download", "\(id)")
            XCTAssertEqual(c, 3, text)
            XCTAssertTrue(text.contains(needle), text)
        }
        for bad in ["0", "x", "99999999999999999999"] {
            let (c, text) = try await nexjobs("privacy", "download", bad)
            XCTAssertEqual(c, 2, text)
            XCTAssertTrue(text.contains("request id must be an integer"), text)
        }
        let (help, helpText) = try await nexjobs("privacy", "--help")
        XCTAssertEqual(help, 0)
        XCTAssertTrue(helpText.contains("privacy download ID"), helpText)
    }
}
