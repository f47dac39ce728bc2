import Foundation
import Platforms
import Postgres
import Queue

// Documented ranges of the sync and privacy job args, checked at enqueue (CLI), at `schedules add` / `enable`,
// and again before the handler runs (`CheckedArgs`).

extension ConnectionJobArgs: CheckedArgs {
    /// `connection_id`: 1...2^63-1.
    public func check() throws { try connectionID.checkPositive("connection_id") }
}

extension PrivacyRequestJobArgs: CheckedArgs {
    /// `request_id`: 1...2^63-1.
    public func check() throws { try requestID.checkPositive("request_id") }
}

extension JobID {
    func checkPositive(_ field: String) throws {
        guard value >= 1 else { throw InputError("\(field) must be an id in 1...\(Int64.max), got \(value)") }
    }
}

extension SyncAdAccountHandler.Args: CheckedArgs {
    /// `ad_account_id`: 1...2^63-1; `from` / `to`: both or neither, real `YYYY-MM-DD` dates, from <= to.
    public func check() throws {
        try adAccountID.checkPositive("ad_account_id")
        guard from != nil || to != nil else { return }
        guard let f = from, let t = to, f.utf8.count == 10, t.utf8.count == 10, let a = LocalDate(parsing: f),
            let b = LocalDate(parsing: t), a <= b
        else { throw InputError("from and to must both be YYYY-MM-DD dates (years 1...9999) with from <= to") }
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
