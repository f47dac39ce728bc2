// Module Sync.
