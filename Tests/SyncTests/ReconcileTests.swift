import Foundation
import HTTP
import Logs
import NexcometJobs
import PGTestSupport
import Platforms
import Postgres
import Sandbox
import XCTest

@testable import Sync

/// Issue 14, reconciliation: the platform's account totals against the stored ad-level sums after each sync.
final class ReconcileTests: XCTestCase {
    func accounts(_ h: SyncHarness) async throws -> [(id: Int64, external: String, platform: String, connection: Int64)]
    {
        try await h.db.pool.query(
            "SELECT id, external_id, platform, connection_id FROM nexcomet.ad_accounts ORDER BY id"
        ).map { (try $0.decode(0), try $0.decode(1), try $0.decode(2), try $0.decode(3)) }
    }

    /// Connects every sandbox connection and discovers its ad accounts (sync_connection), then lists them.
    func discovered(_ h: SyncHarness) async throws -> [(
        id: Int64, external: String, platform: String, connection: Int64
    )] {
        for c in try await h.connectAll() {
            try await h.run(SyncConnectionHandler(environment: h.environment), args: #"{"connection_id":"\#(c.id)"}"#)
        }
        return try await accounts(h)
    }

    /// Every platform's `nexjobs_sync_reconcile_mismatch_total` added up.
    func mismatchesCounted(_ h: SyncHarness) async throws -> Int {
        try await h.db.pool.query("SELECT coalesce(sum(mismatches), 0)::int FROM nexcomet.sync_reconcile_counters")
            .first!.decode(0)
    }

    func latestRun(_ h: SyncHarness, _ account: Int64) async throws -> (status: String?, difference: String?) {
        let r = try await h.db.pool.query(
            """
            SELECT reconcile_status, reconcile_difference::text FROM nexcomet.sync_runs
             WHERE ad_account_id = \(account) AND outcome = 'succeeded' ORDER BY id DESC LIMIT 1
            """
        ).first!
        return (try r.decode(0), try r.decode(1))
    }

    /// A persistent disagreement: one re-sync of the window, then the difference is recorded, counted on
    /// /metrics and shown on the connection; the other accounts reconcile `ok`.
    func testAPersistentMismatchIsResyncedOnceThenRecordedCountedAndShown() async throws {
        let h = try await SyncHarness.make(tiktok: 1, snap: 1)
        addTeardownBlock { await h.close() }
        let all = try await discovered(h)
        let skewed = [
            try XCTUnwrap(all.first { $0.platform == "tiktok" }),
            try XCTUnwrap(all.first { $0.platform == "snapchat" }),
        ]
        for a in skewed { h.sandbox.skewAccountTotals(account: a.external, spendCents: 123) }
        h.sandbox.resetRequestCounts()
        let results = try await h.drain(SyncAdAccountHandler(environment: h.environment))
        for (job, error) in results { XCTAssertNil(error ?? nil, "job \(job)") }

        for a in all {
            let run = try await latestRun(h, a.id)
            if skewed.contains(where: { $0.id == a.id }) {
                XCTAssertEqual(run.status, "mismatch", a.external)
                let diff = try XCTUnwrap(run.difference)
                // 1.23 once: the 90-day window's totals are one answer (one request per sync).
                XCTAssertTrue(
                    diff.contains(#""difference": {"spend": 1.23, "conversions": 0, "impressions": 0}"#), diff)
            } else {
                XCTAssertEqual(run.status, "ok", a.external)
            }
        }
        // The window was fetched twice for a skewed account (the sync and one re-sync), once for the others.
        let log = h.sandbox.reportRequests()
        for a in all {
            let entityReports = log.filter {
                $0.accountID == a.external && ($0.level == "AUCTION_AD" || $0.level == "ad")
            }.count
            let expectedWindows = a.platform == "tiktok" ? 3 : 3  // 90 days in 30- / 31-day requests
            let twice = skewed.contains { $0.id == a.id }
            XCTAssertEqual(entityReports, expectedWindows * (twice ? 2 : 1), "\(a.platform) \(a.external)")
        }
        // The stored data is right (only the totals were skewed).
        let first = try await h.retainedFirstDays(days: 90)
        assertSameMetrics(try await h.databaseMetrics(from: first), h.truth(firstDay: first), "stored metrics")

        var service = WebService(pool: h.db.pool, webhookSecret: nil, logger: Logger(label: "t", minimum: .error))
        let token = String(repeating: "m", count: 32)
        service.metricsToken = Array(token.utf8)
        var headers = HTTPHeaders()
        headers.add("Authorization", "Bearer \(token)")
        let metrics = String(
            decoding: await service.router().handle(HTTPRequest(path: "/metrics", headers: headers)).body, as: UTF8.self
        )
        XCTAssertTrue(metrics.contains(#"nexjobs_sync_reconcile_mismatch_total{platform="tiktok"} 1"#), metrics)
        XCTAssertTrue(metrics.contains(#"nexjobs_sync_reconcile_mismatch_total{platform="snapchat"} 1"#), metrics)

        let (status, list) = try await NexjobsProcess.run(["connections", "list"], databaseURL: h.db.url)
        XCTAssertEqual(status, 0, list)
        for a in skewed {
            let line = try XCTUnwrap(list.split(separator: "\n").first { $0.hasPrefix("\(a.connection)\t") })
            XCTAssertTrue(line.hasSuffix("\tmismatch:1"), String(line))
        }
    }

    /// Issue 14: ONE account-level totals request per sync, over the whole synced window (90 days on a first sync:
    /// three 30/31-day report requests, but a single totals request for TikTok and for Snap).
    func testAFirstSyncMakesExactlyOneTotalsRequestOverTheWholeWindow() async throws {
        let h = try await SyncHarness.make(tiktok: 1, snap: 1)
        addTeardownBlock { await h.close() }
        let all = try await discovered(h)
        h.sandbox.resetRequestCounts()
        let results = try await h.drain(SyncAdAccountHandler(environment: h.environment))
        for (job, error) in results { XCTAssertNil(error ?? nil, "job \(job)") }
        let log = h.sandbox.reportRequests()
        XCTAssertEqual(Set(all.map(\.platform)), ["tiktok", "snapchat"])
        for a in all {
            let window = try await h.db.pool.query(
                """
                SELECT window_start::text, window_end::text FROM nexcomet.sync_runs
                 WHERE ad_account_id = \(a.id) AND outcome = 'succeeded'
                """
            ).map { (try $0.decode(0) as String, try $0.decode(1) as String) }
            XCTAssertEqual(window.count, 1, a.external)
            let (first, last) = try XCTUnwrap(window.first)
            let days = DateWindow(
                first: try XCTUnwrap(LocalDate(parsing: first)), last: try XCTUnwrap(LocalDate(parsing: last))
            ).dayCount
            XCTAssertGreaterThanOrEqual(days, 90, "a first sync's window")
            let mine = log.filter { $0.accountID == a.external }
            let totals = mine.filter { $0.granularity == "TOTAL" }
            XCTAssertEqual(totals.count, 1, "\(a.platform): one totals request per sync, not one per report window")
            XCTAssertEqual(totals.first?.first, first, a.platform)
            XCTAssertEqual(totals.first?.last, last, a.platform)
            let expectedLevel = a.platform == "tiktok" ? "AUCTION_ADVERTISER" : "campaign"
            XCTAssertEqual(totals.first?.level, expectedLevel)
            // The ad-level report still goes in 30/31-day windows.
            XCTAssertEqual(mine.filter { $0.granularity == "DAY" }.count, 3, a.platform)
            let run = try await latestRun(h, a.id)
            XCTAssertEqual(run.status, "ok", a.platform)
        }
    }

    /// A disagreement that a re-sync clears (here: the totals answer was off once) is `resynced`, not counted.
    func testATransientMismatchIsClearedByOneResync() async throws {
        let h = try await SyncHarness.make(tiktok: 1, snap: 0)
        addTeardownBlock { await h.close() }
        let all = try await discovered(h)
        // Off twice: the totals asked before the reports and asked again after them; the re-sync then agrees.
        h.sandbox.skewAccountTotals(account: all[0].external, spendCents: -5, times: 2)
        let results = try await h.drain(SyncAdAccountHandler(environment: h.environment))
        for (job, error) in results { XCTAssertNil(error ?? nil, "job \(job)") }
        let run = try await latestRun(h, all[0].id)
        XCTAssertEqual(run.status, "resynced")
        XCTAssertNil(run.difference)
        // Off once (the early answer predates a restatement): asking again agrees, and nothing is re-synced.
        h.sandbox.skewAccountTotals(account: all[0].external, spendCents: -5, times: 1)
        h.sandbox.resetRequestCounts()
        try await h.run(SyncAdAccountHandler(environment: h.environment), args: #"{"ad_account_id":\#(all[0].id)}"#)
        let again = try await latestRun(h, all[0].id)
        XCTAssertEqual(again.status, "ok")
        let log = h.sandbox.reportRequests().filter { $0.accountID == all[0].external }
        XCTAssertEqual(log.filter { $0.granularity == "TOTAL" }.count, 2, "asked before the reports and once more")
        XCTAssertEqual(log.filter { $0.granularity == "DAY" }.count, 1, "one window, no re-sync: \(log)")
        let counted = try await mismatchesCounted(h)
        XCTAssertEqual(counted, 0)
    }

    /// Today moves while a sync runs (every report request adds delivery to today, as a spending account's
    /// numbers grow): the stored sums lie between the totals asked before and after the reports, which is agreement,
    /// not a mismatch. Nothing is re-synced (3 report windows per account, 2 totals requests), nothing counted.
    /// Without the bracketing every account re-synced its 90 days and recorded a false mismatch.
    func testNumbersThatGrowDuringTheSyncAreNotAMismatch() async throws {
        let h = try await SyncHarness.make(tiktok: 1, snap: 1)
        addTeardownBlock { await h.close() }
        let all = try await discovered(h)
        for a in all { h.sandbox.setLiveToday(account: a.external, step: 7) }
        h.sandbox.resetRequestCounts()
        let results = try await h.drain(SyncAdAccountHandler(environment: h.environment))
        for (job, error) in results { XCTAssertNil(error ?? nil, "job \(job)") }
        let log = h.sandbox.reportRequests()
        for a in all {
            let run = try await latestRun(h, a.id)
            XCTAssertEqual(run.status, "ok", "\(a.platform) \(a.external): \(run.difference ?? "")")
            let mine = log.filter { $0.accountID == a.external }
            XCTAssertEqual(mine.filter { $0.granularity == "DAY" }.count, 3, "no re-sync: \(a.platform)")
            XCTAssertEqual(mine.filter { $0.granularity == "TOTAL" }.count, 2, "before and after the reports")
        }
        let counted = try await mismatchesCounted(h)
        XCTAssertEqual(counted, 0)
    }

    /// A difference one re-sync does not clear is re-synced at most once a day: the next sync (here the hourly one
    /// right after) records and counts it again without fetching its window twice.
    func testAPersistentMismatchIsResyncedAtMostOnceADay() async throws {
        let h = try await SyncHarness.make(tiktok: 1, snap: 0)
        addTeardownBlock { await h.close() }
        let all = try await discovered(h)
        let a = all[0]
        h.sandbox.skewAccountTotals(account: a.external, spendCents: 99)
        for (job, error) in try await h.drain(SyncAdAccountHandler(environment: h.environment)) {
            XCTAssertNil(error ?? nil, "job \(job)")
        }
        let first = try await latestRun(h, a.id)
        XCTAssertEqual(first.status, "mismatch")
        h.sandbox.resetRequestCounts()
        try await h.run(SyncAdAccountHandler(environment: h.environment), args: #"{"ad_account_id":\#(a.id)}"#)
        let again = try await latestRun(h, a.id)
        XCTAssertEqual(again.status, "mismatch")
        XCTAssertTrue(again.difference?.contains(#""resynced": false"#) ?? false, again.difference ?? "nil")
        let log = h.sandbox.reportRequests().filter { $0.accountID == a.external }
        XCTAssertEqual(log.filter { $0.granularity == "DAY" }.count, 1, "the incremental window once: \(log)")
        XCTAssertEqual(log.filter { $0.granularity == "TOTAL" }.count, 2)
        let counted = try await mismatchesCounted(h)
        XCTAssertEqual(counted, 2, "both syncs counted")
        // A day after the re-sync (the unsynced mismatch of an hour ago does not postpone it): re-synced again.
        try await h.db.pool.execute(
            """
            UPDATE nexcomet.sync_runs SET started_at = started_at - interval '25 hours'
             WHERE ad_account_id = \(a.id) AND reconcile_status = 'mismatch'
               AND NOT (reconcile_difference ? 'resynced')
            """)
        h.sandbox.resetRequestCounts()
        try await h.run(SyncAdAccountHandler(environment: h.environment), args: #"{"ad_account_id":\#(a.id)}"#)
        let third = h.sandbox.reportRequests().filter { $0.accountID == a.external }
        XCTAssertEqual(third.filter { $0.granularity == "DAY" }.count, 2, "re-synced once more: \(third)")
        let lastRun = try await latestRun(h, a.id)
        XCTAssertEqual(lastRun.status, "mismatch")
        XCTAssertFalse(lastRun.difference?.contains("resynced") ?? true, "this one followed a re-sync")
    }

    /// Issue 14, totals first: an account that delivered nothing in the window costs ONE request (the totals), not
    /// the lists and the report windows; when it starts delivering, the next sync fetches the lists and the
    /// window and stores exactly the truth.
    func testAQuietAccountCostsOneTotalsRequestAndIsSyncedInFullOnceItDelivers() async throws {
        let h = try await SyncHarness.make(tiktok: 1, snap: 1, quietAccountPercent: 100)
        addTeardownBlock { await h.close() }
        let all = try await discovered(h)
        XCTAssertEqual(Set(all.map(\.platform)), ["tiktok", "snapchat"])
        func requests(_ external: String) -> Int {
            h.sandbox.requestCounts().filter { $0.accountID == external }.reduce(0) { $0 + $1.count }
        }
        func run(_ account: Int64) async throws -> (calls: Int, rows: Int, status: String?) {
            let r = try await h.db.pool.query(
                """
                SELECT api_calls, rows_written, reconcile_status FROM nexcomet.sync_runs
                 WHERE ad_account_id = \(account) AND outcome = 'succeeded' ORDER BY id DESC LIMIT 1
                """
            ).first!
            return (try r.decode(0), try r.decode(1), try r.decode(2))
        }
        h.sandbox.resetRequestCounts()
        for (job, error) in try await h.drain(SyncAdAccountHandler(environment: h.environment)) {
            XCTAssertNil(error ?? nil, "job \(job)")
        }
        let log = h.sandbox.reportRequests()
        for a in all {
            XCTAssertEqual(requests(a.external), 1, "\(a.platform): a quiet first sync is one request")
            XCTAssertEqual(log.filter { $0.accountID == a.external }.map(\.granularity), ["TOTAL"], a.platform)
            let r = try await run(a.id)
            XCTAssertEqual(r.calls, 1, a.platform)
            XCTAssertEqual(r.rows, 0, a.platform)
            XCTAssertEqual(r.status, "ok", a.platform)
            let state = try await h.db.pool.query(
                """
                SELECT last_synced_date IS NOT NULL, entities_synced_at IS NULL,
                       (SELECT count(*) FROM nexcomet.daily_metrics WHERE ad_account_id = \(a.id))::int
                  FROM nexcomet.ad_accounts WHERE id = \(a.id)
                """
            ).first!
            XCTAssertTrue(try state.decode(0, as: Bool.self), "the window counts as synced")
            XCTAssertTrue(try state.decode(1, as: Bool.self), "no lists fetched")
            XCTAssertEqual(try state.decode(2, as: Int.self), 0)
        }

        // The advertisers start spending: the next sync (an incremental window) fetches lists and reports.
        for a in all { XCTAssertTrue(h.sandbox.setQuiet(account: a.external, false)) }
        h.sandbox.resetRequestCounts()
        let errors = try await h.resyncAccounts()
        XCTAssertEqual(errors, [:])
        var firstDays: [String: String] = [:]
        for a in all {
            let r = try await run(a.id)
            XCTAssertEqual(r.status, "ok", a.platform)
            XCTAssertGreaterThan(r.rows, 0, a.platform)
            // 1 totals + 3 lists + 1 report window (the lookback fits one 30/31-day request).
            XCTAssertEqual(r.calls, 5, a.platform)
            XCTAssertEqual(requests(a.external), 5, a.platform)
            let window: String = try await h.db.pool.query(
                """
                SELECT window_start::text FROM nexcomet.sync_runs
                 WHERE ad_account_id = \(a.id) AND outcome = 'succeeded' ORDER BY id DESC LIMIT 1
                """
            ).first!.decode(0)
            firstDays[a.external] = window
            let entities: Int = try await h.db.pool.query(
                "SELECT count(*)::int FROM nexcomet.ads WHERE ad_account_id = \(a.id)"
            ).first!.decode(0)
            XCTAssertGreaterThan(entities, 0, "\(a.platform): lists fetched once it delivers")
        }
        assertSameMetrics(try await h.databaseMetrics(), h.truth(firstDay: firstDays), "the synced window")

        // They stop again (over their whole history, as if restated to nothing): the platform's totals are zero but
        // the stored rows are not, so the full plan runs once and removes them; the sync after that is quiet.
        for a in all { XCTAssertTrue(h.sandbox.setQuiet(account: a.external, true)) }
        h.sandbox.resetRequestCounts()
        let errors2 = try await h.resyncAccounts()
        XCTAssertEqual(errors2, [:])
        for a in all {
            let r = try await run(a.id)
            XCTAssertEqual(r.status, "ok", a.platform)
            XCTAssertGreaterThan(r.rows, 0, "\(a.platform): stored rows were removed")
            XCTAssertEqual(r.calls, 2, "\(a.platform): totals + 1 window (the lists are fresh)")
        }
        let left: Int = try await h.db.pool.query("SELECT count(*)::int FROM nexcomet.daily_metrics").first!.decode(0)
        XCTAssertEqual(left, 0, "the window's rows are gone (the whole stored history lies in it)")
        h.sandbox.resetRequestCounts()
        let errors3 = try await h.resyncAccounts()
        XCTAssertEqual(errors3, [:])
        for a in all {
            let r = try await run(a.id)
            XCTAssertEqual(r.calls, 1, a.platform)
            XCTAssertEqual(requests(a.external), 1, a.platform)
        }

        // Still quiet a day later, but an ad was created meanwhile: lists stored before are refreshed at the usual
        // interval (totals + 3 lists), so the new ad reaches the database; the reports are still skipped.
        var added: [String: String] = [:]
        for a in all { added[a.external] = try XCTUnwrap(h.sandbox.addAd(account: a.external)) }
        h.advanceDays(1)
        h.sandbox.resetRequestCounts()
        let errors4 = try await h.resyncAccounts()
        XCTAssertEqual(errors4, [:])
        for a in all {
            let r = try await run(a.id)
            XCTAssertEqual(r.calls, 4, "\(a.platform): totals + the three lists")
            XCTAssertEqual(h.sandbox.reportRequests().filter { $0.accountID == a.external }.count, 1, a.platform)
            let stored: Int = try await h.db.pool.query(
                "SELECT count(*)::int FROM nexcomet.ads WHERE ad_account_id = \(a.id) AND external_id = \(added[a.external]!)"
            ).first!.decode(0)
            XCTAssertEqual(stored, 1, "\(a.platform): the ad created while quiet is stored")
        }
    }
}
