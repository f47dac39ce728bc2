import Foundation

/// Fast conversions between `Date` and PostgreSQL's `timestamptz` text form, independent of locale.
///
/// Every value PostgreSQL can store reads back: `infinity` and `-infinity` (as `Date`s with an infinite
/// interval), dates before Christ (`0044-03-15 00:00:00+00 BC`) and years past 9999 (`200000-01-01 ...`).
/// Nothing here traps: out-of-range input gives nil, out-of-range dates format as `infinity` / `-infinity`.
public enum PGTimestamp {
    /// The earliest instant PostgreSQL's timestamptz holds (4714-11-24 00:00:00 UTC BC), in Unix seconds.
    public static let minimumSeconds: Double = -210_866_803_200
    /// The first instant past PostgreSQL's timestamptz range (294277-01-01 00:00:00 UTC), in Unix seconds.
    public static let endSeconds: Double = 9_224_318_016_000

    /// True when `date` is finite and inside PostgreSQL's timestamptz range.
    public static func isStorable(_ date: Date) -> Bool {
        let t = date.timeIntervalSince1970
        return t.isFinite && t >= minimumSeconds && t < endSeconds
    }

    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC); years before 1 are written with ` BC`, past 9999 with more digits;
    /// infinite or out-of-range dates are written `infinity` / `-infinity`.
    public static func format(_ date: Date) -> String {
        let t = date.timeIntervalSince1970
        if t.isNaN { return "infinity" }
        if t < minimumSeconds { return "-infinity" }
        if t >= endSeconds { return "infinity" }
        var secs = Int64(t.rounded(.down))
        var micros = Int64(((t - Double(secs)) * 1_000_000).rounded())
        if micros >= 1_000_000 {
            secs += 1
            micros -= 1_000_000
        }
        let days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400
        let sod = secs - days * 86400
        let (y, m, d) = civil(fromDays: days)
        func pad(_ v: Int64, _ w: Int) -> String {
            let s = String(v)
            return s.count >= w ? s : String(repeating: "0", count: w - s.count) + s
        }
        let body =
            "-\(pad(m, 2))-\(pad(d, 2))T\(pad(sod / 3600, 2)):\(pad(sod % 3600 / 60, 2)):\(pad(sod % 60, 2))"
            + ".\(pad(micros, 6))Z"
        return y >= 1 ? pad(y, 4) + body : pad(1 - y, 4) + body + " BC"
    }

    /// Parses `YYYY-MM-DD[( |T)HH:MM:SS[.f+][(+|-)HH[:MM[:SS]]|Z]][ BC]`, `infinity` and `-infinity`; a missing
    /// offset means UTC. Years have 4 to 6 digits. Returns nil for anything else, including impossible calendar
    /// values (month 13, February 30, hour 25).
    public static func parse(_ text: String) -> Date? {
        if text == "infinity" || text == "+infinity" { return Date(timeIntervalSince1970: .infinity) }
        if text == "-infinity" { return Date(timeIntervalSince1970: -.infinity) }
        var b = Array(text.utf8)
        var bc = false
        if b.count > 3, b[(b.count - 3)...].elementsEqual(" BC".utf8) {
            bc = true
            b.removeLast(3)
        }
        var i = 0
        func num(_ n: Int) -> Int64? {
            guard i + n <= b.count else { return nil }
            var v: Int64 = 0
            for k in 0..<n {
                let c = b[i + k]
                guard c >= 48 && c <= 57 else { return nil }
                v = v * 10 + Int64(c - 48)
            }
            i += n
            return v
        }
        func expect(_ c: UInt8) -> Bool {
            guard i < b.count, b[i] == c else { return false }
            i += 1
            return true
        }
        var yearDigits = 0
        while i + yearDigits < b.count, b[i + yearDigits] >= 48, b[i + yearDigits] <= 57 { yearDigits += 1 }
        guard (4...6).contains(yearDigits), let y0 = num(yearDigits), expect(45), let mo = num(2), expect(45),
            let d = num(2)
        else { return nil }
        if bc && y0 == 0 { return nil }
        let y = bc ? 1 - y0 : y0
        guard (1...12).contains(mo), d >= 1, d <= daysInMonth(y, mo) else { return nil }
        var h: Int64 = 0
        var mi: Int64 = 0
        var s: Int64 = 0
        var frac = 0.0
        var offset: Int64 = 0
        if i < b.count {
            guard b[i] == 32 || b[i] == 84 else { return nil }
            i += 1
            guard let hh = num(2), expect(58), let mm = num(2), expect(58), let ss = num(2) else { return nil }
            (h, mi, s) = (hh, mm, ss)
            if i < b.count, b[i] == 46 {
                i += 1
                var scale = 0.1
                while i < b.count, b[i] >= 48, b[i] <= 57 {
                    frac += Double(b[i] - 48) * scale
                    scale /= 10
                    i += 1
                }
            }
            if i < b.count {
                if b[i] == 90 {
                    i += 1
                } else if b[i] == 43 || b[i] == 45 {
                    let sign: Int64 = b[i] == 45 ? -1 : 1
                    i += 1
                    guard let oh = num(2) else { return nil }
                    var om: Int64 = 0
                    var os: Int64 = 0
                    if expect(58) {
                        guard let v = num(2) else { return nil }
                        om = v
                    }
                    if expect(58) {
                        guard let v = num(2) else { return nil }
                        os = v
                    }
                    guard oh <= 15, om <= 59, os <= 59 else { return nil }
                    offset = sign * (oh * 3600 + om * 60 + os)
                } else {
                    return nil
                }
            }
            guard i == b.count else { return nil }
            // 24:00:00 is the end of the day (PostgreSQL accepts it); 60 seconds is a leap second.
            guard h <= 23 || (h == 24 && mi == 0 && s == 0 && frac == 0), mi <= 59, s <= 60 else { return nil }
        }
        let secs = days(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - offset
        return Date(timeIntervalSince1970: Double(secs) + frac)
    }

    static func isLeap(_ y: Int64) -> Bool { (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 }

    static func daysInMonth(_ y: Int64, _ m: Int64) -> Int64 {
        switch m {
        case 2: return isLeap(y) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm). Cron's `Civil` does the
    /// same arithmetic: Postgres and Cron are engine modules with no dependency between them, and these few lines
    /// are not worth a module of their own; both are tested against PostgreSQL's and Foundation's calendars.
    static func days(_ y0: Int64, _ m: Int64, _ d: Int64) -> Int64 {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    static func civil(fromDays z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }
}
