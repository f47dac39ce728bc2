/// How long a failed attempt waits before the next one.
public struct RetryPolicy: Sendable {
    let delay: @Sendable (_ attempt: Int, _ random: Double) -> Duration

    /// The delay after failed attempt `attempt` (1-based).
    public func delay(afterAttempt attempt: Int) -> Duration { delay(attempt, Double.random(in: 0..<1)) }

    /// Exponential backoff with "equal jitter": the n-th delay is uniformly drawn from [d/2, d] where
    /// d = min(maxBackoff, base * 2^(n-1)). Delays grow while staying spread out across workers.
    /// Defaults: base 1 s, max 1 hour.
    public static func exponentialJitter(base: Duration = .seconds(1), maxBackoff: Duration = .seconds(3600))
        -> RetryPolicy
    {
        RetryPolicy { attempt, random in
            let exp = min(max(attempt - 1, 0), 40)
            let full = min(maxBackoff, base * Double(1 << min(exp, 30)))
            return full / 2 + full / 2 * random
        }
    }

    /// A fixed delay (tests).
    public static func constant(_ d: Duration) -> RetryPolicy { RetryPolicy { _, _ in d } }
}
