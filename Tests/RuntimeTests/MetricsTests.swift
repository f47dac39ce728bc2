import Foundation
import HTTP
import Logs
import NexcometJobs
import PGTestSupport
import Postgres
import Queue
import XCTest

@testable import Runtime

/// `/metrics`: bearer-token access, the series computed from the database (histograms and counters kept by the
/// sql/045 and sql/046 triggers), and the exposition checked by Prometheus's own `promtool check metrics`.
final class MetricsTests: XCTestCase {
    var db: TestDatabase!
    let token = "metrics-test-token-0123456789abcdef"

    override func setUp() async throws {
        do { db = try await TestDatabase.create(name) } catch {
            XCTFail("\(error)")
            throw error
        }
    }

    override func tearDown() async throws { await db?.drop() }

    func service(token: String?) -> WebService {
        var s = WebService(pool: db.pool, webhookSecret: nil, logger: Logger(label: "test", minimum: .error))
        s.metricsToken = token.map { Array($0.utf8) }
        s.metricsTTL = .zero
        return s
    }

    func get(_ router: Router, authorization: String?) async -> HTTPResponse {
        var headers = HTTPHeaders()
        if let authorization { headers.add("Authorization", authorization) }
        return await router.handle(HTTPRequest(path: "/metrics", headers: headers))
    }

    func testMetricsRequireTheBearerToken() async throws {
        let router = service(token: token).router()
        for bad in [
            nil, "Bearer", "Bearer ", "Bearer wrong", "Bearer \(token)x", "Basic \(token)", String(token.dropLast()),
        ] {
            let r = await get(router, authorization: bad)
            XCTAssertEqual(r.status, 401, "authorization \(bad ?? "none") must be refused")
            XCTAssertEqual(r.headers["WWW-Authenticate"], #"Bearer realm="nexjobs-metrics""#)
            XCTAssertFalse(String(decoding: r.body, as: UTF8.self).contains("nexjobs_"), "no metric leaks")
        }
        let ok = await get(router, authorization: "Bearer \(token)")
        XCTAssertEqual(ok.status, 200)
        let lower = await get(router, authorization: "bearer \(token)")
        XCTAssertEqual(lower.status, 200, "the scheme is case-insensitive")
        let health = await router.handle(HTTPRequest(path: "/healthz"))
        XCTAssertEqual(health.status, 200, "/healthz stays open")
        let disabled = await get(service(token: nil).router(), authorization: "Bearer \(token)")
        XCTAssertEqual(disabled.status, 503, "without NEXJOBS_METRICS_TOKEN /metrics is not exposed")
    }

    func testTokenSettingHasARange() throws {
        XCTAssertNil(try WebService.metricsToken(from: [:]))
        XCTAssertThrowsError(try WebService.metricsToken(from: ["NEXJOBS_METRICS_TOKEN": "short"]))
        XCTAssertThrowsError(
            try WebService.metricsToken(from: ["NEXJOBS_METRICS_TOKEN": String(repeating: "k", count: 513)]))
        XCTAssertEqual(
            try WebService.metricsToken(from: ["NEXJOBS_METRICS_TOKEN": String(repeating: "k", count: 32)])?.count, 32)
    }

    /// Jobs run by a real worker show up in the outcome counters and both histograms, per kind and queue; the
    /// counters do not drop when finished jobs are pruned.
    func testOutcomesAndHistogramsComeFromFinishedJobs() async throws {
        let client = JobClient(pool: db.pool)
        for _ in 0..<5 { try await client.enqueue(NewJob(kind: "noop", queue: "mq")) }
        try await client.enqueue(NewJob(kind: "noop", args: #"{"fail_times": 1}"#, queue: "mq", maxAttempts: 1))
        let cancelled = try await client.enqueue(
            NewJob(kind: "noop", queue: "mq", runAt: Date().addingTimeInterval(3600)))
        _ = try await db.pool.query("SELECT nexjobs.cancel(\(cancelled.id))")
        var options = WorkerOptions()
        options.queues = ["mq"]
        options.concurrency = 4
        options.pollInterval = .milliseconds(100)
        options.maintenance = false
        var registry = JobRegistry()
        registry.register(NoopHandler())
        let worker = Worker(
            pool: db.pool, registry: registry, options: options, logger: Logger(label: "t", minimum: .error))
        let run = Task { try await worker.run() }
        try await assertEventually(timeout: .seconds(20), "the jobs finish") {
            try await self.db.pool.query(
                "SELECT count(*)::int FROM nexjobs.jobs WHERE state IN ('completed', 'failed')"
            ).first!.decode(0, as: Int.self) == 6
        }
        worker.shutdown()
        _ = try? await run.value
        _ = try await db.pool.query("DELETE FROM nexjobs.jobs")

        let r = await get(service(token: token).router(), authorization: "Bearer \(token)")
        XCTAssertEqual(r.status, 200)
        let text = String(decoding: r.body, as: UTF8.self)
        let labels = #"kind="noop",queue="mq""#
        XCTAssertTrue(text.contains(#"nexjobs_job_outcomes_total{\#(labels),outcome="completed"} 5"#), text)
        XCTAssertTrue(text.contains(#"nexjobs_job_outcomes_total{\#(labels),outcome="failed"} 1"#), text)
        XCTAssertTrue(text.contains(#"nexjobs_job_outcomes_total{\#(labels),outcome="cancelled"} 1"#), text)
        XCTAssertTrue(text.contains(#"nexjobs_job_duration_seconds_bucket{\#(labels),le="+Inf"} 6"#), text)
        XCTAssertTrue(text.contains(#"nexjobs_job_duration_seconds_count{\#(labels)} 6"#), text)
        XCTAssertTrue(text.contains(#"nexjobs_job_wait_seconds_count{\#(labels)} 6"#), text)
        XCTAssertTrue(text.contains(#"nexjobs_leader{role="scheduler"} 0"#), text)
        XCTAssertTrue(text.contains("# TYPE nexjobs_privacy_requests_overdue gauge"), text)
        // Buckets are cumulative: each le's count is at least the previous one's.
        var previous = -1
        for line in text.split(separator: "\n") where line.hasPrefix("nexjobs_job_wait_seconds_bucket{\(labels)") {
            let n = Int(line.split(separator: " ").last!)!
            XCTAssertGreaterThanOrEqual(n, previous, String(line))
            previous = n
        }
        XCTAssertEqual(previous, 6)
        try Self.promtoolCheck(text)
    }

    /// Platform API calls recorded by sync runs become monotonic counters by platform and status class.
    func testPlatformAPICallsByStatusClass() async throws {
        let connection: Int64 = try await db.pool.query(
            """
            WITH o AS (INSERT INTO nexcomet.organizations (name) VALUES ('o') RETURNING id)
            INSERT INTO nexcomet.ad_connections (organization_id, platform) SELECT id, 'snapchat' FROM o RETURNING id
            """
        ).first!.decode(0)
        for body in [#"{"2xx": 3, "5xx": 1}"#, #"{"2xx": 2, "error": 1}"#] {
            try await db.pool.execute(
                """
                INSERT INTO nexcomet.sync_runs (connection_id, api_calls, api_calls_by_status, outcome)
                VALUES (\(connection), 4, \(body)::jsonb, 'succeeded')
                """)
        }
        try await db.pool.execute("DELETE FROM nexcomet.sync_runs")
        let text = String(
            decoding: (await get(service(token: token).router(), authorization: "Bearer \(token)")).body, as: UTF8.self)
        XCTAssertTrue(
            text.contains(#"nexjobs_platform_api_calls_total{platform="snapchat",status_class="2xx"} 5"#), text)
        XCTAssertTrue(
            text.contains(#"nexjobs_platform_api_calls_total{platform="snapchat",status_class="5xx"} 1"#), text)
        XCTAssertTrue(
            text.contains(#"nexjobs_platform_api_calls_total{platform="snapchat",status_class="error"} 1"#), text)
        XCTAssertTrue(text.contains(#"nexjobs_connections_behind_cadence{platform="snapchat"} 0"#), text)
        try Self.promtoolCheck(text)
    }

    /// Counters whose shards sum past Int64 (2 x 2^62 = 2^63) made /metrics fail (SQL 22003 on `sum()::bigint`) or
    /// trap (the cumulative histogram buckets added in Swift); they are held at Int64.max.
    func testHugeCountersSaturateInsteadOfFailing() async throws {
        try await db.pool.execute(
            """
            INSERT INTO nexcomet.api_call_totals (platform, status_class, shard, count)
            VALUES ('tiktok', '2xx', 0, 4611686018427387904), ('tiktok', '2xx', 1, 4611686018427387904)
            """)
        try await db.pool.execute(
            """
            INSERT INTO nexjobs.job_stats_outcomes (kind, queue, outcome, shard, count)
            VALUES ('k', 'q', 'completed', 0, 4611686018427387904), ('k', 'q', 'completed', 1, 4611686018427387904)
            """)
        // Bucket 0 overflows in SQL (two shards), bucket 1 only when the cumulative count is added up.
        try await db.pool.execute(
            """
            INSERT INTO nexjobs.job_stats_buckets (kind, queue, metric, bucket, shard, count, sum)
            VALUES ('k', 'q', 'duration', 0, 0, 4611686018427387904, 1), ('k', 'q', 'duration', 0, 1, 4611686018427387904, 1),
                   ('k', 'q', 'duration', 1, 0, 4611686018427387904, 1)
            """)
        let response = await get(service(token: token).router(), authorization: "Bearer \(token)")
        let text = String(decoding: response.body, as: UTF8.self)
        XCTAssertEqual(response.status, 200, text)
        XCTAssertTrue(
            text.contains(
                #"nexjobs_platform_api_calls_total{platform="tiktok",status_class="2xx"} 9223372036854775807"#),
            text)
        XCTAssertTrue(
            text.contains(#"nexjobs_job_outcomes_total{kind="k",queue="q",outcome="completed"} 9223372036854775807"#),
            text)
        XCTAssertTrue(
            text.contains(#"nexjobs_job_duration_seconds_count{kind="k",queue="q"} 9223372036854775807"#), text)
        try Self.promtoolCheck(text)
    }

    /// Runs `promtool check metrics` on `text`; fails (never skips) when promtool is missing.
    static func promtoolCheck(_ text: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["promtool", "check", "metrics"]
        let input = Pipe()
        let output = Pipe()
        p.standardInput = input
        p.standardOutput = output
        p.standardError = output
        try p.run()
        input.fileHandleForWriting.write(Data(text.utf8))
        try input.fileHandleForWriting.close()
        let out = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(
            p.terminationStatus, 0, "promtool check metrics (install Debian's prometheus package): \(out)",
            file: file, line: line)
    }
}
