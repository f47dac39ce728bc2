import Foundation
import Postgres

/// `NEXJOBS_DIRECT_DATABASE_URL`: a connection string to PostgreSQL itself, for what needs a session of its own
/// when `DATABASE_URL` points at PgBouncer in transaction mode: the worker's LISTEN connection (which also runs
/// its wake-up claim as a prepared statement) and the scheduler's leader lease. Unset or empty: `DATABASE_URL` is
/// used for everything. A malformed value is a usage error (exit 2).
func directDatabaseConfig() throws -> PGConfig? {
    guard let url = ProcessInfo.processInfo.environment["NEXJOBS_DIRECT_DATABASE_URL"], !url.isEmpty else {
        return nil
    }
    do {
        return try PGConfig(url)
    } catch let e as PGError {
        throw UsageError("NEXJOBS_DIRECT_DATABASE_URL is invalid: \(e.message)")
    }
}

/// A one-connection pool on `NEXJOBS_DIRECT_DATABASE_URL`, or nil when it is unset.
func openDirectPool() throws -> PGPool? {
    guard let config = try directDatabaseConfig() else { return nil }
    do {
        return try PGPool(url: config.connectionString, maxConnections: 1)
    } catch let e as PGError {
        throw UsageError("NEXJOBS_DIRECT_DATABASE_URL is invalid: \(e.message)")
    }
}
