import Foundation
import HTTP
import Logs
import PGTestSupport
import Postgres
import Runtime
import XCTest

@testable import NexcometJobs

/// The console's pieces against a real database: the escaper, redaction, the job list's query plan, and the
/// "why is this job not running?" explanation. The browser tests (CLITests/ConsoleBrowserTests) drive the pages.
final class ConsoleTests: XCTestCase {
    func testEscaperEscapesEveryMarkupCharacter() {
        XCTAssertEqual(
            HTML.h(#"<script>"a"&'b'</script>"#), "&lt;script&gt;&quot;a&quot;&amp;&#39;b&#39;&lt;/script&gt;")
        XCTAssertEqual(HTML.h("plain é"), "plain é")
    }

    func testSecretLookingKeysAreRedactedAtAnyDepthCaseInsensitively() {
        let text =
            #"{"Access_Token":"t1","nested":{"PASSWORD":"p","list":[{"apiKey":"k","ok":"v"}]},"Authorization":"Bearer x","name":"n"}"#
        let out = Redaction.redactedJSON(text)
        for secret in ["t1", "\"p\"", "\"k\"", "Bearer x"] { XCTAssertFalse(out.contains(secret), out) }
        XCTAssertTrue(out.contains("\"ok\" : \"v\""), out)
        XCTAssertTrue(out.contains("\"name\" : \"n\""), out)
        XCTAssertEqual(out.components(separatedBy: "[redacted]").count - 1, 4, out)
        XCTAssertEqual(
            Redaction.scrubText("refresh failed: access_token=abc123 expired"),
            "refresh failed: access_token=[redacted] expired")
    }

    /// Login attempts from one address are spaced (`ConsoleAccess.loginInterval`, kept in `nexjobs.rate_limits` so
    /// every `serve` process shares it): an attempt too soon is refused with 429 and Retry-After before its token is
    /// checked (a right token then is refused too), another address is not held up, and once the interval has passed
    /// (its row moved into the past here, instead of waiting) the right token logs in.
    func testLoginAttemptsAreSpacedPerAddress() async throws {
        let db = try await TestDatabase.create()
        addTeardownBlock { await db.drop() }
        let token = "console-login-test-token-0123456789"
        var access = ConsoleAccess(tokens: [token])
        access.loginInterval = .seconds(600)
        let router = Router()
        Console(pool: db.pool, access: access, logger: Logger(label: "test", minimum: .error)).register(on: router)
        // Each attempt from a new connection (a port of its own): the spacing is per host.
        func login(_ t: String, from address: String) async -> HTTPResponse {
            await router.handle(
                HTTPRequest(
                    method: "POST", path: "/login",
                    headers: ["Content-Type": "application/x-www-form-urlencoded"], body: Array("token=\(t)".utf8),
                    remoteAddress: "\(address):\(Int.random(in: 1024...65535))", clientAddress: address))
        }
        let wrong = await login("wrong-token-0000000000", from: "192.0.2.7")
        XCTAssertEqual(wrong.status, 401)
        for t in ["wrong-token-0000000001", token] {
            let early = await login(t, from: "192.0.2.7")
            XCTAssertEqual(early.status, 429, "token checked despite the interval")
            let retry = Int(early.headers["Retry-After"] ?? "") ?? 0
            XCTAssertTrue((500...600).contains(retry), "Retry-After \(early.headers["Retry-After"] ?? "nil")")
            XCTAssertNil(early.headers["Set-Cookie"])
        }
        let other = await login(token, from: "192.0.2.8")
        XCTAssertEqual(other.status, 302, "another address has its own interval")
        try await db.pool.execute(
            "UPDATE nexjobs.rate_limits SET next_slot = now() - interval '1 second' WHERE key = 'console-login:192.0.2.7'"
        )
        let later = await login(token, from: "192.0.2.7")
        XCTAssertEqual(later.status, 302)
        XCTAssertNotNil(later.headers["Set-Cookie"])
        // The environment's value goes through the checked duration parser.
        let env = ["NEXJOBS_CONSOLE_TOKENS": token]
        XCTAssertEqual(try ConsoleAccess.from(environment: env)?.loginInterval, .seconds(1))
        XCTAssertEqual(
            try ConsoleAccess.from(environment: env.merging(["NEXJOBS_CONSOLE_LOGIN_INTERVAL": "5s"]) { $1 })?
                .loginInterval, .seconds(5))
        for bad in ["0", "2h", "-1s", "abc"] {
            XCTAssertThrowsError(
                try ConsoleAccess.from(environment: env.merging(["NEXJOBS_CONSOLE_LOGIN_INTERVAL": bad]) { $1 }), bad)
        }
    }

    func testJobFilterRejectsBadInput() {
        XCTAssertThrowsError(try JobFilter(["state": "bogus"])) {
            XCTAssertEqual(($0 as? ConsoleInputError)?.status, 400)
        }
        XCTAssertThrowsError(try JobFilter(["kind": "Bad Kind"]))
        XCTAssertThrowsError(try JobFilter(["queue": "a b"]))
        XCTAssertThrowsError(try JobFilter(["before": "-1"]))
        XCTAssertThrowsError(try JobFilter(["before": "99999999999999999999"]))
        XCTAssertNoThrow(
            try JobFilter(["state": "failed", "kind": "sync_ad_account", "queue": "default", "before": "10"]))
    }

    /// Keyset pagination stays an index scan without a sort, whatever the filter: the plan is read with EXPLAIN on
    /// a table of 300,000 jobs (ANALYZEd, so the planner sees realistic statistics; the plan shape does not change
    /// with size: each page reads at most `limit` index entries past the key, plus filtered-out rows).
    func testJobListIsAnIndexScanWithoutSortForEveryFilter() async throws {
        let db = try await TestDatabase.create()
        addTeardownBlock { await db.drop() }
        try await db.pool.execute(
            """
            INSERT INTO nexjobs.jobs (kind, queue, state, finished_at)
            SELECT 'kind' || (i % 20), 'q' || (i % 5), (ARRAY['completed','completed','completed','failed','available'])[1 + i % 5],
                   now() FROM generate_series(1, 300000) i
            """)
        try await db.pool.execute("ANALYZE nexjobs.jobs")
        let filters: [JobFilter] = [
            JobFilter(), JobFilter(state: "failed"), JobFilter(state: "completed", before: 250_000),
            JobFilter(kind: "kind7"), JobFilter(kind: "kind7", before: 100_000), JobFilter(queue: "q3"),
            JobFilter(state: "failed", kind: "kind3"),
            JobFilter(state: "available", kind: "kind4", queue: "q4", before: 200_000),
        ]
        for f in filters {
            let q = f.listQuery(limit: 51)
            let plan = try await db.pool.query(PGQuery(unsafeSQL: "EXPLAIN " + q.sql, binds: q.binds))
                .map { try $0.decode(0, as: String.self) }.joined(separator: "\n")
            XCTAssertTrue(plan.contains("Index Scan") || plan.contains("Index Only Scan"), "\(f.summary):\n\(plan)")
            XCTAssertFalse(plan.contains("Sort"), "\(f.summary):\n\(plan)")
            XCTAssertFalse(plan.contains("Seq Scan"), "\(f.summary):\n\(plan)")
        }
    }

    func testWhyExplainsEachReasonFromTheData() async throws {
        let db = try await TestDatabase.create()
        addTeardownBlock { await db.drop() }
        let pool = db.pool
        func job(_ sql: String) async throws -> Int64 {
            try await pool.query(PGQuery(unsafeSQL: sql)).first!.decode(0)
        }
        func codes(_ id: Int64) async throws -> [String] {
            try await JobWhy.explain(id, on: pool)!.reasons.map(\.code)
        }
        let scheduled = try await job("SELECT nexjobs.enqueue('noop', run_at => now() + interval '1 hour')")
        let backoff = try await job(
            "INSERT INTO nexjobs.jobs (kind, state, attempt, run_at) VALUES ('noop', 'retryable', 2, now() + interval '5 minutes') RETURNING id"
        )
        let snoozed = try await job(
            "INSERT INTO nexjobs.jobs (kind, state, attempt, locked_by) VALUES ('noop', 'running', 1, 'w') RETURNING id"
        )
        // Two snoozes, as the worker writes them: back to available, attempt uncharged, run_at later.
        for _ in 0..<2 {
            try await pool.execute(
                "UPDATE nexjobs.jobs SET state = 'running', attempt = attempt + 1 WHERE id = \(snoozed)")
            try await pool.execute(
                "UPDATE nexjobs.jobs SET state = 'available', attempt = attempt - 1, run_at = now() + interval '1 minute' WHERE id = \(snoozed)"
            )
        }
        let held = try await job("SELECT nexjobs.enqueue('noop', unique_key => 'only-one')")
        let dup = try await job(
            "INSERT INTO nexjobs.jobs (kind, state, unique_key, finished_at) VALUES ('noop', 'failed', 'only-one', now()) RETURNING id"
        )
        let org = try await job(
            "INSERT INTO nexcomet.organizations (name, processing_restricted) VALUES ('o', true) RETURNING id")
        let conn = try await job(
            "INSERT INTO nexcomet.ad_connections (organization_id, platform) VALUES (\(org), 'tiktok') RETURNING id")
        let account = try await job(
            "INSERT INTO nexcomet.ad_accounts (connection_id, platform, external_id, currency) VALUES (\(conn), 'tiktok', '7001', 'USD') RETURNING id"
        )
        try await pool.execute(
            "INSERT INTO nexjobs.rate_limits (key, next_slot) VALUES ('tiktok:account:7001', now() + interval '2 minutes')"
        )
        let restricted = try await job(
            "SELECT nexjobs.enqueue('sync_connection', jsonb_build_object('connection_id', '\(conn)'))")
        let limited = try await job(
            "SELECT nexjobs.enqueue('sync_ad_account', jsonb_build_object('ad_account_id', \(account)))")

        let scheduledCodes = try await codes(scheduled)
        XCTAssertEqual(scheduledCodes, ["scheduled", "no_worker"])
        let backoffCodes = try await codes(backoff)
        XCTAssertEqual(backoffCodes, ["backoff", "no_worker"])
        let snoozedWhy = try await JobWhy.explain(snoozed, on: pool)!
        XCTAssertEqual(snoozedWhy.reasons.first?.code, "snoozed")
        XCTAssertTrue(snoozedWhy.reasons.first!.text.contains("2 times"), snoozedWhy.reasons.first!.text)
        let dupCodes = try await codes(dup)
        XCTAssertEqual(dupCodes, ["finished", "duplicate"])
        let dupText = try await JobWhy.explain(dup, on: pool)!.reasons[1].text
        XCTAssertTrue(dupText.contains("live job \(held)"), dupText)
        let restrictedCodes = try await codes(restricted)
        XCTAssertTrue(restrictedCodes.contains("org_restricted"), "\(restrictedCodes)")
        XCTAssertTrue(restrictedCodes.contains("rate_limited"), "\(restrictedCodes)")
        let limitedWhy = try await JobWhy.explain(limited, on: pool)!
        XCTAssertTrue(
            limitedWhy.reasons.contains { $0.code == "rate_limited" && $0.text.contains("tiktok:account:7001") },
            "\(limitedWhy.reasons)")
        // The app's shared quota (sql/051) is named too; a Snap app row is not this TikTok job's business.
        try await pool.execute(
            """
            INSERT INTO nexjobs.rate_limits (key, next_slot)
            VALUES ('tiktok:app:bench', now() + interval '1 minute'), ('snapchat:app:x', now() + interval '1 minute')
            """)
        let appWhy = try await JobWhy.explain(limited, on: pool)!
        XCTAssertTrue(
            appWhy.reasons.contains {
                $0.code == "rate_limited" && $0.text.contains("app's shared quota tiktok:app:bench")
            }, "\(appWhy.reasons)")
        XCTAssertFalse(appWhy.reasons.contains { $0.text.contains("snapchat:app") }, "\(appWhy.reasons)")

        // A live worker on the queue removes no_worker; a due job behind others is "queued".
        try await pool.execute(
            "INSERT INTO nexjobs.workers (id, host, pid, queues, concurrency, lease_until) VALUES ('w1', 'h', 1, '{default}', 4, now() + interval '1 minute')"
        )
        let withWorker = try await codes(scheduled)
        XCTAssertEqual(withWorker, ["scheduled"])
        let due = try await job("SELECT nexjobs.enqueue('noop')")
        let dueCodes = try await codes(due)
        XCTAssertEqual(dueCodes, ["queued"])
        let missing = try await JobWhy.explain(999_999, on: pool)
        XCTAssertNil(missing)
    }
}
