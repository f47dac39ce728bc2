import Cron
import Foundation
import Postgres

/// When a schedule fires: a 5-field cron expression read in an IANA time zone, or a fixed `@every` interval.
///
/// `@every <duration>` (e.g. `@every 30s`, `@every 5m`, `@every 1h30m`; at least one second, whole seconds)
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
            guard let d = parseDuration(rest), d.components.attoseconds == 0, d >= .seconds(1),
                d <= ScheduleSpec.longestInterval
            else {
                throw ScheduleSpecError(
                    message: "\(CheckedInput.quote(t)): @every needs a whole number of seconds in 1s...3650d "
                        + "(e.g. @every 30s, @every 5m)")
            }
            self = .every(seconds: d.components.seconds)
            return
        }
        guard let zone = TimeZone(identifier: timeZone) else {
            throw ScheduleSpecError(message: "unknown time zone '\(timeZone)' (use an IANA name like Europe/Paris)")
        }
        do {
            self = .cron(try CronExpression(t), zone)
        } catch let e as CronExpressionError {
            throw ScheduleSpecError(message: "bad cron expression '\(t)': \(e)")
        }
    }

    /// The last fire time at or before `date`.
    public func latestFire(atOrBefore date: Date) -> Date? {
        switch self {
        case .cron(let expression, let zone):
            return expression.latestFire(atOrBefore: date, in: zone)
        case .every(let seconds):
            // Infinite or out-of-range instants (a row holding 'infinity') have no fire time; never trap.
            guard PGTimestamp.isStorable(date), seconds > 0 else { return nil }
            let t = Int64(date.timeIntervalSince1970.rounded(.down))
            let floored = t >= 0 ? t / seconds * seconds : -((-t + seconds - 1) / seconds) * seconds
            return Date(timeIntervalSince1970: Double(floored))
        }
    }

    /// The first fire time strictly after `date`.
    public func next(after date: Date) -> Date? {
        switch self {
        case .cron(let expression, let zone):
            return expression.next(after: date, in: zone)
        case .every(let seconds):
            guard let latest = latestFire(atOrBefore: date) else { return nil }
            return latest.addingTimeInterval(Double(seconds))
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
