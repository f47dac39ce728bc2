import Foundation

/// Fast conversions between `Date` and PostgreSQL's `timestamptz` text form, independent of locale.
public enum PGTimestamp {
    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC).
    public static func format(_ date: Date) -> String {
        let t = date.timeIntervalSince1970
        var secs = Int64(t.rounded(.down))
        var micros = Int64(((t - Double(secs)) * 1_000_000).rounded())
        if micros >= 1_000_000 { secs += 1; micros -= 1_000_000 }
        let days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400
        let sod = secs - days * 86400
        let (y, m, d) = civil(fromDays: days)
        func pad(_ v: Int64, _ w: Int) -> String {
            let s = String(v)
            return s.count >= w ? s : String(repeating: "0", count: w - s.count) + s
        }
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(sod / 3600, 2)):\(pad(sod % 3600 / 60, 2)):\(pad(sod % 60, 2)).\(pad(micros, 6))Z"
    }

    /// Parses `YYYY-MM-DD HH:MM:SS[.f+][(+|-)HH[:MM[:SS]]|Z]`; a missing offset means UTC.
    public static func parse(_ text: String) -> Date? {
        let b = Array(text.utf8)
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
        guard let y = num(4), expect(45), let mo = num(2), expect(45), let d = num(2) else { return nil }
        guard i < b.count, b[i] == 32 || b[i] == 84 else {
            return i == b.count ? Date(timeIntervalSince1970: Double(days(y, mo, d) * 86400)) : nil
        }
        i += 1
        guard let h = num(2), expect(58), let mi = num(2), expect(58), let s = num(2) else { return nil }
        var frac = 0.0
        if i < b.count, b[i] == 46 {
            i += 1
            var scale = 0.1
            while i < b.count, b[i] >= 48, b[i] <= 57 {
                frac += Double(b[i] - 48) * scale
                scale /= 10
                i += 1
            }
        }
        var offset: Int64 = 0
        if i < b.count {
            if b[i] == 90 { i += 1 } else if b[i] == 43 || b[i] == 45 {
                let sign: Int64 = b[i] == 45 ? -1 : 1
                i += 1
                guard let oh = num(2) else { return nil }
                var om: Int64 = 0
                var os: Int64 = 0
                if expect(58) { guard let v = num(2) else { return nil }; om = v }
                if expect(58) { guard let v = num(2) else { return nil }; os = v }
                offset = sign * (oh * 3600 + om * 60 + os)
            } else {
                return nil
            }
        }
        guard i == b.count else { return nil }
        let secs = days(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - offset
        return Date(timeIntervalSince1970: Double(secs) + frac)
    }

    /// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
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
