import Foundation
import PGTestSupport
import Platforms
import Postgres
import XCTest

@testable import Sync

/// `SyncWriter.replaceMetrics` on its own: the fresh-window COPY path, the stage + upsert path, the window delete,
/// and two writers of one account at once.
final class SyncWriterTests: XCTestCase {
    let first = LocalDate(year: 2026, month: 3, day: 1)!
    var window: DateWindow { DateWindow(first: first, last: first.adding(days: 9)) }

    func account(_ db: TestDatabase) async throws -> Int64 {
        try await db.pool.query(
            """
            WITH o AS (INSERT INTO nexcomet.organizations (name) VALUES ('o') RETURNING id),
                 c AS (INSERT INTO nexcomet.ad_connections (organization_id, platform) SELECT id, 'tiktok' FROM o
                       RETURNING id)
            INSERT INTO nexcomet.ad_accounts (connection_id, platform, external_id, currency, timezone)
            SELECT id, 'tiktok', '7000000000000000001', 'USD', 'UTC' FROM c RETURNING id
            """
        ).first!.decode(0)
    }

    /// 3 ads x 10 days; spend in cents to exercise exact decimals.
    func rows(spendBump: Decimal = 0, skip: Set<Int> = []) -> [DailyMetric] {
        var out: [DailyMetric] = []
        for e in 0..<3 {
            for d in 0..<10 where !skip.contains(e * 10 + d) {
                out.append(
                    DailyMetric(
                        platform: .tiktok, accountId: "7000000000000000001", level: .ad,
                        entityId: String(9_007_199_254_740_993 + e), date: first.adding(days: d), currency: "USD",
                        spend: Decimal(e * 100 + d) / 100 + (e == 0 && d == 0 ? spendBump : 0), impressions: 10,
                        clicks: 1, conversions: 1, conversionValue: Decimal(string: "0.07")!))
            }
        }
        return out
    }

    func write(_ rows: [DailyMetric], _ id: Int64, _ db: TestDatabase) async throws -> MetricsWriteResult {
        try await db.pool.withTransaction { c in
            try await SyncWriter.replaceMetrics(
                rows, adAccountID: id, platform: .tiktok, window: self.window,
                parents: SyncWriter.Parents(entities: []), finalBefore: self.first.adding(days: 5), on: c)
        }
    }

    func versions(_ db: TestDatabase) async throws -> [String: String] {
        var out: [String: String] = [:]
        for r in try await db.pool.query(
            "SELECT entity_id || '|' || date, ctid::text || '/' || xmin::text FROM nexcomet.daily_metrics")
        {
            out[try r.decode(0)] = try r.decode(1)
        }
        return out
    }

    func testFreshWindowThenUnchangedThenChangedThenGoneRows() async throws {
        let db = try await TestDatabase.create()
        addTeardownBlock { await db.drop() }
        let id = try await account(db)

        // Rows outside the window, rows without activity and a duplicate key (the last wins) are all handled.
        var input = rows()
        input.append(
            DailyMetric(
                platform: .tiktok, accountId: "x", level: .ad, entityId: "1", date: first.adding(days: -1),
                currency: "USD", spend: 5, impressions: 1, clicks: 1, conversions: 0, conversionValue: 0))
        input.append(
            DailyMetric(
                platform: .tiktok, accountId: "x", level: .ad, entityId: "2", date: first, currency: "USD", spend: 0,
                impressions: 0, clicks: 0, conversions: 0, conversionValue: 0))
        input.insert(
            DailyMetric(
                platform: .tiktok, accountId: "x", level: .ad, entityId: "9007199254740993", date: first,
                currency: "USD", spend: 999, impressions: 1, clicks: 1, conversions: 0, conversionValue: 0), at: 0)
        let fresh = try await write(input, id, db)
        XCTAssertEqual(fresh, MetricsWriteResult(upserted: 30, deleted: 0))
        let stored = try await db.pool.query(
            """
            SELECT count(*)::int, sum(spend)::text, sum(conversion_value)::text, count(*) FILTER (WHERE is_final)::int
              FROM nexcomet.daily_metrics WHERE ad_account_id = \(id)
            """
        ).first!
        XCTAssertEqual(try stored.decode(0, as: Int.self), 30)
        // sum over e in 0..<3, d in 0..<10 of (100e + d) / 100 = (10 * 300 + 3 * 45) / 100 = 31.35
        XCTAssertEqual(try stored.decode(1, as: String.self), "31.35", "the duplicate's 999 lost to the later row")
        XCTAssertEqual(try stored.decode(2, as: String.self), "2.10")
        XCTAssertEqual(try stored.decode(3, as: Int.self), 15, "days before finalBefore are final")

        let before = try await versions(db)
        let rerun = try await write(rows(), id, db)
        XCTAssertEqual(rerun, MetricsWriteResult(upserted: 0, deleted: 0))
        let afterRerun = try await versions(db)
        XCTAssertEqual(before, afterRerun, "an unchanged rerun rewrites no tuple")

        let changed = try await write(rows(spendBump: Decimal(string: "0.01")!), id, db)
        XCTAssertEqual(changed, MetricsWriteResult(upserted: 1, deleted: 0))
        let afterChange = try await versions(db)
        XCTAssertEqual(afterChange.filter { before[$0.key] != $0.value }.count, 1, "only the changed row is rewritten")

        // The platform stops reporting two entity-days of the window: they are deleted, nothing else is touched.
        let gone = try await write(rows(spendBump: Decimal(string: "0.01")!, skip: [3, 27]), id, db)
        XCTAssertEqual(gone, MetricsWriteResult(upserted: 0, deleted: 2))
        let afterGone = try await versions(db)
        XCTAssertEqual(afterGone.count, 28)
        XCTAssertEqual(afterGone.filter { afterChange[$0.key] != $0.value }.count, 0)
    }

    func testTwoWritersOfOneFreshWindowTakeTurns() async throws {
        let db = try await TestDatabase.create()
        addTeardownBlock { await db.drop() }
        let id = try await account(db)
        let holder = try await PGConnection.connect(PGConfig(db.url))
        try await holder.simpleQuery("BEGIN")
        let firstWrite = try await SyncWriter.replaceMetrics(
            rows(), adAccountID: id, platform: .tiktok, window: window, parents: SyncWriter.Parents(entities: []),
            finalBefore: first, on: holder)
        XCTAssertEqual(firstWrite.upserted, 30)
        // The second writer also sees an empty window until the first commits; it must wait, not COPY duplicates.
        let (data, window, final) = (rows(), window, first)
        let second = Task {
            try await db.pool.withTransaction { c in
                try await SyncWriter.replaceMetrics(
                    data, adAccountID: id, platform: .tiktok, window: window,
                    parents: SyncWriter.Parents(entities: []), finalBefore: final, on: c)
            }
        }
        try await assertEventually("the second writer waits on the account lock") {
            try await db.lockWaiters() == 1
        }
        try await holder.simpleQuery("COMMIT")
        let secondWrite = try await second.value
        XCTAssertEqual(secondWrite, MetricsWriteResult(upserted: 0, deleted: 0), "it merges into the committed rows")
        let count: Int = try await db.pool.query("SELECT count(*)::int FROM nexcomet.daily_metrics").first!.decode(0)
        XCTAssertEqual(count, 30)
        await holder.close()
    }

    func testMissingAccountFailsClearly() async throws {
        let db = try await TestDatabase.create()
        addTeardownBlock { await db.drop() }
        do {
            _ = try await write(rows(), 424_242, db)
            XCTFail("writing metrics of a missing account must fail")
        } catch let e as PGError {
            XCTAssertTrue(e.description.contains("ad account 424242 does not exist"), e.description)
        }
    }

    /// Stored counts whose sum exceeds Int64 (two ad rows of 2^62 impressions: 2^63) made `storedTotals` fail with
    /// 22003 (numeric out of range for bigint) on every attempt of the sync job; the sum is now held at Int64.max,
    /// so reconciliation sees a mismatch instead of an error.
    func testStoredTotalsSaturateHugeImpressionSums() async throws {
        let db = try await TestDatabase.create()
        addTeardownBlock { await db.drop() }
        let id = try await account(db)
        try await db.pool.execute(
            """
            INSERT INTO nexcomet.daily_metrics
                   (platform, ad_account_id, level, entity_id, date, currency, spend, impressions, conversions)
            SELECT 'tiktok', \(id), 'ad', e, \(first.description)::date, 'USD', 1.25, 4611686018427387904, 2
              FROM unnest(ARRAY['1', '2']) AS e
            """)
        let totals = try await SyncAdAccountHandler.storedTotals(id, window: window, on: db.pool)
        XCTAssertEqual(totals.impressions, Int64.max)
        XCTAssertEqual(totals.spend, Decimal(string: "2.5"))
        XCTAssertEqual(totals.conversions, 4)
        let quiet = try await SyncAdAccountHandler.storedIsQuiet(id, window: window, on: db.pool)
        XCTAssertFalse(quiet)
    }
}
