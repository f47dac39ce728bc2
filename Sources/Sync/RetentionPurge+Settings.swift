import Privacy

extension RetentionPurgeHandler {
    /// The purge with the plan retentions the sync uses (`NEXJOBS_SYNC_RETENTION_*`), so a sync never backfills
    /// what the next purge would delete.
    public init(settings: SyncSettings) { self.init(retention: PlanRetention(days: settings.retentionDays)) }
}
