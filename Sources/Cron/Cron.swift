// Module Cron.
