import Foundation

extension Duration {
    /// Seconds as a `Double`, for logs and URLSession's `TimeInterval`.
    var seconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) / 1e18
    }
}
