import Foundation
import Postgres
import XCTest

/// The checked parser and the timestamp text form: no input traps, ranges are enforced, every PostgreSQL value reads.
final class CheckedInputTests: XCTestCase {
    /// Durations too large for Int64 microseconds saturate instead of trapping (a signal), and stay intervals.
    func testHugeDurationsSaturateAsIntervals() {
        XCTAssertEqual(Duration.seconds(Int64.max).pgText, "\(Int64.max) microseconds")
        XCTAssertEqual(Duration.seconds(-Int64.max).pgText, "\(-Int64.max) microseconds")
        XCTAssertEqual(Duration.milliseconds(1500).pgText, "1500000 microseconds")
    }

    func testDurations() throws {
        XCTAssertEqual(CheckedInput.parseDuration("90s"), .seconds(90))
        XCTAssertEqual(CheckedInput.parseDuration("1h30m"), .seconds(5400))
        XCTAssertEqual(CheckedInput.parseDuration("250ms"), .milliseconds(250))
        XCTAssertEqual(CheckedInput.parseDuration("1.5"), .milliseconds(1500))
        XCTAssertEqual(CheckedInput.parseDuration("36500d"), .seconds(36500 * 86400))
        for bad in [
            "1e300", "inf", "-inf", "nan", "NaN", "-1s", "", "1e3s", "0x10", "99999999999999999999d",
            "9223372036854775807s", "1..5s", "5 s", "5parsecs", "s", "٣s", "36501d",
            String(repeating: "9", count: 5000),
        ] {
            XCTAssertNil(CheckedInput.parseDuration(bad), bad)
        }
        XCTAssertThrowsError(try CheckedInput.duration("2h", name: "--poll", range: .zero...(.seconds(3600)))) { e in
            XCTAssertEqual(
                (e as? InputError)?.message,
                "--poll must be a duration in 0s...1h (like 250ms, 90s, 5m, 2h, 1d), got '2h'")
        }
    }

    func testNumbers() throws {
        XCTAssertEqual(try CheckedInput.integer("42", name: "--n", range: 1...100), 42)
        for bad in ["9223372036854775808", "1e3", "0", "101", "nan", "", "4.0"] {
            XCTAssertThrowsError(try CheckedInput.integer(bad, name: "--n", range: 1...100), bad)
        }
        XCTAssertEqual(try CheckedInput.decimal("0.25", name: "--f", range: 0...1), 0.25)
        for bad in ["inf", "nan", "1e-1", "1.5", "-0.1", "0x1p-2"] {
            XCTAssertThrowsError(try CheckedInput.decimal(bad, name: "--f", range: 0...1), bad)
        }
    }

    func testTimestampsReadEveryPostgresForm() throws {
        XCTAssertEqual(PGTimestamp.parse("infinity")?.timeIntervalSince1970, .infinity)
        XCTAssertEqual(PGTimestamp.parse("-infinity")?.timeIntervalSince1970, -.infinity)
        XCTAssertEqual(PGTimestamp.format(PGTimestamp.parse("-infinity")!), "-infinity")
        let bc = try XCTUnwrap(PGTimestamp.parse("0044-03-15 00:00:00+00 BC"))
        XCTAssertEqual(PGTimestamp.format(bc), "0044-03-15T00:00:00.000000Z BC")
        let far = try XCTUnwrap(PGTimestamp.parse("200000-01-01 00:00:00+00"))
        XCTAssertEqual(PGTimestamp.format(far), "200000-01-01T00:00:00.000000Z")
        XCTAssertEqual(PGTimestamp.parse("0001-01-01 BC").map(PGTimestamp.format), "0001-01-01T00:00:00.000000Z BC")
        XCTAssertEqual(
            PGTimestamp.parse("2026-12-01T09:00:00+02:00").map(PGTimestamp.format), "2026-12-01T07:00:00.000000Z")
        for bad in [
            "2026-13-45", "2026-02-29", "2026-12-01 24:00:01", "2026-12-01 10:60:00", "0000-01-01 BC",
            "1e300", "2026-12-01T09:00:00+99", "1234567-01-01",
        ] {
            XCTAssertNil(PGTimestamp.parse(bad), bad)
        }
        XCTAssertEqual(PGTimestamp.format(Date(timeIntervalSince1970: 1e300)), "infinity")
        XCTAssertEqual(PGTimestamp.format(Date(timeIntervalSince1970: .nan)), "infinity")
        XCTAssertEqual(PGTimestamp.format(Date(timeIntervalSince1970: -1e300)), "-infinity")
        XCTAssertThrowsError(try CheckedInput.timestamp("10000-01-01T00:00:00Z", name: "--run-at"))
    }
}
