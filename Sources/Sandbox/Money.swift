import Foundation

extension Decimal {
    /// Minor units (cents) to a decimal amount with exactly two fraction digits in text.
    static func fromCents(_ cents: Int64) -> Decimal {
        Decimal(cents) / 100
    }
}

/// Formats cents as `123.45` (always two decimals, as TikTok does).
func centsText(_ cents: Int64) -> String {
    let sign = cents < 0 ? "-" : ""
    let a = abs(cents)
    return "\(sign)\(a / 100).\(a % 100 < 10 ? "0" : "")\(a % 100)"
}
