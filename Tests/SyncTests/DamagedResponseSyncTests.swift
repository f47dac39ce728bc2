import Foundation
import Logs
import PGTestSupport
import Platforms
import Postgres
import Queue
import Runtime
import Sandbox
import Synchronization
import XCTest

@testable import Sync

/// Syncs against a sandbox that damages some or all HTTP 200 bodies (not JSON, cut short, wrong shape).
final class DamagedResponseSyncTests: XCTestCase {
    /// Counts the clients' "trying the request again" warnings, so a test can prove the faults were hit.
    final class RetryCount: Sendable {
        let value = Atomic<Int>(0)
        var logger: PlatformLogger {
            PlatformLogger { [self] level, message, _ in
                if level == .warning && message.contains("trying the request again") {
                    value.add(1, ordering: .relaxed)
                }
            }
        }
    }

    /// The harness's clients, with short request-retry delays and a logger counting request retries.
    static func clients(_ sandbox: Sandbox, retries: RetryCount) -> PlatformClientProvider {
        let tiktokURL = URL(string: sandbox.tiktokBaseURL)!
        let snapURL = URL(string: sandbox.snapAPIBaseURL)!
        let oauthURL = URL(string: sandbox.snapOAuthURL)!
        let logger = retries.logger
        return PlatformClientProvider { platform, _ in
            switch platform {
            case .tiktok:
                return TikTokClient(
                    configuration: TikTokConfiguration(
                        baseURL: tiktokURL, appId: "app-1", secret: "tiktok-app-secret",
                        responseRetryDelay: .milliseconds(20)),
                    logger: logger)
            case .snapchat:
                return SnapchatClient(
                    configuration: SnapchatConfiguration(
                        apiBaseURL: snapURL, tokenURL: oauthURL, clientId: "client-1",
                        clientSecret: "snap-client-secret", responseRetryDelay: .milliseconds(20)),
                    logger: logger)
            }
        }
    }

    /// With a few percent of damaged bodies of every kind, every sync_ad_account job completes on its first
    /// attempt and the stored metrics equal the sandbox's ground truth.
    func testSyncWithAFewPercentDamagedBodiesCompletesAndMatchesGroundTruth() async throws {
        var harness = try await SyncHarness.make(tiktok: 2, snap: 2)
        let retries = RetryCount()
        harness.environment.clients = Self.clients(harness.sandbox, retries: retries)
        let h = harness
        addTeardownBlock { await h.close() }
        let connections = try await h.connectAll()
        for c in connections {
            try await h.run(SyncConnectionHandler(environment: h.environment), args: #"{"connection_id":"\#(c.id)"}"#)
        }
        // Every kind of damaged body once on each platform (rules, so each surely fires), over a background of a
        // few percent of damaged bodies at random.
        let targeted: [(FaultKind, SandboxPlatform, String)] = [
            (.malformedJSON, .tiktok, "/campaign/get/"), (.truncatedBody, .tiktok, "/adgroup/get/"),
            (.htmlBody, .tiktok, "/ad/get/"), (.truncatedJSON, .tiktok, "/report/integrated/get/"),
            (.wrongShape, .tiktok, "/report/integrated/get/"),
            (.malformedJSON, .snapchat, "/campaigns"), (.truncatedBody, .snapchat, "/adsquads"),
            (.htmlBody, .snapchat, "/ads"), (.truncatedJSON, .snapchat, "/stats"),
            (.wrongShape, .snapchat, "/stats"),
        ]
        h.sandbox.setFaults(
            FaultConfig(
                probabilities: [
                    .malformedJSON: 0.01, .truncatedBody: 0.01, .truncatedJSON: 0.01, .htmlBody: 0.01,
                    .wrongShape: 0.01,
                ],
                rules: targeted.map { FaultRule(kind: $0.0, platform: $0.1, pathContains: $0.2, count: 1) }))
        let results = try await h.drain(SyncAdAccountHandler(environment: h.environment))
        XCTAssertTrue(h.sandbox.faults().rules.allSatisfy { $0.count == 0 }, "every targeted damage fired")
        h.sandbox.setFaults(.none)
        XCTAssertGreaterThanOrEqual(results.count, 4)
        for (id, error) in results { XCTAssertNil(error ?? nil, "job \(id) completes despite damaged bodies") }
        XCTAssertGreaterThanOrEqual(
            retries.value.load(ordering: .relaxed), targeted.count, "each damaged body was retried on its request")

        let first = try await h.retainedFirstDays(days: 90)
        let truth = h.truth(firstDay: first)
        XCTAssertGreaterThan(truth.count, 100)
        assertSameMetrics(try await h.databaseMetrics(), truth, "metrics equal the ground truth after retried bodies")
    }

    /// A report endpoint whose body is always cut short: each attempt tries the request the bounded number of times,
    /// fails the attempt (charged), and the job ends `failed` only at `max_attempts`, writing nothing. Every entry
    /// of its error history names the endpoint and the damage, and holds no token, secret or query string.
    func testAlwaysDamagedBodiesFailTheJobOnlyAtMaxAttempts() async throws {
        var harness = try await SyncHarness.make(tiktok: 1, snap: 0)
        let retries = RetryCount()
        harness.environment.clients = Self.clients(harness.sandbox, retries: retries)
        harness.environment.settings.transientRetries = 0
        let h = harness
        addTeardownBlock { await h.close() }
        let connections = try await h.connectAll()
        try await h.run(
            SyncConnectionHandler(environment: h.environment), args: #"{"connection_id":"\#(connections[0].id)"}"#)
        // The sync_connection job enqueued one sync_ad_account per account; keep one, with 3 attempts.
        let accountID: Int64 = try await h.db.pool.query("SELECT min(id) FROM nexcomet.ad_accounts").first!.decode(0)
        try await h.db.pool.execute("DELETE FROM nexjobs.jobs WHERE kind = 'sync_ad_account'")
        let job = try await JobClient(pool: h.db.pool).enqueue(
            NewJob(kind: SyncAdAccountHandler.kind, args: #"{"ad_account_id":\#(accountID)}"#, maxAttempts: 3))
        // The daily report only (its dimensions name stat_time_day); the account totals, asked first, answer.
        h.sandbox.setFaults(
            FaultConfig(rules: [
                FaultRule(kind: .truncatedJSON, pathContains: "report/integrated", queryContains: "stat_time_day")
            ]))

        var options = WorkerOptions()
        options.pollInterval = .milliseconds(50)
        options.retryPolicy = .constant(.milliseconds(50))
        options.shutdownGrace = .seconds(5)
        var registry = JobRegistry()
        registry.register(SyncAdAccountHandler(environment: h.environment))
        let worker = Worker(
            pool: h.db.pool, registry: registry, options: options, logger: Logger(label: "test", minimum: .error))
        let task = Task { try await worker.run() }
        let client = JobClient(pool: h.db.pool)
        let deadline = ContinuousClock.now + .seconds(60)
        var record = try await client.job(job.id)
        while record.state != .failed && record.state != .completed && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
            record = try await client.job(job.id)
        }
        worker.shutdown()
        try await task.value
        h.sandbox.setFaults(.none)

        XCTAssertEqual(record.state, .failed, "the job fails once its attempts are used up")
        XCTAssertEqual(record.attempt, 3, "every attempt was charged; none discarded early")
        XCTAssertEqual(record.errors.map(\.attempt), [1, 2, 3])
        XCTAssertEqual(retries.value.load(ordering: .relaxed), 3 * 2, "each attempt tried the request 3 times")
        let access = try await h.db.pool.withConnection { c in
            try await h.store.load(connections[0].id, on: c).tokens
        }
        for entry in record.errors {
            let text = entry.error
            XCTAssertTrue(text.contains("/open_api/v1.3/report/integrated/get/"), text)
            XCTAssertTrue(text.contains("not JSON (truncated at byte"), text)
            XCTAssertTrue(text.contains("after 3 tries"), text)
            for secret in [access?.accessToken, access?.refreshToken, "tiktok-app-secret"].compactMap({ $0 }) {
                XCTAssertFalse(text.contains(secret), "the error history holds a secret: \(text)")
            }
            XCTAssertFalse(text.contains("?"), "no query string: \(text)")
            XCTAssertFalse(text.contains("advertiser_id="), "no query string: \(text)")
        }
        // Commits are per step (issue 14): the entity lists were committed, no report window was.
        let written: Int = try await h.db.pool.query("SELECT count(*)::int FROM nexcomet.daily_metrics").first!
            .decode(0)
        XCTAssertEqual(written, 0, "no metric is written from a report window whose responses were damaged")
        let runs: [String] = try await h.db.pool.query(
            "SELECT outcome FROM nexcomet.sync_runs WHERE job_id = \(job.id) ORDER BY id"
        ).map { try $0.decode(0) }
        XCTAssertEqual(runs, ["failed", "failed", "failed"])
    }
}
