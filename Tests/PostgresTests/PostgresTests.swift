import Foundation
import PGTestSupport
import Postgres
import XCTest

final class PostgresTests: XCTestCase {
    func testTypedBindsAndDecoding() async throws {
        let db = try await TestDatabase.create(migrate: false)
        addTeardownBlock { await db.drop() }
        let big = Int64(7_001_035_076_276_387_841)
        let money = Decimal(string: "1234567.89")!
        let when = Date(timeIntervalSince1970: 1_700_000_000.123456)
        let row = try await db.pool.query(
            """
            SELECT \(big)::bigint, \(money)::numeric, \(when)::timestamptz, \("it's \"quoted\"")::text,
                   \(Optional<String>.none)::text, \(true)::boolean, \([1, 2, 3] as [Int64])::bigint[],
                   \(["a,b", "c\"d", "e\\f"])::text[]
            """
        ).first!
        XCTAssertEqual(try row.decode(0, as: Int64.self), big)
        XCTAssertEqual(try row.decode(1, as: Decimal.self), money)
        XCTAssertEqual(
            try row.decode(2, as: Date.self).timeIntervalSince1970, when.timeIntervalSince1970, accuracy: 1e-6)
        XCTAssertEqual(try row.decode(3, as: String.self), "it's \"quoted\"")
        XCTAssertNil(try row.decode(4, as: String?.self))
        XCTAssertThrowsError(try row.decode(4, as: String.self))
        XCTAssertEqual(try row.decode(5, as: Bool.self), true)
        XCTAssertEqual(row.text(6), "{1,2,3}")
        XCTAssertEqual(row.text(7), #"{"a,b","c\"d","e\\f"}"#)
    }

    /// Decimal binds use a fast integer path; every value must still reach the server exactly, including those the
    /// fast path hands back to `description` (over 64 bits, positive exponents).
    func testDecimalBindsAreExact() async throws {
        let db = try await TestDatabase.create(migrate: false)
        addTeardownBlock { await db.drop() }
        let cases: [(String, String)] = [
            ("0", "0"), ("-0.05", "-0.05"), ("12.34", "12.34"), ("-12.3400", "-12.34"), ("0.000001", "0.000001"),
            ("1e5", "100000"), ("18446744073709551615", "18446744073709551615"),
            ("18446744073709551616", "18446744073709551616"),
            ("123456789012345678901234567890.5", "123456789012345678901234567890.5"),
            ("0.00000000000000000000000000000000000001", "0.00000000000000000000000000000000000001"),
            ("9007199254740993.01", "9007199254740993.01"),
        ]
        for (input, expected) in cases {
            let d = Decimal(string: input)!
            XCTAssertEqual(d.pgText, expected, input)
            let back: String = try await db.pool.query("SELECT \(d)::numeric::text").first!.decode(0)
            XCTAssertEqual(Decimal(string: back), d, input)
        }
        // Every amount of cents up to 100,000.00, and micro-currency, both signs.
        for n in stride(from: -10_000_000, through: 10_000_000, by: 997) {
            for scale in [2, 6] {
                var d = Decimal(n)
                var scaled = Decimal()
                _ = NSDecimalMultiplyByPowerOf10(&scaled, &d, Int16(-scale), .plain)
                XCTAssertEqual(Decimal(string: scaled.pgText!), scaled, "\(n)e-\(scale)")
                XCTAssertEqual(scaled.pgText, scaled.description, "\(n)e-\(scale)")
            }
        }
    }

    func testInjectionIsImpossibleThroughInterpolation() async throws {
        let db = try await TestDatabase.create(migrate: false)
        addTeardownBlock { await db.drop() }
        try await db.pool.execute("CREATE TABLE t (v text)")
        let hostile = "x'); DROP TABLE t; --"
        try await db.pool.execute("INSERT INTO t (v) VALUES (\(hostile))")
        let v: String = try await db.pool.query("SELECT v FROM t").first!.decode(0)
        XCTAssertEqual(v, hostile)
    }

    func testServerErrorsCarrySQLStateAndHideDetail() async throws {
        let db = try await TestDatabase.create(migrate: false)
        addTeardownBlock { await db.drop() }
        try await db.pool.execute("CREATE TABLE u (k text PRIMARY KEY)")
        try await db.pool.execute("INSERT INTO u VALUES ('secret-value')")
        do {
            try await db.pool.execute("INSERT INTO u VALUES (\("secret-value"))")
            XCTFail("expected a unique violation")
        } catch let e as PGError {
            XCTAssertEqual(e.sqlState, "23505")
            XCTAssertTrue(e.isUniqueViolation)
            XCTAssertFalse(e.description.contains("secret-value"), e.description)
            XCTAssertTrue(e.debugDescription.contains("secret-value"))
        }
    }

    func testTransactionCommitsAndRollsBack() async throws {
        let db = try await TestDatabase.create(migrate: false)
        addTeardownBlock { await db.drop() }
        try await db.pool.execute("CREATE TABLE t (v int)")
        try await db.pool.withTransaction { c in try await c.execute("INSERT INTO t VALUES (1)") }
        struct Boom: Error {}
        do {
            try await db.pool.withTransaction { c -> Int in
                try await c.execute("INSERT INTO t VALUES (2)")
                throw Boom()
            }
            XCTFail("expected Boom")
        } catch is Boom {}
        let n: Int = try await db.pool.query("SELECT count(*)::int FROM t").first!.decode(0)
        XCTAssertEqual(n, 1)
    }

    func testPoolBoundsConnectionsUnderConcurrency() async throws {
        let db = try await TestDatabase.create(maxConnections: 3, migrate: false)
        addTeardownBlock { await db.drop() }
        let pool = try PGPool(url: db.url, maxConnections: 3, applicationName: "pooltest")
        let sum = try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<50 {
                group.addTask {
                    try await pool.query("SELECT \(i)::int, pg_sleep(0.01)").first!.decode(0, as: Int.self)
                }
            }
            return try await group.reduce(0, +)
        }
        XCTAssertEqual(sum, (0..<50).reduce(0, +))
        let open: Int = try await db.pool.query(
            "SELECT count(*)::int FROM pg_stat_activity WHERE application_name = 'pooltest'"
        ).first!.decode(0)
        XCTAssertLessThanOrEqual(open, 3)
        await pool.close()
    }

    func testCopyInBulkLoadsWithEscaping() async throws {
        let db = try await TestDatabase.create(migrate: false)
        addTeardownBlock { await db.drop() }
        try await db.pool.execute("CREATE TABLE c (id int, v text)")
        var rows: [[String?]] = (0..<20_000).map { [String($0), "row \($0)"] }
        rows.append(["-1", "tab\there\nnewline \\ backslash"])
        rows.append(["-2", nil])
        let n = try await db.pool.withConnection {
            try await $0.copyIn(unsafeSQL: "COPY c (id, v) FROM STDIN", rows: rows)
        }
        XCTAssertEqual(n, 20_002)
        let v: String = try await db.pool.query("SELECT v FROM c WHERE id = -1").first!.decode(0)
        XCTAssertEqual(v, "tab\there\nnewline \\ backslash")
        let isNull: Bool = try await db.pool.query("SELECT v IS NULL FROM c WHERE id = -2").first!.decode(0)
        XCTAssertTrue(isNull)
    }

    func testCopyFailureReportsServerError() async throws {
        let db = try await TestDatabase.create(migrate: false)
        addTeardownBlock { await db.drop() }
        try await db.pool.execute("CREATE TABLE c (id int)")
        do {
            try await db.pool.withConnection {
                try await $0.copyIn(unsafeSQL: "COPY c (id) FROM STDIN", rows: [["nope"]])
            }
            XCTFail("expected an error")
        } catch let e as PGError {
            XCTAssertEqual(e.sqlState, "22P02")
        }
        // The connection is still usable afterwards.
        let one: Int = try await db.pool.query("SELECT 1").first!.decode(0)
        XCTAssertEqual(one, 1)
    }

    func testListenReceivesNotifications() async throws {
        let db = try await TestDatabase.create(migrate: false)
        addTeardownBlock { await db.drop() }
        let got = LockedBox<[String]>([])
        let listener = PGListener(
            config: db.pool.config, channels: ["chan one"],
            onNotify: { n in
                got.mutate { $0.append(n.payload) }
            })
        listener.start()
        defer { listener.stop() }
        try await db.pool.execute("SELECT pg_notify(\("chan one"), \("hello"))")
        let ok = await waitUntil(timeout: .seconds(10)) { got.value == ["hello"] }
        XCTAssertTrue(ok, "got \(got.value)")
    }

    func testBadURLsGiveClearErrorsWithoutThePassword() async throws {
        XCTAssertThrowsError(try PGConfig("")) { XCTAssertTrue("\($0)".contains("empty")) }
        XCTAssertThrowsError(try PGConfig("host=localhost password=hunter2 port")) { e in
            XCTAssertFalse("\(e)".contains("hunter2"), "\(e)")
            XCTAssertTrue("\(e)".contains("invalid connection string"), "\(e)")
        }
        do {
            _ = try await PGConnection.connect(try PGConfig("postgres://u:hunter2@127.0.0.1:notaport/db"))
            XCTFail("expected a failure")
        } catch {
            XCTAssertFalse("\(error)".contains("hunter2"), "\(error)")
            XCTAssertTrue("\(error)".contains("notaport"), "\(error)")
        }
        let config = try PGConfig("postgres://u:hunter2@127.0.0.1:1/db")
        XCTAssertFalse(config.redacted.contains("hunter2"))
        do {
            _ = try await PGConnection.connect(config)
            XCTFail("expected a connection failure")
        } catch let e as PGError {
            XCTAssertEqual(e.code, .connectionFailed)
            XCTAssertFalse(e.description.contains("hunter2"))
            XCTAssertTrue(e.description.contains("127.0.0.1") || e.description.contains("connect"), e.description)
        }
    }

    func testTimestampParsing() throws {
        XCTAssertEqual(PGTimestamp.parse("2024-03-10 10:00:00+00")?.timeIntervalSince1970, 1_710_064_800)
        XCTAssertEqual(PGTimestamp.parse("2024-03-10 02:00:00-08")?.timeIntervalSince1970, 1_710_064_800)
        XCTAssertEqual(PGTimestamp.parse("2024-03-10T10:00:00.5Z")?.timeIntervalSince1970, 1_710_064_800.5)
        XCTAssertEqual(PGTimestamp.parse("1970-01-01 00:00:00+05:30")?.timeIntervalSince1970, -19_800)
        XCTAssertNil(PGTimestamp.parse("2024-03-10 xx"))
        let d = Date(timeIntervalSince1970: 1_710_064_800.25)
        XCTAssertEqual(PGTimestamp.parse(PGTimestamp.format(d)), d)
    }
}

/// A value shared between tasks in a test, guarded by a lock.
final class LockedBox<T: Sendable>: @unchecked Sendable {
    // `lock` guards `stored`.
    private let lock = NSLock()
    private var stored: T
    init(_ v: T) { stored = v }
    var value: T {
        lock.lock()
        defer { lock.unlock() }
        return stored
    }
    func mutate(_ f: (inout T) -> Void) {
        lock.lock()
        f(&stored)
        lock.unlock()
    }
}
