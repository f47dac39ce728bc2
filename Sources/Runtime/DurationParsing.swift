/// Parses durations like `250ms`, `90s`, `5m`, `2h`, `1d` or `1h30m`. A bare number means seconds.
public func parseDuration(_ text: String) -> Duration? {
    let t = text.trimmingCharacters(in: .whitespaces)
    if t.isEmpty { return nil }
    if let n = Double(t), n >= 0 { return .milliseconds(Int64((n * 1000).rounded())) }
    var total = Duration.zero
    var number = ""
    var unit = ""
    var parts: [(String, String)] = []
    for ch in t {
        if ch.isNumber || ch == "." {
            if !unit.isEmpty { parts.append((number, unit)); number = ""; unit = "" }
            number.append(ch)
        } else if ch.isLetter {
            guard !number.isEmpty else { return nil }
            unit.append(ch)
        } else {
            return nil
        }
    }
    guard !number.isEmpty, !unit.isEmpty else { return nil }
    parts.append((number, unit))
    for (n, u) in parts {
        guard let v = Double(n), v >= 0 else { return nil }
        let ms: Double
        switch u.lowercased() {
        case "ms": ms = v
        case "s", "sec", "secs": ms = v * 1000
        case "m", "min", "mins": ms = v * 60_000
        case "h", "hr", "hrs": ms = v * 3_600_000
        case "d", "day", "days": ms = v * 86_400_000
        default: return nil
        }
        total += .milliseconds(Int64(ms.rounded()))
    }
    return total
}

import Foundation
