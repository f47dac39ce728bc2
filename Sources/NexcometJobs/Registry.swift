import Foundation
import Logs
import Platforms
import Privacy
import Queue
import Runtime
import Sync

/// Every job kind this build of NexJobs runs: `noop`, the sync kinds, and the privacy kinds (`retention_purge`,
/// `disconnect`, `gdpr_export`, `gdpr_erase`; see `Sources/Sync/PrivacyJobs.swift`).
///
/// The sync kinds (`sync_connection`, `sync_ad_account`, `refresh_token`) read their configuration from
/// `environment` (see ``SyncEnvironment/fromEnvironment(_:logger:)``): the key ring `NEXJOBS_TOKEN_KEYS` and the
/// platform credentials and base URLs. Missing configuration fails those jobs with a message naming the variable;
/// it never stops the worker, so noop-only workers need none of it.
public func defaultRegistry(environment: [String: String] = ProcessInfo.processInfo.environment) -> JobRegistry {
    var r = JobRegistry()
    r.register(NoopHandler())
    let log = Logger(label: "platform")
    let platformLogger = PlatformLogger { level, message, metadata in
        let fields = metadata.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        switch level {
        case .debug: log.log(.debug, message, fields)
        case .info: log.log(.info, message, fields)
        case .warning: log.log(.warning, message, fields)
        case .error: log.log(.error, message, fields)
        }
    }
    let sync = SyncEnvironment.fromEnvironment(environment, logger: platformLogger)
    r.register(SyncConnectionHandler(environment: sync))
    r.register(SyncAdAccountHandler(environment: sync))
    r.register(RefreshTokenHandler(environment: sync))
    r.register(RetentionPurgeHandler(settings: sync.settings))
    r.register(DisconnectHandler())
    r.register(RevokeTokensHandler(environment: sync))
    r.register(GDPRExportHandler())
    r.register(GDPREraseHandler())
    return r
}
