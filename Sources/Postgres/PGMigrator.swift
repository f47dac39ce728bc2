import Foundation

/// Applies numbered SQL files (`NNN_name.sql`) in order, once each, recorded in `nexjobs.schema_migrations`.
///
/// All pending files apply in one transaction that first takes a transaction-level advisory lock, so two processes
/// migrating at once serialize (the second sees the first's records and applies nothing) and the lock works behind
/// PgBouncer transaction pooling. Files are written to be idempotent too, so a half-recorded state heals.
public struct PGMigrator: Sendable {
    public struct Migration: Sendable, Equatable {
        public var version: Int
        public var name: String
        public var sql: String

        public init(version: Int, name: String, sql: String) {
            self.version = version
            self.name = name
            self.sql = sql
        }
    }

    public struct Outcome: Sendable {
        public var applied: [String]
        public var alreadyApplied: Int
        /// Files whose text changed since they were applied (applied again only if the caller edits the version).
        public var changed: [String]
    }

    public let migrations: [Migration]

    /// Loads every `NNN_name.sql` file of a directory. Fails on duplicate versions or an unreadable file.
    public init(directory: URL) throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        var found: [Migration] = []
        for name in names where name.hasSuffix(".sql") {
            let digits = name.prefix { $0.isNumber }
            guard digits.count == 3, name.dropFirst(3).first == "_", let v = Int(digits) else { continue }
            let text = try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
            found.append(Migration(version: v, name: name, sql: text))
        }
        found.sort { $0.version < $1.version }
        for (a, b) in zip(found, found.dropFirst()) where a.version == b.version {
            throw PGError(.server, "two migrations share version \(a.version): \(a.name) and \(b.name)")
        }
        guard !found.isEmpty else {
            throw PGError(.server, "no NNN_name.sql migrations in \(directory.path)")
        }
        self.migrations = found
    }

    public init(migrations: [Migration]) { self.migrations = migrations }

    /// Finds the `sql/` folder: `$NEXJOBS_SQL_DIR`, then `./sql`, then next to or above the executable.
    public static func locateDirectory() -> URL? {
        let fm = FileManager.default
        func ok(_ url: URL) -> Bool { fm.fileExists(atPath: url.appendingPathComponent("001_queue.sql").path) }
        if let env = ProcessInfo.processInfo.environment["NEXJOBS_SQL_DIR"], !env.isEmpty {
            return URL(fileURLWithPath: env)
        }
        let cwd = URL(fileURLWithPath: fm.currentDirectoryPath).appendingPathComponent("sql")
        if ok(cwd) { return cwd }
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<6 {
            for candidate in [dir.appendingPathComponent("sql"), dir.appendingPathComponent("share/nexjobs/sql")]
            where ok(candidate) {
                return candidate
            }
            dir = dir.deletingLastPathComponent()
        }
        return nil
    }

    /// Applies pending migrations.
    public func migrate(_ pool: PGPool) async throws -> Outcome {
        try await pool.withTransaction { conn in
            try await conn.execute("SELECT pg_advisory_xact_lock(7262011384)")
            try await conn.simpleQuery(
                """
                CREATE SCHEMA IF NOT EXISTS nexjobs;
                CREATE TABLE IF NOT EXISTS nexjobs.schema_migrations (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now());
                """)
            var done: [Int: String] = [:]
            for row in try await conn.query("SELECT version, checksum FROM nexjobs.schema_migrations") {
                done[try row.decode(0, as: Int.self)] = try row.decode(1, as: String.self)
            }
            var outcome = Outcome(applied: [], alreadyApplied: 0, changed: [])
            for m in migrations {
                let sum = try await conn.query("SELECT md5(\(m.sql))").first!.decode(0, as: String.self)
                if let recorded = done[m.version] {
                    outcome.alreadyApplied += 1
                    if recorded != sum { outcome.changed.append(m.name) }
                    continue
                }
                do {
                    try await conn.simpleQuery(m.sql)
                } catch var e as PGError {
                    e.message = "\(m.name): \(e.message)"
                    throw e
                }
                try await conn.execute(
                    """
                    INSERT INTO nexjobs.schema_migrations (version, name, checksum) VALUES (\(m.version), \(m.name), \(sum))
                    """)
                outcome.applied.append(m.name)
            }
            return outcome
        }
    }
}
