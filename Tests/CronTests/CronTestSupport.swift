import Foundation
import XCTest

@testable import Cron

/// Parses an ISO 8601 instant with an explicit offset, e.g. `2026-03-29T03:00:00+02:00`.
func instant(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> Date {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime]
    guard let date = formatter.date(from: text) else {
        XCTFail("bad test instant \(text)", file: file, line: line)
        return Date(timeIntervalSince1970: 0)
    }
    return date
}

/// Formats an instant as local ISO 8601 with its offset in `zone`, for readable assertions.
func local(_ date: Date?, _ zone: TimeZone) -> String {
    guard let date else { return "nil" }
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime]
    formatter.timeZone = zone
    return formatter.string(from: date)
}

func zone(_ identifier: String, file: StaticString = #filePath, line: UInt = #line) -> TimeZone {
    guard let zone = TimeZone(identifier: identifier) else {
        XCTFail("time zone \(identifier) missing", file: file, line: line)
        return TimeZone(secondsFromGMT: 0)!
    }
    return zone
}

let utc = TimeZone(secondsFromGMT: 0)!

func cron(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> CronExpression {
    do {
        return try CronExpression(text)
    } catch {
        XCTFail("'\(text)' did not parse: \(error)", file: file, line: line)
        return try! CronExpression("* * * * *")
    }
}
