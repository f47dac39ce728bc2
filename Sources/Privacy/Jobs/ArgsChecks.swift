import Foundation
import Postgres
import Queue

// Documented ranges of the privacy and connection job args, checked at enqueue (CLI), at `schedules add` /
// `enable`, and again before the handler runs (`CheckedArgs`).

extension ConnectionJobArgs: CheckedArgs {
    /// `connection_id`: 1...2^63-1.
    public func check() throws { try connectionID.checkPositive("connection_id") }
}

extension PrivacyRequestJobArgs: CheckedArgs {
    /// `request_id`: 1...2^63-1.
    public func check() throws { try requestID.checkPositive("request_id") }
}

extension RowID {
    public func checkPositive(_ field: String) throws {
        guard value >= 1 else { throw InputError("\(field) must be an id in 1...\(Int64.max), got \(value)") }
    }
}

extension RetentionPurgeHandler.Args: CheckedArgs {
    /// `batch_size`: 1...1000000 (default 10000).
    public func check() throws {
        if let b = batch_size, !(1...1_000_000).contains(b) {
            throw InputError("batch_size must be in 1...1000000, got \(b)")
        }
    }
}
