import Foundation

/// One entity's metrics for one account-local day, in integer units (cents for money).
struct DayMetrics: Sendable, Equatable {
    var impressions: Int64 = 0
    var clicks: Int64 = 0
    var spendCents: Int64 = 0
    var conversions: Int64 = 0
    var valueCents: Int64 = 0
    var videoViews: Int64 = 0

    var isZero: Bool { impressions == 0 && clicks == 0 && spendCents == 0 && conversions == 0 && valueCents == 0 }

    static func += (a: inout DayMetrics, b: DayMetrics) {
        a.impressions += b.impressions
        a.clicks += b.clicks
        a.spendCents += b.spendCents
        a.conversions += b.conversions
        a.valueCents += b.valueCents
        a.videoViews += b.videoViews
    }
}

/// Deterministic metrics: a pure function of (seed, ad, day, sandbox today).
///
/// Conversions restate: a day `age` days before the account's local today reports 50 % (age 0), 70 % (1),
/// 90 % (2) of its final conversions, and the final count from age 3 on. Conversion value follows the
/// reported conversions. Days before the account's history or after its local today have no metrics.
enum MetricsModel {
    static let restatementDays = 3

    static func restatedShare(age: Int) -> Int64 {
        switch age {
        case ..<0: return 0
        case 0: return 50
        case 1: return 70
        case 2: return 90
        default: return 100
        }
    }

    static func adDay(seed: UInt64, account: Account, ad: Ad, day: CivilDay, today: CivilDay, firstDay: CivilDay)
        -> DayMetrics
    {
        guard day >= firstDay, day <= today, day >= ad.createdDay ?? firstDay, !account.quiet else {
            return DayMetrics()
        }
        let h = SplitMix64.hash(seed, ad.key, UInt64(bitPattern: Int64(day.day)))
        // Roughly one day in eight an ad does not deliver at all.
        if h % 8 == 0 { return DayMetrics() }
        var m = DayMetrics()
        m.impressions = Int64(200 + (h >> 8) % 20_000)
        m.clicks = m.impressions * Int64((h >> 24) % 40) / 1000
        let cpmCents = Int64(300 + (h >> 32) % 1_500)
        m.spendCents = m.impressions * cpmCents / 1000
        if account.currency == "JPY" {
            // Yen has no minor unit: keep spend whole (TikTok still prints two decimals).
            m.spendCents = m.spendCents * 100
        }
        m.videoViews = m.impressions / 3
        let finalConversions = m.clicks * Int64((h >> 40) % 9) / 100
        let unitValue = Int64(1_000 + (h >> 48) % 9_000) * (account.currency == "JPY" ? 100 : 1)
        m.conversions = finalConversions * restatedShare(age: today.day - day.day) / 100
        m.valueCents = m.conversions * unitValue
        return m
    }
}
