import Foundation
import Platforms
import Postgres
import Privacy
import Queue

// Documented ranges of the sync and privacy job args, checked at enqueue (CLI), at `schedules add` / `enable`,
// and again before the handler runs (`CheckedArgs`).

extension SyncAdAccountHandler.Args {
    /// `ad_account_id`: 1...2^63-1; `from` / `to`: both or neither, real `YYYY-MM-DD` dates, from <= to.
    public func check() throws {
        try adAccountID.checkPositive("ad_account_id")
        guard from != nil || to != nil else { return }
        guard let f = from, let t = to, f.utf8.count == 10, t.utf8.count == 10, let a = LocalDate(parsing: f),
            let b = LocalDate(parsing: t), a <= b
        else { throw InputError("from and to must both be YYYY-MM-DD dates (years 1...9999) with from <= to") }
    }
}
