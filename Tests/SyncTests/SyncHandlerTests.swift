import Foundation
import PGTestSupport
import Platforms
import Postgres
import Privacy
import Queue
import Sandbox
import XCTest

@testable import Sync

final class SyncHandlerTests: XCTestCase {
    func testFullSyncEqualsGroundTruthAndRerunChangesNothing() async throws {
        let h = try await SyncHarness.make()
        addTeardownBlock { await h.close() }
        let connections = try await h.connectAll()
        try await h.syncEverything(connections.map(\.id))

        let first = try await h.retainedFirstDays(days: 90)
        XCTAssertGreaterThanOrEqual(first.count, 4, "every sandbox account is discovered")
        let truth = h.truth(firstDay: first)
        let stored = try await h.databaseMetrics()
        XCTAssertGreaterThan(truth.count, 100)
        assertSameMetrics(stored, truth, "every metric row equals the sandbox's ground truth to the cent")
        for platform in ["tiktok", "snapchat"] {
            XCTAssertTrue(stored.keys.contains { $0.hasPrefix(platform + "|") }, "\(platform) rows synced")
        }
        let entities: Int = try await h.db.pool.query(
            "SELECT (SELECT count(*) FROM nexcomet.campaigns) + (SELECT count(*) FROM nexcomet.ads)"
        ).first!.decode(0)
        XCTAssertGreaterThan(entities, 0)

        // Snap says which days are final (finalized_data_end_time: the sandbox's is local midnight of today - 2, so
        // days up to today - 3); TikTok does not, and days older than its 3-day lookback are final.
        var finals: [String: Int] = [:]
        for r in try await h.db.pool.query(
            """
            SELECT m.platform, a.timezone, m.date::text, m.is_final
              FROM nexcomet.daily_metrics m JOIN nexcomet.ad_accounts a ON a.id = m.ad_account_id
            """)
        {
            let platform: String = try r.decode(0)
            let tz = TimeZone(identifier: try r.decode(1, as: String.self))!
            let day = LocalDate(parsing: try r.decode(2, as: String.self))!
            let today = LocalDate(h.environment.settings.now(), in: tz)
            let expected = platform == "snapchat" ? day <= today.adding(days: -3) : day < today.adding(days: -3)
            XCTAssertEqual(try r.decode(3, as: Bool.self), expected, "\(platform) \(day) today \(today)")
            if expected { finals[platform, default: 0] += 1 }
        }
        XCTAssertGreaterThan(finals["snapchat", default: 0], 0)
        XCTAssertGreaterThan(finals["tiktok", default: 0], 0)

        // First sync of the plan's 90 days: 3 entity lists + 3 ad-level report windows (TikTok 30 days, Snap 31 days
        // per request); campaign and ad-group rows are derived, so no level reports (the per-level plan: 3 + 9);
        // then reconciliation's one account-totals request over the whole window.
        let firstCalls: [Int] = try await h.db.pool.query(
            "SELECT api_calls FROM nexcomet.sync_runs WHERE outcome = 'succeeded' ORDER BY id"
        ).map { try $0.decode(0) }
        XCTAssertFalse(firstCalls.isEmpty)
        XCTAssertTrue(firstCalls.allSatisfy { $0 == 3 + 3 + 1 }, "first sync requests per account: \(firstCalls)")

        // Same day, same window: the rerun must not rewrite a single tuple.
        let before = try await h.metricTupleVersions()
        let lastRunBefore: Int64 = try await h.db.pool.query("SELECT max(id) FROM nexcomet.sync_runs").first!.decode(0)
        try await h.syncEverything(connections.map(\.id))
        let after = try await h.metricTupleVersions()
        XCTAssertEqual(before, after, "a second sync rewrites no metric row")
        let lastRuns: Int = try await h.db.pool.query(
            """
            SELECT coalesce(sum(rows_written), -1)::int FROM nexcomet.sync_runs r
             WHERE outcome = 'succeeded' AND id > \(lastRunBefore)
            """
        ).first!.decode(0)
        XCTAssertEqual(lastRuns, 0, "second runs report zero rows written")
        let outcomes: [String] = try await h.db.pool.query(
            "SELECT DISTINCT outcome FROM nexcomet.sync_runs"
        ).map { try $0.decode(0) }
        XCTAssertEqual(outcomes, ["succeeded"])

        // api_calls is every HTTP request of a run: per account, the sandbox saw exactly what the runs recorded
        // (account syncs alone: discovery in sync_connection is not an account's run).
        h.sandbox.resetRequestCounts()
        let lastRun: Int64 = try await h.db.pool.query("SELECT max(id) FROM nexcomet.sync_runs").first!.decode(0)
        let errors = try await h.resyncAccounts()
        XCTAssertEqual(errors, [:])
        var seen: [String: Int] = [:]
        for c in h.sandbox.requestCounts() { seen[c.accountID, default: 0] += c.count }
        var recorded: [String: Int] = [:]
        for r in try await h.db.pool.query(
            """
            SELECT a.external_id, sum(r.api_calls)::int FROM nexcomet.sync_runs r
              JOIN nexcomet.ad_accounts a ON a.id = r.ad_account_id WHERE r.id > \(lastRun) GROUP BY 1
            """)
        {
            recorded[try r.decode(0)] = try r.decode(1)
        }
        XCTAssertEqual(recorded, seen)
        // Lean call plan (issue 14): within the entity refresh interval a resync reuses the stored lists and asks
        // for one ad-level report (TikTok's 4-day and Snap's 29-day lookback windows fit one request each), then
        // one account-totals request; the per-level plan cost 3 lists + 3 reports here.
        XCTAssertFalse(recorded.isEmpty)
        XCTAssertTrue(recorded.values.allSatisfy { $0 == 1 + 1 }, "report + totals per resync: \(recorded)")
        // Each authorized request's response is classified (no refresh happened here, so the classes sum to
        // api_calls), and the runs feed the cumulative counters of /metrics.
        let classes = try await h.db.pool.query(
            """
            SELECT sum(r.api_calls)::int,
                   sum((SELECT coalesce(sum(value::int), 0) FROM jsonb_each_text(r.api_calls_by_status)))::int,
                   sum(coalesce((r.api_calls_by_status->>'2xx')::int, 0))::int
              FROM nexcomet.sync_runs r WHERE r.id > \(lastRunBefore)
            """
        ).first!
        let calls: Int = try classes.decode(0)
        XCTAssertEqual(try classes.decode(1, as: Int.self), calls, "every request has a status class")
        XCTAssertEqual(try classes.decode(2, as: Int.self), calls, "the healthy sandbox answered 2xx")
        let total: Int = try await h.db.pool.query(
            "SELECT coalesce(sum(count), 0)::int FROM nexcomet.api_call_totals WHERE status_class = '2xx'"
        ).first!.decode(0)
        XCTAssertGreaterThanOrEqual(total, calls)
    }

    func testRestatedConversionsArePickedUpByTheLookback() async throws {
        let h = try await SyncHarness.make(tiktok: 1, snap: 1)
        addTeardownBlock { await h.close() }
        let connections = try await h.connectAll()
        try await h.syncEverything(connections.map(\.id))
        let before = try await h.databaseMetrics()

        h.advanceDays(2)
        let errors = try await h.resyncAccounts()
        XCTAssertEqual(errors, [:])
        let first = try await h.retainedFirstDays(days: 90)
        let truth = h.truth(firstDay: first)
        let stored = try await h.databaseMetrics(from: first)
        assertSameMetrics(stored, truth, "restated days and the two new days match the sandbox")
        let restated = truth.filter { key, value in before[key] != nil && before[key] != value }
        XCTAssertFalse(restated.isEmpty, "the sandbox restated some conversions (the test must see a change)")
    }

    func testRevokedGrantMarksNeedsReauthWithOneNotificationAndStopsScheduling() async throws {
        let h = try await SyncHarness.make(tiktok: 1, snap: 0)
        addTeardownBlock { await h.close() }
        let connections = try await h.connectAll()
        let id = connections[0].id
        try await h.run(SyncConnectionHandler(environment: h.environment), args: #"{"connection_id":"\#(id)"}"#)
        h.sandbox.revokeConnection(.tiktok, 0)

        // Concurrent jobs of the revoked grant: those that reach the API fail for good; those that start after the
        // connection was marked skip it. Either way one notification results.
        let results = try await h.drain(SyncAdAccountHandler(environment: h.environment))
        let failures = results.values.compactMap { $0 }
        XCTAssertFalse(failures.isEmpty)
        for text in failures {
            XCTAssertTrue(text.hasPrefix("JobDiscard") && text.contains("re-authorization"), text)
        }
        do {
            try await h.run(SyncConnectionHandler(environment: h.environment), args: #"{"connection_id":\#(id)}"#)
        } catch {
            XCTFail("an inactive connection is skipped, not failed: \(error)")
        }
        let status: String = try await h.db.pool.query(
            "SELECT status FROM nexcomet.ad_connections WHERE id = \(id)"
        ).first!.decode(0)
        XCTAssertEqual(status, "needs_reauth")
        let notes: Int = try await h.db.pool.query(
            "SELECT count(*)::int FROM nexcomet.notifications WHERE connection_id = \(id) AND kind = 'reauth_required'"
        ).first!.decode(0)
        XCTAssertEqual(notes, 1, "one notification, not one per job")

        try await h.db.pool.execute("UPDATE nexcomet.ad_connections SET next_sync_at = now() - interval '1 minute'")
        _ = try await h.db.pool.query("SELECT * FROM nexcomet.enqueue_due_syncs()")
        let scheduled: Int = try await h.db.pool.query(
            "SELECT count(*)::int FROM nexjobs.jobs WHERE kind = 'sync_connection' AND state = 'available'"
        ).first!.decode(0)
        XCTAssertEqual(scheduled, 0, "a needs_reauth connection is no longer scheduled")
    }

    func testRateLimitSnoozesAndWritesNothing() async throws {
        let h = try await SyncHarness.make(tiktok: 0, snap: 1)
        addTeardownBlock { await h.close() }
        let connections = try await h.connectAll()
        try await h.run(
            SyncConnectionHandler(environment: h.environment), args: #"{"connection_id":"\#(connections[0].id)"}"#)
        h.sandbox.setFaults(FaultConfig(rules: [FaultRule(kind: .rateLimit, pathContains: "/stats", count: 1)]))
        let jobs = try await h.drain(SyncAdAccountHandler(environment: h.environment))
        let snoozed = jobs.values.compactMap { $0 }.filter { $0.hasPrefix("JobSnooze") }
        XCTAssertEqual(snoozed.count, 1, "\(jobs)")
        XCTAssertTrue(snoozed[0].hasSuffix("(snoozed for 1.0 seconds)"), "Retry-After is honoured: \(snoozed[0])")
        let runs: [String] = try await h.db.pool.query("SELECT outcome FROM nexcomet.sync_runs").map {
            try $0.decode(0)
        }
        XCTAssertTrue(runs.contains("rate_limited"))
    }

    /// A body that is never JSON fails the attempt with a retryable (transient) error, not a discard, and writes
    /// nothing; the queue retries it with an attempt charged (see DamagedResponseSyncTests for the whole cycle).
    func testDamagedResponseFailsTheAttemptRetryablyAndWritesNothing() async throws {
        let h = try await SyncHarness.make(tiktok: 1, snap: 0)
        addTeardownBlock { await h.close() }
        let connections = try await h.connectAll()
        try await h.run(
            SyncConnectionHandler(environment: h.environment), args: #"{"connection_id":"\#(connections[0].id)"}"#)
        h.sandbox.setFaults(
            FaultConfig(rules: [
                FaultRule(kind: .malformedJSON, pathContains: "report/integrated", queryContains: "stat_time_day")
            ]))
        let jobs = try await h.drain(SyncAdAccountHandler(environment: h.environment))
        XCTAssertFalse(jobs.isEmpty)
        for (_, error) in jobs {
            let text = try XCTUnwrap(error ?? nil)
            XCTAssertTrue(text.hasPrefix("PlatformError") && text.contains("tiktok transient"), text)
            XCTAssertTrue(text.contains("/open_api/v1.3/report/integrated/get/") && text.contains("not JSON"), text)
        }
        // Commits are per step (issue 14): the entity lists are committed first; the damaged report window
        // writes nothing, and the job's progress says the retry resumes at the first window.
        let written: Int = try await h.db.pool.query("SELECT count(*)::int FROM nexcomet.daily_metrics").first!
            .decode(0)
        XCTAssertEqual(written, 0, "nothing is written from a report window whose response was damaged")
        let progress: [String?] = try await h.db.pool.query(
            "SELECT committed_through::text FROM nexcomet.sync_progress"
        ).map { try $0.decode(0) }
        XCTAssertFalse(progress.isEmpty)
        XCTAssertTrue(progress.allSatisfy { $0 == nil }, "no report window committed: \(progress)")
    }

    /// The account totals are asked first; when only they fail (here: damaged on every try), the sync goes on with
    /// the full plan, stores exactly the truth, and records reconciliation `skipped` with the error, asking no more.
    func testAFailingTotalsRequestFallsBackToTheFullPlanAndIsRecordedSkipped() async throws {
        let h = try await SyncHarness.make(tiktok: 1, snap: 1)
        addTeardownBlock { await h.close() }
        let connections = try await h.connectAll()
        for c in connections {
            try await h.run(SyncConnectionHandler(environment: h.environment), args: #"{"connection_id":"\#(c.id)"}"#)
        }
        h.sandbox.setFaults(
            FaultConfig(rules: [
                FaultRule(kind: .malformedJSON, platform: .tiktok, queryContains: "AUCTION_ADVERTISER"),
                FaultRule(kind: .serverError, platform: .snapchat, queryContains: "granularity=TOTAL"),
            ]))
        h.sandbox.resetRequestCounts()
        for (job, error) in try await h.drain(SyncAdAccountHandler(environment: h.environment)) {
            XCTAssertNil(error ?? nil, "job \(job)")
        }
        h.sandbox.setFaults(.none)
        let runs = try await h.db.pool.query(
            """
            SELECT a.platform, r.reconcile_status, r.reconcile_difference->>'error' FROM nexcomet.sync_runs r
              JOIN nexcomet.ad_accounts a ON a.id = r.ad_account_id WHERE r.outcome = 'succeeded'
            """
        ).map { (try $0.decode(0) as String, try $0.decode(1) as String?, try $0.decode(2) as String?) }
        XCTAssertEqual(Set(runs.map(\.0)), ["tiktok", "snapchat"])
        for (platform, status, error) in runs {
            XCTAssertEqual(status, "skipped", platform)
            let text = try XCTUnwrap(error, platform)
            XCTAssertTrue(text.contains(platform == "tiktok" ? "not JSON" : "HTTP 50"), text)
        }
        // The full plan ran: 3 daily windows per account, every metric exact.
        let log = h.sandbox.reportRequests()
        for account in Set(log.map(\.accountID)) {
            XCTAssertEqual(log.filter { $0.accountID == account && $0.granularity == "DAY" }.count, 3, account)
        }
        let first = try await h.retainedFirstDays(days: 90)
        assertSameMetrics(try await h.databaseMetrics(from: first), h.truth(firstDay: first), "stored metrics")
    }

    /// An ad the reports name but the lists never return (on both platforms): lists fetched in this sync are not
    /// fetched again for it (a first sync: 3 lists, not 3 more per window), stored lists are fetched again once per
    /// sync (the next sync: 3), and each window asks the two levels the derivation cannot place. Every stored metric
    /// is still exact.
    func testAnAdTheListsNeverReturnRefetchesTheListsAtMostOncePerSync() async throws {
        let h = try await SyncHarness.make(tiktok: 1, snap: 1)
        addTeardownBlock { await h.close() }
        for c in try await h.connectAll() {
            try await h.run(SyncConnectionHandler(environment: h.environment), args: #"{"connection_id":"\#(c.id)"}"#)
        }
        let accounts = h.sandbox.accounts(platform: .tiktok) + h.sandbox.accounts(platform: .snapchat)
        for a in accounts {
            // An ad that delivers in the window (ground truth has rows for it).
            let ad = try XCTUnwrap(h.sandbox.groundTruth(account: a.id).first { $0.level == .ad }?.entityID)
            h.sandbox.hideFromLists(ad: ad)
        }
        func assertRequests(windows: Int, _ what: String) {
            let log = h.sandbox.reportRequests()
            var requests: [String: Int] = [:]
            for c in h.sandbox.requestCounts() { requests[c.accountID, default: 0] += c.count }
            for a in accounts {
                let reports = log.filter { $0.accountID == a.id }
                let daily = reports.filter { $0.granularity == "DAY" }.count
                XCTAssertEqual(daily, windows * 3, "\(what) \(a.platform): windows x (ads + ad groups + campaigns)")
                // Pages of 1,000: one request per list.
                let lists = (requests[a.id] ?? 0) - reports.count
                XCTAssertEqual(lists, 3, "\(what) \(a.platform): the three lists once")
            }
        }
        h.sandbox.resetRequestCounts()
        for (job, error) in try await h.drain(SyncAdAccountHandler(environment: h.environment)) {
            XCTAssertNil(error ?? nil, "job \(job)")
        }
        assertRequests(windows: 3, "first sync")
        let ids: [Int64] = try await h.db.pool.query("SELECT id FROM nexcomet.ad_accounts").map { try $0.decode(0) }
        h.sandbox.resetRequestCounts()
        for id in ids {
            try await h.run(SyncAdAccountHandler(environment: h.environment), args: #"{"ad_account_id":\#(id)}"#)
        }
        assertRequests(windows: 1, "next sync")
        let first = try await h.retainedFirstDays(days: 90)
        assertSameMetrics(try await h.databaseMetrics(from: first), h.truth(firstDay: first), "stored metrics")
    }

    /// `NEXJOBS_SYNC_QUEUE_TIKTOK|SNAPCHAT`: each platform's account syncs go to its own queue (a worker can
    /// then cap each, `--queues default,sync.tiktok=8`); unset, they stay on the default queue.
    func testAccountSyncsGoToTheirPlatformsQueue() async throws {
        var made = try await SyncHarness.make(tiktok: 1, snap: 1)
        made.environment.settings = SyncSettings.fromEnvironment([
            "NEXJOBS_SYNC_QUEUE_TIKTOK": "sync.tiktok", "NEXJOBS_SYNC_QUEUE_SNAPCHAT": "sync.snapchat",
        ])
        let h = made
        addTeardownBlock { await h.close() }
        for c in try await h.connectAll() {
            try await h.run(SyncConnectionHandler(environment: h.environment), args: #"{"connection_id":"\#(c.id)"}"#)
        }
        let queues: [String] = try await h.db.pool.query(
            """
            SELECT DISTINCT a.platform || '>' || j.queue FROM nexjobs.jobs j
              JOIN nexcomet.ad_accounts a ON a.id = (j.args->>'ad_account_id')::bigint
             WHERE j.kind = 'sync_ad_account' ORDER BY 1
            """
        ).map { try $0.decode(0) }
        XCTAssertEqual(queues, ["snapchat>sync.snapchat", "tiktok>sync.tiktok"])
        XCTAssertEqual(SyncSettings.fromEnvironment([:]).syncQueue(.tiktok), "default")
        XCTAssertEqual(
            SyncSettings.fromEnvironment(["NEXJOBS_SYNC_QUEUE_TIKTOK": "bad queue"]).syncQueue(.tiktok),
            "default", "an invalid name is never used (the processes refuse it at start, HardeningTests)")
    }

    func testTransientErrorIsRethrownForBackoff() async throws {
        let h = try await SyncHarness.make(tiktok: 0, snap: 1)
        addTeardownBlock { await h.close() }
        let connections = try await h.connectAll()
        // Two 5xx are absorbed by the in-job retries; the third fails the attempt for the queue's backoff.
        h.sandbox.setFaults(FaultConfig(rules: [FaultRule(kind: .serverError, pathContains: "adaccounts", count: 2)]))
        try await h.run(
            SyncConnectionHandler(environment: h.environment), args: #"{"connection_id":"\#(connections[0].id)"}"#)
        h.sandbox.setFaults(FaultConfig(rules: [FaultRule(kind: .serverError, pathContains: "adaccounts", count: 3)]))
        do {
            try await h.run(
                SyncConnectionHandler(environment: h.environment), args: #"{"connection_id":"\#(connections[0].id)"}"#)
            XCTFail("expected a transient error")
        } catch let e as PlatformError {
            XCTAssertEqual(e.kind, .transient)
        }
    }

    func testMissingConfigurationFailsTheJobClearly() async throws {
        let h = try await SyncHarness.make(tiktok: 1, snap: 0)
        addTeardownBlock { await h.close() }
        let connections = try await h.connectAll()
        let env = SyncEnvironment.fromEnvironment([:])
        do {
            try await h.run(
                SyncConnectionHandler(environment: env), args: #"{"connection_id":"\#(connections[0].id)"}"#)
            XCTFail("expected a discard")
        } catch let e as JobDiscard {
            XCTAssertTrue(e.message.contains("NEXJOBS_TOKEN_KEYS"), e.message)
        }
        var withKeys = env
        withKeys.keyRing = .success(h.ring)
        do {
            try await h.run(
                SyncConnectionHandler(environment: withKeys), args: #"{"connection_id":"\#(connections[0].id)"}"#)
            XCTFail("expected a discard")
        } catch let e as JobDiscard {
            XCTAssertTrue(e.message.contains("NEXJOBS_TIKTOK_APP_ID"), e.message)
        }
    }
}
