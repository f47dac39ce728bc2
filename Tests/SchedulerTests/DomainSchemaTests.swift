import Foundation
import PGTestSupport
import Postgres
import XCTest

/// The nexcomet domain schema (sql/020_domain.sql) and the scheduler migrations.
final class DomainSchemaTests: XCTestCase {
    func testMigrationsApplyTwiceWithoutError() async throws {
        let db = try await TestDatabase.create()
        for name in [
            "010_scheduler.sql", "020_domain.sql", "021_due_work.sql", "022_metrics_bulk.sql", "023_privacy.sql",
            "024_metrics_guards.sql", "025_privacy_tenancy.sql",
        ] {
            let sql = try String(contentsOf: TestDatabase.sqlDirectory.appendingPathComponent(name), encoding: .utf8)
            try await db.pool.withConnection { try await $0.simpleQuery(sql) }
        }
        let schedules: Int = try await db.pool.query("SELECT count(*) FROM nexjobs.schedules").first!.decode(0)
        XCTAssertEqual(schedules, 3, "seeds are not duplicated")
        await db.drop()
    }

    func testMetricsSummaryDerivesCPAAndROASFromSummedFactsExactly() async throws {
        let db = try await TestDatabase.create()
        try await db.pool.execute(
            """
            WITH o AS (INSERT INTO nexcomet.organizations (name) VALUES ('o') RETURNING id),
                 c AS (INSERT INTO nexcomet.ad_connections (organization_id, platform) SELECT id, 'tiktok' FROM o
                       RETURNING id)
            INSERT INTO nexcomet.ad_accounts (connection_id, platform, external_id, currency, timezone)
            SELECT id, 'tiktok', '7000000000000000001', 'EUR', 'Europe/Paris' FROM c
            """)
        // The campaign's CPA is its summed spend over summed conversions, 30.01 / 4 = 7.5025; averaging its ads'
        // CPAs (10.01 and 6.67) would give 8.34.
        try await db.pool.execute(
            """
            INSERT INTO nexcomet.daily_metrics (platform, ad_account_id, level, entity_id, date, campaign_id,
                                                currency, spend, impressions, clicks, conversions, conversion_value)
            VALUES ('tiktok', 1, 'ad', '9007199254740993', '2026-11-01', '1800000000000000001', 'EUR', 10.01, 1000, 10, 1, 20.00),
                   ('tiktok', 1, 'ad', '9007199254740995', '2026-11-01', '1800000000000000001', 'EUR', 20.00, 2000, 20, 3, 30.03),
                   ('tiktok', 1, 'campaign', '1800000000000000001', '2026-11-01', NULL, 'EUR', 30.01, 3000, 30, 4, 50.03),
                   ('tiktok', 1, 'ad', '9007199254740997', '2026-11-01', '1800000000000000001', 'EUR', 5.00, 10, 0, 0, 0)
            """)
        let campaign = try await db.pool.query(
            """
            SELECT cpa::text, roas::text, spend::text FROM nexcomet.metrics_summary
             WHERE level = 'campaign' AND entity_id = '1800000000000000001'
            """
        ).first
        XCTAssertEqual(try campaign?.decode(0, as: String.self).hasPrefix("7.5025"), true)
        XCTAssertEqual(try campaign?.decode(1, as: String.self).hasPrefix("1.667"), true)
        XCTAssertEqual(try campaign?.decode(2, as: String.self), "30.01")
        let noConversions = try await db.pool.query(
            """
            SELECT cpa, roas::text FROM nexcomet.metrics_summary WHERE entity_id = '9007199254740997'
            """
        ).first
        XCTAssertNil(noConversions?.text(0), "CPA is NULL, not an error, without conversions")
        XCTAssertEqual(try noConversions?.decode(1, as: String.self), "0.00000000000000000000")
        // Entity ids above 2^53 stay exact text.
        let ids: [String] = try await db.pool.query(
            """
            SELECT entity_id FROM nexcomet.daily_metrics WHERE level = 'ad' ORDER BY entity_id
            """
        ).map { try $0.decode(0) }
        XCTAssertEqual(ids, ["9007199254740993", "9007199254740995", "9007199254740997"])
        await db.drop()
    }

    func testOneOpenReauthNotificationPerConnection() async throws {
        let db = try await TestDatabase.create()
        try await db.pool.execute("INSERT INTO nexcomet.organizations (id, name) VALUES (1, 'o')")
        try await db.pool.execute(
            "INSERT INTO nexcomet.ad_connections (id, organization_id, platform) VALUES (1, 1, 'snapchat')")
        let insert: PGQuery = """
            INSERT INTO nexcomet.notifications (organization_id, connection_id, kind, payload)
            VALUES (1, 1, 'reauth_required', '{}')
            ON CONFLICT (connection_id) WHERE kind = 'reauth_required' AND sent_at IS NULL DO NOTHING
            """
        let first = try await db.pool.execute(insert)
        let second = try await db.pool.execute(insert)
        XCTAssertEqual(first, 1)
        XCTAssertEqual(second, 0, "a second open notice for the same connection is not written")
        try await db.pool.execute("UPDATE nexcomet.notifications SET sent_at = now()")
        let afterSent = try await db.pool.execute(insert)
        XCTAssertEqual(afterSent, 1, "once the mailer sent it, a new one may open")
        await db.drop()
    }

    func testMoneyColumnsAreNumericAndPlatformIdsAreText() async throws {
        let db = try await TestDatabase.create()
        let types = try await db.pool.query(
            """
            SELECT table_name || '.' || column_name, data_type FROM information_schema.columns
             WHERE table_schema = 'nexcomet'
               AND column_name IN ('spend', 'conversion_value', 'budget', 'external_id', 'entity_id')
             ORDER BY 1
            """)
        XCTAssertFalse(types.isEmpty)
        for row in types {
            let column: String = try row.decode(0)
            let type: String = try row.decode(1)
            let expected = column.hasSuffix("_id") ? "text" : "numeric"
            XCTAssertEqual(type, expected, column)
        }
        await db.drop()
    }

    /// sql/022 replaced the row-level foreign key of daily_metrics with statement-level triggers; the guarantees
    /// must be the foreign key's.
    func testMetricsAccountsAreCheckedLockedAndCascaded() async throws {
        let db = try await TestDatabase.create()
        addTeardownBlock { await db.drop() }
        try await db.pool.execute(
            """
            WITH o AS (INSERT INTO nexcomet.organizations (id, name) VALUES (1, 'o') RETURNING id),
                 c AS (INSERT INTO nexcomet.ad_connections (id, organization_id, platform)
                       SELECT 1, id, 'tiktok' FROM o RETURNING id)
            INSERT INTO nexcomet.ad_accounts (id, connection_id, platform, external_id, currency, timezone)
            SELECT n, 1, 'tiktok', n::text, 'USD', 'UTC' FROM c, generate_series(1, 2) n
            """)
        func insert(_ account: Int) -> PGQuery {
            """
            INSERT INTO nexcomet.daily_metrics (platform, ad_account_id, level, entity_id, date, currency, spend)
            VALUES ('tiktok', \(account), 'ad', '1', '2026-11-01', 'USD', 1.00)
            """
        }
        for bad in [insert(99), "UPDATE nexcomet.daily_metrics SET ad_account_id = 99" as PGQuery] {
            if bad.sql.hasPrefix("UPDATE") { try await db.pool.execute(insert(1)) }
            do {
                try await db.pool.execute(bad)
                XCTFail("a metrics row naming a missing account must be refused")
            } catch let e as PGError {
                XCTAssertEqual(e.sqlState, "23503", e.description)
                XCTAssertTrue(e.message.contains("ad account 99"), e.message)
            }
        }
        try await db.pool.execute(insert(2))
        do {
            try await db.pool.execute("UPDATE nexcomet.ad_accounts SET id = 50 WHERE id = 2")
            XCTFail("an account id with metrics must not change")
        } catch let e as PGError {
            XCTAssertEqual(e.sqlState, "23503", e.description)
        }

        // A writer holds the account until it commits: a concurrent delete waits, then cascades to its rows.
        let writer = try await PGConnection.connect(PGConfig(db.url))
        try await writer.simpleQuery("BEGIN")
        try await writer.execute(
            """
            INSERT INTO nexcomet.daily_metrics (platform, ad_account_id, level, entity_id, date, currency, spend)
            VALUES ('tiktok', 2, 'ad', '2', '2026-11-02', 'USD', 2.00)
            """)
        let delete = Task { try await db.pool.execute("DELETE FROM nexcomet.ad_accounts WHERE id = 2") }
        try await assertEventually("the delete waits for the writer") {
            try await db.lockWaiters() == 1
        }
        try await writer.simpleQuery("COMMIT")
        await writer.close()
        let deleted = try await delete.value
        XCTAssertEqual(deleted, 1)
        let left: [Int64] = try await db.pool.query(
            "SELECT DISTINCT ad_account_id FROM nexcomet.daily_metrics ORDER BY 1"
        ).map { try $0.decode(0) }
        XCTAssertEqual(left, [1], "the deleted account's rows, the committed one included, are gone")

        // Under REPEATABLE READ the trigger's snapshot could miss a concurrent writer's rows: refused, not orphaned.
        do {
            try await db.pool.withTransaction { c in
                try await c.simpleQuery("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                try await c.execute("DELETE FROM nexcomet.ad_accounts WHERE id = 1")
            }
            XCTFail("a REPEATABLE READ delete of an account with metrics must be refused")
        } catch let e as PGError {
            XCTAssertEqual(e.sqlState, "0A000", e.description)
        }
        // TRUNCATE ... CASCADE reaches the metrics too.
        try await db.pool.execute(
            """
            INSERT INTO nexcomet.ad_accounts (id, connection_id, platform, external_id, currency)
            VALUES (3, 1, 'tiktok', '3', 'USD')
            """)
        try await db.pool.execute(insert(3))
        try await db.pool.withConnection { c in
            try await c.simpleQuery("BEGIN; TRUNCATE nexcomet.ad_accounts CASCADE")
            let left: Int = try await c.query("SELECT count(*)::int FROM nexcomet.daily_metrics").first!.decode(0)
            XCTAssertEqual(left, 0)
            try await c.simpleQuery("ROLLBACK")
        }

        // Deleting the organization cascades through connections and accounts to the metrics.
        try await db.pool.execute("DELETE FROM nexcomet.organizations WHERE id = 1")
        let none: Int = try await db.pool.query("SELECT count(*)::int FROM nexcomet.daily_metrics").first!.decode(0)
        XCTAssertEqual(none, 0)
    }
}
