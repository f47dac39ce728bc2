import Cron
import Foundation
import Postgres

/// When a schedule fires: a 5-field cron expression read in an IANA time zone, or a fixed `@every` interval.
///
/// `@every <duration>` (e.g. `@every 30s`, `@every 5m`, `@every 1h30m`; whole seconds, from 1 s to 3650 days)
/// fires at the multiples of the interval since the Unix epoch, so every scheduler process computes the same
/// fire times without shared state, and the time zone does not matter. Everything else is a cron expression
/// (see `CronExpression`).
public enum ScheduleSpec: Sendable, Hashable, CustomStringConvertible {
    case cron(CronExpression, TimeZone)
    case every(seconds: Int64)

    /// The longest `@every` interval: 3650 days.
    public static let longestInterval: Duration = .seconds(3650 * 86_400)

    /// Parses the `cron` and `timezone` columns of `nexjobs.schedules`.
    ///
    /// - Throws: `ScheduleSpecError` for an unknown time zone, a bad interval or a bad cron expression.
    public init(_ text: String, timeZone: String) throws {
        let t = text.trimmingCharacters(in: .whitespaces)
        if t.lowercased().hasPrefix("@every") {
            let rest = t.dropFirst("@every".count).trimmingCharacters(in: .whitespaces)
            self = .every(seconds: try Self.everySeconds(rest, text: t))
            return
        }
        guard let zone = TimeZone(identifier: timeZone) else {
            throw ScheduleSpecError(message: "unknown time zone '\(timeZone)' (use an IANA name like Europe/Paris)")
        }
        do {
            self = .cron(try CronExpression(t), zone)
        } catch {
            throw ScheduleSpecError(message: "bad cron expression '\(t)': \(error)")
        }
    }

    /// Longest `@every` interval: 3650 days (about ten years).
    public static let maxEverySeconds: Int64 = 3650 * 86_400

    /// No fire time is computed past this instant (9999-12-31T00:00:00Z, well inside what PostgreSQL's
    /// `timestamptz` and `Date` represent); a schedule whose next fire would be later has none.
    public static let latestFireTime = Date(timeIntervalSince1970: 253_402_214_400)

    /// Checks the text of an `@every` interval before parsing it: only digits, `.` and unit letters, at most 11
    /// digits in all, so no value can overflow while it is converted; then 1 s ... `maxEverySeconds`, whole seconds.
    static func everySeconds(_ rest: String, text t: String) throws -> Int64 {
        let usage = "'\(t)': @every needs a whole number of seconds in 1s...3650d (e.g. @every 30s, @every 5m)"
        let lower = rest.lowercased()
        let shaped =
            lower.range(of: #"^([0-9.]+[a-z]+)+$"#, options: .regularExpression) != nil
            || lower.range(of: #"^[0-9]+$"#, options: .regularExpression) != nil
        guard shaped, lower.filter({ $0.isASCII && $0.isNumber }).count <= 11, let d = parseDuration(lower),
            d.components.attoseconds == 0, d >= .seconds(1), d <= .seconds(maxEverySeconds)
        else {
            throw ScheduleSpecError(message: usage)
        }
        return d.components.seconds
    }

    /// The last fire time at or before `date`; nil when it cannot be represented (never traps).
    public func latestFire(atOrBefore date: Date) -> Date? {
        switch self {
        case .cron(let expression, let zone):
            return expression.latestFire(atOrBefore: date, in: zone)
        case .every(let seconds):
            let raw = date.timeIntervalSince1970.rounded(.down)
            // Dates far outside the supported range (and NaN/infinity) have no fire time.
            guard seconds > 0, raw.isFinite, abs(raw) <= 1e15, let t = Int64(exactly: raw) else { return nil }
            // Floor division (toward negative infinity); no intermediate value can overflow for |t| <= 1e15.
            var q = t / seconds
            if t % seconds != 0 && t < 0 { q -= 1 }
            let (floored, overflow) = q.multipliedReportingOverflow(by: seconds)
            guard !overflow else { return nil }
            return Date(timeIntervalSince1970: Double(floored))
        }
    }

    /// The first fire time strictly after `date`; nil when there is none up to `latestFireTime` (never traps).
    public func next(after date: Date) -> Date? {
        switch self {
        case .cron(let expression, let zone):
            guard let next = expression.next(after: date, in: zone), next <= Self.latestFireTime else { return nil }
            return next
        case .every(let seconds):
            guard let latest = latestFire(atOrBefore: date) else { return nil }
            let (t, overflow) = Int64(latest.timeIntervalSince1970).addingReportingOverflow(seconds)
            guard !overflow else { return nil }
            let next = Date(timeIntervalSince1970: Double(t))
            return next <= Self.latestFireTime ? next : nil
        }
    }

    public var description: String {
        switch self {
        case .cron(let expression, let zone): return "\(expression.text) (\(zone.identifier))"
        case .every(let seconds): return "@every \(seconds)s"
        }
    }
}

/// A schedule definition that cannot be used; the message names the offending value and is safe to print.
public struct ScheduleSpecError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
