import Foundation
import HTTP
import Logs
import NexcometJobs
import PGTestSupport
import Postgres
import Queue
import Runtime
import XCTest

/// Readers of the runtime keep working when rows already hold timestamps PostgreSQL accepts but arithmetic does not
/// (`infinity`, `-infinity`, BC dates, year 200000), written through SQL.
final class ExtremeTimestampTests: XCTestCase {
    var db: TestDatabase!

    override func setUp() async throws {
        do { db = try await TestDatabase.create(name) } catch {
            XCTFail("\(error)")
            throw error
        }
    }

    override func tearDown() async throws { await db?.drop() }

    func testMetricsAndStatsAnswerWithExtremeRunAt() async throws {
        for v in ["-infinity", "infinity", "0044-03-15 00:00:00+00 BC", "200000-01-01 00:00:00+00"] {
            try await db.pool.execute(
                "INSERT INTO nexjobs.jobs (kind, queue, run_at) VALUES ('noop', 'x', \(v)::timestamptz)")
        }
        var service = WebService(pool: db.pool, webhookSecret: nil, logger: Logger(label: "test", minimum: .error))
        let token = String(repeating: "m", count: 32)
        service.metricsToken = Array(token.utf8)
        var headers = HTTPHeaders()
        headers.add("Authorization", "Bearer \(token)")
        let metrics = await service.router().handle(HTTPRequest(path: "/metrics", headers: headers))
        let text = String(decoding: metrics.body, as: UTF8.self)
        XCTAssertEqual(metrics.status, 200, text)
        XCTAssertTrue(text.contains(#"nexjobs_oldest_due_seconds{queue="x"} +Inf"#), text)
        let stats = try await JobClient(pool: db.pool).stats()
        XCTAssertEqual(stats.first?.oldestDueSeconds, .infinity)
        let jobs = try await JobClient(pool: db.pool).list(queue: "x")
        XCTAssertEqual(jobs.count, 4)
    }

    func testEverySchedulesHaveNoFireTimeAtInfinity() throws {
        let spec = try ScheduleSpec("@every 30s", timeZone: "UTC")
        XCTAssertNil(spec.latestFire(atOrBefore: Date(timeIntervalSince1970: .infinity)))
        XCTAssertNil(spec.next(after: Date(timeIntervalSince1970: -.infinity)))
        XCTAssertNil(spec.next(after: Date(timeIntervalSince1970: 1e300)))
        let cron = try ScheduleSpec("0 3 * * *", timeZone: "UTC")
        XCTAssertNil(cron.next(after: Date(timeIntervalSince1970: .infinity)))
        XCTAssertThrowsError(try ScheduleSpec("@every 3651d", timeZone: "UTC"))
        XCTAssertNotNil(try? ScheduleSpec("@every 3650d", timeZone: "UTC"))
    }
}
