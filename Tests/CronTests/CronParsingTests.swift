import Foundation
import XCTest

@testable import Cron

final class CronParsingTests: XCTestCase {
    private func minutes(_ text: String) -> [String] {
        let expression = cron(text)
        return expression.fireTimes(
            from: instant("2026-01-05T10:00:00Z"), through: instant("2026-01-05T10:59:59Z"), in: utc
        ).map { local($0, utc) }
    }

    func testListsRangesAndSteps() {
        XCTAssertEqual(
            minutes("0,15,45 * * * *"),
            ["2026-01-05T10:00:00Z", "2026-01-05T10:15:00Z", "2026-01-05T10:45:00Z"])
        XCTAssertEqual(
            minutes("10-12 * * * *"),
            ["2026-01-05T10:10:00Z", "2026-01-05T10:11:00Z", "2026-01-05T10:12:00Z"])
        XCTAssertEqual(
            minutes("*/15 * * * *"),
            ["2026-01-05T10:00:00Z", "2026-01-05T10:15:00Z", "2026-01-05T10:30:00Z", "2026-01-05T10:45:00Z"])
        XCTAssertEqual(
            minutes("1-30/10 * * * *"),
            ["2026-01-05T10:01:00Z", "2026-01-05T10:11:00Z", "2026-01-05T10:21:00Z"])
        XCTAssertEqual(
            minutes("50/4 * * * *"),
            ["2026-01-05T10:50:00Z", "2026-01-05T10:54:00Z", "2026-01-05T10:58:00Z"])
        XCTAssertEqual(
            minutes("5,1-3,59/1 * * * *"),
            [
                "2026-01-05T10:01:00Z", "2026-01-05T10:02:00Z", "2026-01-05T10:03:00Z", "2026-01-05T10:05:00Z",
                "2026-01-05T10:59:00Z",
            ])
        XCTAssertEqual(minutes("* * * * *").count, 60)
        XCTAssertEqual(minutes("0 11 * * *"), [])
    }

    func testHourField() {
        let expression = cron("30 */6 * * *")
        let fires = expression.fireTimes(
            from: instant("2026-01-05T00:00:00Z"), through: instant("2026-01-05T23:59:00Z"), in: utc)
        XCTAssertEqual(
            fires.map { local($0, utc) },
            ["2026-01-05T00:30:00Z", "2026-01-05T06:30:00Z", "2026-01-05T12:30:00Z", "2026-01-05T18:30:00Z"])
    }

    func testMonthAndDayNames() {
        // 2026-01-05 is a Monday.
        let weekdays = cron("0 9 * jan,JUL Mon-fri")
        let fires = weekdays.fireTimes(
            from: instant("2026-01-01T00:00:00Z"), through: instant("2026-01-11T23:59:00Z"), in: utc)
        XCTAssertEqual(
            fires.map { local($0, utc) },
            [
                "2026-01-01T09:00:00Z", "2026-01-02T09:00:00Z", "2026-01-05T09:00:00Z", "2026-01-06T09:00:00Z",
                "2026-01-07T09:00:00Z", "2026-01-08T09:00:00Z", "2026-01-09T09:00:00Z",
            ])
        XCTAssertEqual(
            local(weekdays.next(after: instant("2026-01-31T12:00:00Z"), in: utc), utc), "2026-07-01T09:00:00Z")
    }

    func testSundayIsZeroAndSeven() {
        let zero = cron("0 0 * * 0")
        let seven = cron("0 0 * * 7")
        let named = cron("0 0 * * SUN")
        XCTAssertEqual(zero, seven)
        XCTAssertEqual(zero, named)
        // 2026-01-04 is a Sunday.
        XCTAssertEqual(local(seven.next(after: instant("2026-01-01T00:00:00Z"), in: utc), utc), "2026-01-04T00:00:00Z")
        XCTAssertEqual(cron("0 0 * * 5-7"), cron("0 0 * * FRI-SUN"))
        XCTAssertEqual(cron("0 0 * * 0-7"), cron("0 0 * * *"))
        XCTAssertEqual(cron("0 0 * * 5-7"), cron("0 0 * * 0,5,6"))
    }

    func testMacros() {
        XCTAssertEqual(cron("@hourly"), cron("0 * * * *"))
        XCTAssertEqual(cron("@daily"), cron("0 0 * * *"))
        XCTAssertEqual(cron("@midnight"), cron("0 0 * * *"))
        XCTAssertEqual(cron("@weekly"), cron("0 0 * * 0"))
        XCTAssertEqual(cron("@monthly"), cron("0 0 1 * *"))
        XCTAssertEqual(cron("@yearly"), cron("0 0 1 1 *"))
        XCTAssertEqual(cron("@ANNUALLY"), cron("0 0 1 1 *"))
        XCTAssertNotEqual(cron("@daily"), cron("@hourly"))
        XCTAssertEqual(cron("  @daily ").description, "@daily")
    }

    func testInvalidExpressionsNameFieldAndValue() {
        let cases: [(String, CronExpressionError.Code, CronExpressionError.Field?, String)] = [
            ("", .empty, nil, ""),
            ("   ", .empty, nil, "   "),
            ("* * * *", .wrongFieldCount, nil, "* * * *"),
            ("* * * * * *", .wrongFieldCount, nil, "* * * * * *"),
            ("@reboot", .unknownMacro, nil, "@reboot"),
            ("@every", .unknownMacro, nil, "@every"),
            ("60 * * * *", .outOfRange, .minute, "60"),
            ("* 24 * * *", .outOfRange, .hour, "24"),
            ("* * 0 * *", .outOfRange, .dayOfMonth, "0"),
            ("* * 32 * *", .outOfRange, .dayOfMonth, "32"),
            ("* * * 13 *", .outOfRange, .month, "13"),
            ("* * * 0 *", .outOfRange, .month, "0"),
            ("* * * * 8", .outOfRange, .dayOfWeek, "8"),
            ("* * * * 99999999999999999999", .outOfRange, .dayOfWeek, "99999999999999999999"),
            ("*/0 * * * *", .invalidStep, .minute, "*/0"),
            ("*/x * * * *", .invalidStep, .minute, "*/x"),
            ("*/ * * * *", .invalidStep, .minute, "*/"),
            ("1/2/3 * * * *", .invalidStep, .minute, "1/2/3"),
            ("*/-1 * * * *", .invalidStep, .minute, "*/-1"),
            ("5-1 * * * *", .invalidRange, .minute, "5-1"),
            ("1- * * * *", .invalidRange, .minute, "1-"),
            ("-1 * * * *", .invalidRange, .minute, "-1"),
            ("1-2-3 * * * *", .invalidValue, .minute, "1-2-3"),
            ("a * * * *", .invalidValue, .minute, "a"),
            ("1,,2 * * * *", .invalidValue, .minute, ""),
            ("* * * * MON-FUN", .invalidValue, .dayOfWeek, "MON-FUN"),
            ("* * * MONDAY *", .invalidValue, .month, "MONDAY"),
            ("* * * * JAN", .invalidValue, .dayOfWeek, "JAN"),
            ("* * * * ?", .invalidValue, .dayOfWeek, "?"),
            ("* * * * +1", .invalidValue, .dayOfWeek, "+1"),
            ("* * * DEC-JAN *", .invalidRange, .month, "DEC-JAN"),
            ("0 0 30 2 *", .neverFires, .dayOfMonth, "30"),
            ("0 0 31 4,6,9,11 *", .neverFires, .dayOfMonth, "31"),
            ("0 0 30,31 FEB */2", .neverFires, .dayOfMonth, "30,31"),
        ]
        for (text, code, field, value) in cases {
            XCTAssertThrowsError(try CronExpression(text), "'\(text)'") { error in
                guard let error = error as? CronExpressionError else {
                    return XCTFail("'\(text)': unexpected error type \(error)")
                }
                XCTAssertEqual(error.code, code, "'\(text)': \(error)")
                XCTAssertEqual(error.field, field, "'\(text)': \(error)")
                XCTAssertEqual(error.value, value, "'\(text)': \(error)")
                if let field {
                    XCTAssertTrue(error.description.contains(field.rawValue), error.description)
                }
                XCTAssertTrue(error.description.contains("'\(value)'"), error.description)
            }
        }
    }

    func testErrorDescriptionIsSpecific() {
        XCTAssertThrowsError(try CronExpression("0 25 * * *")) { error in
            XCTAssertEqual(
                "\(error)", "invalid cron expression: hour field: '25': 25 is out of range 0-23")
        }
        XCTAssertThrowsError(try CronExpression("0 0 * * 1 2")) { error in
            XCTAssertEqual(
                "\(error)",
                "invalid cron expression '0 0 * * 1 2': expected 5 fields (minute hour day-of-month month day-of-week), found 6"
            )
        }
    }

    func testFebruary30WithRestrictedWeekdayIsAccepted() throws {
        // Both day fields restricted: OR semantics, so the weekday alone still fires.
        let expression = try CronExpression("0 0 30 2 MON")
        XCTAssertEqual(
            local(expression.next(after: instant("2026-01-31T00:00:00Z"), in: utc), utc), "2026-02-02T00:00:00Z")
    }
}

final class CronCodableTests: XCTestCase {
    private struct Schedule: Codable, Equatable {
        var cron: CronExpression
    }

    func testEncodesAsTextAndDecodesByParsing() throws {
        let schedule = Schedule(cron: try CronExpression("*/15 9-17 * * MON-FRI"))
        let json = String(decoding: try JSONEncoder().encode(schedule), as: UTF8.self)
        XCTAssertEqual(json, #"{"cron":"*\/15 9-17 * * MON-FRI"}"#)
        let decoded = try JSONDecoder().decode(Schedule.self, from: Data(json.utf8))
        XCTAssertEqual(decoded, schedule)
        XCTAssertEqual(decoded.cron.text, "*/15 9-17 * * MON-FRI")
        XCTAssertThrowsError(try JSONDecoder().decode(Schedule.self, from: Data(#"{"cron":"61 * * * *"}"#.utf8))) {
            error in
            XCTAssertTrue("\(error)".contains("minute field: '61'"), "\(error)")
        }
    }
}
