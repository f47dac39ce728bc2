import Foundation

/// SplitMix64: small, fast, and the same sequence on every platform for a given seed.
struct SplitMix64: RandomNumberGenerator, Sendable {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return Self.mix(state)
    }

    static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A stable hash of several values, so a metric depends only on its key, never on iteration order.
    static func hash(_ parts: UInt64...) -> UInt64 {
        var h: UInt64 = 0x1234_5678_9ABC_DEF1
        for p in parts { h = mix(h ^ mix(p &+ 0x9E37_79B9_7F4A_7C15)) }
        return h
    }

    mutating func uuid() -> String {
        let a = next()
        let b = next()
        let hex = String(format: "%016llx%016llx", a, b)
        var chars = Array(hex)
        chars[12] = "4"
        chars[16] = ["8", "9", "a", "b"][Int(b >> 60) & 3]
        let s = String(chars)
        func part(_ from: Int, _ to: Int) -> Substring {
            s[s.index(s.startIndex, offsetBy: from)..<s.index(s.startIndex, offsetBy: to)]
        }
        return "\(part(0, 8))-\(part(8, 12))-\(part(12, 16))-\(part(16, 20))-\(part(20, 32))"
    }
}
